"""Stochastic decisions, the decision log and off-policy evaluation (on generated data)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mixllm import LLM, Router
from mixllm.decision_log import DecisionLog, DecisionLogger, LogError, read_log
from mixllm.exploration import Explorer, policy_probabilities
from mixllm.evaluation.ope import Policy, RouterPolicy, TermsPolicy, estimate, evaluate_log

# ----------------------------------------------------------------------------- a toy world
# Five kinds of query, three LLMs; each LLM's true mean quality per kind, and a fixed cost.
# The logged "terms" hold a deliberately wrong direct model (true means + 0.2 noise), so DR is
# unbiased only through its propensities.
TRUE_Q = np.array([[0.9, 0.6, 0.3], [0.8, 0.7, 0.2], [0.5, 0.5, 0.5], [0.4, 0.6, 0.9],
                   [0.95, 0.2, 0.1]])
COST = np.array([1e-3, 2e-4, 5e-5])
NAMES = ["big", "mid", "small"]


def _toy_log(seed: int, n: int, temperature: float = 0.05, epsilon: float = 0.1
             ) -> tuple[DecisionLog, np.ndarray]:
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, len(TRUE_Q), n)
    pred = TRUE_Q[kind] + np.random.default_rng(1000).normal(0, 0.2, TRUE_Q.shape)[kind]
    terms = np.zeros((n, 6, 3))
    terms[:, 0] = pred
    terms[:, 2] = COST
    terms[:, 3] = 0.1
    lam = 1e-3
    terms[:, 5] = pred - COST / lam
    P = policy_probabilities(terms[:, 5], temperature, epsilon)
    u = rng.random(n)
    chosen = np.minimum((P.cumsum(axis=1) < u[:, None]).sum(axis=1), 2)
    rows = np.arange(n)
    quality = (rng.random(n) < TRUE_Q[kind, chosen]).astype(float)
    log = DecisionLog(ids=[f"r{i}" for i in rows], llms=list(NAMES), chosen=chosen,
                      propensity=P[rows, chosen], terms=terms, lam=np.full(n, lam),
                      alpha=np.zeros(n), beta=np.zeros(n), input_tokens=np.zeros(n),
                      quality=quality, cost=COST[chosen], output_tokens=np.full(n, 10.0),
                      x=np.eye(len(TRUE_Q))[kind], probabilities=P)
    return log, kind


def _truth(policy: TermsPolicy, n: int = 20000) -> tuple[float, float]:
    """The policy's true mean quality and cost (kinds uniform), from a large log's terms."""
    log, kind = _toy_log(7, n)  # the candidates here do not depend on the logging policy
    P = policy.probabilities(log)
    return float((P * TRUE_Q[kind]).sum(1).mean()), float((P * COST).sum(1).mean())


CANDIDATE = TermsPolicy(lam=1e-4)  # cheaper than the logging policy's lam = 1e-3


def test_estimators_unbiased_on_a_toy():
    tq, tc = _truth(CANDIDATE)
    est = {"ips": [], "snips": [], "dr": []}
    for seed in range(200):
        log, _ = _toy_log(seed, 300)
        r = evaluate_log(log, CANDIDATE, outcomes=("quality",), n_boot=100, seed=seed)
        for k in est:
            est[k].append(r["quality"][k]["estimate"])
    for k, v in est.items():
        v = np.asarray(v)
        se = v.std() / math.sqrt(len(v))
        # IPS and DR are unbiased; SNIPS's bias is O(1/n), far below 4 standard errors here.
        assert abs(v.mean() - tq) < 4 * se, (k, v.mean(), tq, se)


def test_interval_coverage_at_small_scale():
    # 95% intervals; a candidate that agrees with the logging policy on part of the queries
    # (effective sample ~100 of 400). Expected coverage ~0.93; the bar leaves 2.5 binomial sd.
    cand = TermsPolicy(lam=3e-4)
    tq, tc = _truth(cand)
    hits = {"ips": 0, "snips": 0, "dr": 0}
    hits_c = dict(hits)
    reps = 100
    for seed in range(reps):
        log, _ = _toy_log(100 + seed, 400, epsilon=0.2)
        r = evaluate_log(log, cand, n_boot=300, seed=seed)
        for k in hits:
            hits[k] += r["quality"][k]["low"] <= tq <= r["quality"][k]["high"]
            hits_c[k] += r["cost"][k]["low"] <= tc <= r["cost"][k]["high"]
    for k in hits:
        assert hits[k] / reps >= 0.86, (k, hits)
        assert hits_c[k] / reps >= 0.86, (k, hits_c)


def test_on_policy_candidate_equals_logged_mean():
    log, _ = _toy_log(3, 500)
    same = TermsPolicy(temperature=0.05, epsilon=0.1)  # the logging policy itself
    r = evaluate_log(log, same, outcomes=("quality",), n_boot=100)
    assert r["quality"]["snips"]["estimate"] == pytest.approx(np.mean(log.quality))
    assert r["quality"]["ips"]["estimate"] == pytest.approx(np.mean(log.quality))
    assert r["quality"]["ess"] == pytest.approx(500)


def test_any_policy_meets_the_protocol():
    log, _ = _toy_log(5, 100)

    class Uniform:  # neither a TermsPolicy nor a RouterPolicy
        def probabilities(self, log):
            return np.full((len(log), len(log.llms)), 1 / len(log.llms))

        def describe(self):
            return {"kind": "uniform"}

    assert isinstance(CANDIDATE, Policy) and isinstance(Uniform(), Policy)
    r = evaluate_log(log, Uniform(), outcomes=("quality",), n_boot=100)
    assert r["policy"] == {"kind": "uniform"} and r["quality"]["match_rate"] == pytest.approx(1 / 3)

    class NoAccount:  # probabilities but no describe()
        probabilities = Uniform.probabilities

    with pytest.raises(ValueError, match="got NoAccount"):
        evaluate_log(log, NoAccount(), outcomes=("quality",))


def test_unobserved_rows_are_left_out_and_counted():
    log, _ = _toy_log(4, 200)
    log.quality[:50] = np.nan
    r = evaluate_log(log, CANDIDATE, outcomes=("quality",), n_boot=100)
    assert r["quality"]["n"] == 150 and r["quality"]["n_left_out"] == 50


def test_estimate_rejects_bad_inputs():
    P = np.full((3, 2), 0.5)
    ok = dict(outcome=[1.0, 0.0, 1.0], chosen=np.array([0, 1, 0]), propensity=[0.5, 0.5, 0.5],
              target=P)
    estimate(**ok, n_boot=100)
    for bad in ({"propensity": [0.0, 0.5, 0.5]}, {"propensity": [0.5, 1.5, 0.5]},
                {"chosen": np.array([0, 2, 0])}, {"chosen": np.array([0.0, 1.0, 0.0])},
                {"target": np.full((3, 2), 0.6)}, {"target": np.full((2, 2), 0.5)},
                {"outcome": [1.0, math.inf, 0.0]}, {"outcome": [math.nan] * 3},
                {"n_boot": 10}, {"level": 1.5}):
        with pytest.raises(ValueError):
            estimate(**{**ok, **bad}, **({} if "n_boot" in bad else {"n_boot": 100}))
    with pytest.raises(ValueError):
        TermsPolicy(lam=0.0)
    with pytest.raises(ValueError):
        TermsPolicy(epsilon=2.0)


# ----------------------------------------------------------------------------- exploration
def _router(rng, engine="native"):
    pool = [LLM("a", 1.0, 2.0), LLM("b", 0.5, 0.5), LLM("c", 0.1, 0.1)]
    r = Router(pool, 4, ridge=1.0, lam=1e-3, engine=engine)
    X = rng.normal(size=(200, 4))
    Q = np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0], axis=1).astype(float)
    r.fit(X, Q, np.full((200, 3), 20.0))
    return r


def test_explorer_default_is_the_router_choice(rng):
    r = _router(rng)
    ex = Explorer()
    for x in rng.normal(size=(20, 4)):
        d = r.route(x, 10.0)
        c = ex.choose(d)
        assert (c.llm, c.index, c.propensity) == (d.llm, d.index, 1.0)


def test_explorer_samples_its_probabilities_reproducibly(rng):
    r = _router(rng)
    d = r.route(rng.normal(size=4), 10.0)
    ex = Explorer(temperature=0.5, epsilon=0.2, seed=11)
    p = ex.probabilities(d)
    assert p.sum() == pytest.approx(1.0) and (p >= 0.2 / 3 - 1e-12).all()
    picks = [ex.choose(d) for _ in range(6000)]
    freq = np.bincount([c.index for c in picks], minlength=3) / len(picks)
    assert np.abs(freq - p).max() < 0.03
    assert all(c.propensity == p[c.index] for c in picks[:50])
    again = Explorer(temperature=0.5, epsilon=0.2, seed=11)
    assert [again.choose(d).index for _ in range(100)] == [c.index for c in picks[:100]]
    with pytest.raises(ValueError):
        Explorer(temperature=-1.0)
    with pytest.raises(ValueError):
        Explorer(epsilon=math.nan)
    with pytest.raises(ValueError):
        ex.choose("not a decision")


def test_policy_probabilities_edge_cases():
    p = policy_probabilities([0.0, 0.0, -1.0], 0.0, 0.0)
    assert p.tolist() == [1.0, 0.0, 0.0]  # ties: the first, as the router does
    p = policy_probabilities([math.nan, 0.0, -math.inf], 1.0, 0.0)
    assert p[1] == 1.0
    with pytest.raises(ValueError):
        policy_probabilities([math.inf, 0.0], 1.0, 0.0)


# ----------------------------------------------------------------------------- the log file
def test_logger_round_trip_and_router_policy(tmp_path, rng):
    r = _router(rng)
    ex = Explorer(temperature=0.1, epsilon=0.1, seed=0)
    path = tmp_path / "logs" / "decisions.jsonl"
    X = rng.normal(size=(300, 4))
    with DecisionLogger(path) as lg:
        for i, x in enumerate(X):
            c = ex.choose(r.route(x, 10.0))
            lg.log_decision(f"id{i}", c.decision, chosen=c.llm, propensity=c.propensity,
                            probabilities=c.probabilities, lam=r.lam, alpha=r.alpha,
                            beta=r.beta, input_tokens=10.0, x=x, policy=ex.settings())
            lg.log_feedback(f"id{i}", cost=0.001, output_tokens=20.0)
            if i % 3:
                lg.log_feedback(f"id{i}", quality=float(x[c.index] > 0))
        lg.log_feedback("rotated-away", quality=1.0)
    log = read_log(path)
    assert len(log) == 300 and log.llms == ["a", "b", "c"] and log.orphan_feedback == 1
    assert np.isnan(log.quality[::3]).all() and np.isfinite(log.quality[1::3]).all()
    assert np.allclose(log.x, X)
    # The same router as a candidate: its deterministic choices, judged against its own terms.
    res = evaluate_log(log, RouterPolicy(r), direct="policy", n_boot=200)
    same = evaluate_log(log, TermsPolicy(), n_boot=200)
    assert res["quality"]["ips"]["estimate"] == pytest.approx(same["quality"]["ips"]["estimate"])
    assert res["quality"]["n"] == 200
    other = Router(r.llms, 5, ridge=1.0)
    with pytest.raises(LogError):
        evaluate_log(log, RouterPolicy(other), n_boot=200)


@pytest.mark.parametrize("line, match", [
    ("not json", "not JSON"),
    ('{"kind": "decision"}', "missing field 'id'"),
    ('{"kind": "what", "id": "a"}', "unknown record kind"),
    ('{"kind": "feedback", "id": "a", "quality": "high"}', "must be a number"),
])
def test_read_log_names_the_bad_line(tmp_path, line, match):
    p = tmp_path / "log.jsonl"
    p.write_text(line + "\n")
    with pytest.raises(LogError, match=match) as e:
        read_log(p)
    assert ":1:" in str(e.value)


def _decision_line(rid="a", **over):
    rec = {"kind": "decision", "id": rid, "llms": ["a", "b"], "chosen": "a", "propensity": 0.5,
           "terms": {t: [0.1, 0.2] for t in ("quality", "output_tokens", "cost", "bonus",
                                               "penalty", "score")}, "lam": 1.0}
    rec.update(over)
    return json.dumps(rec)


@pytest.mark.parametrize("over, match", [
    ({"propensity": 0.0}, "propensity"),
    ({"chosen": "z"}, "not in llms"),
    ({"llms": ["a", "a"]}, "distinct"),
    ({"lam": -1}, "lam"),
    ({"probabilities": [0.7, 0.3]}, "not the chosen"),
    ({"terms": {"quality": [0.1]}}, "terms"),
])
def test_read_log_rejects_inconsistent_decisions(tmp_path, over, match):
    p = tmp_path / "log.jsonl"
    p.write_text(_decision_line(**over) + "\n")
    with pytest.raises(LogError, match=match):
        read_log(p)


def test_read_log_rejects_duplicates_and_pool_changes(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text(_decision_line("a") + "\n" + _decision_line("a") + "\n")
    with pytest.raises(LogError, match="twice"):
        read_log(p)
    p.write_text(_decision_line("a") + "\n" + _decision_line("b", llms=["a", "c"]) + "\n")
    with pytest.raises(LogError, match="pool changed"):
        read_log(p)
    # The same pool in another order is re-aligned, not refused.
    p.write_text(_decision_line("a") + "\n" + _decision_line("b", llms=["b", "a"]) + "\n")
    log = read_log(p)
    assert log.chosen.tolist() == [0, 0]
    p.write_text("")
    with pytest.raises(LogError, match="no decision"):
        read_log(p)


def test_logger_rejects_bad_records(tmp_path, rng):
    r = _router(rng)
    d = r.route(rng.normal(size=4), 10.0)
    with DecisionLogger(tmp_path / "l.jsonl") as lg:
        with pytest.raises(ValueError):
            lg.log_decision("x", d, propensity=0.0, lam=1.0, alpha=0.0, beta=0.0,
                            input_tokens=1.0)
        with pytest.raises(ValueError):
            lg.log_decision("x", d, chosen="zzz", lam=1.0, alpha=0.0, beta=0.0, input_tokens=1.0)
        with pytest.raises(ValueError):
            lg.log_feedback("x")
        with pytest.raises(ValueError):
            lg.log_feedback("x", quality=math.nan)
    assert (tmp_path / "l.jsonl").read_text() == ""


def test_ope_command(tmp_path, rng, capsys):
    from mixllm.cli import main

    r = _router(rng)
    ex = Explorer(temperature=0.1, epsilon=0.2, seed=1)
    path = tmp_path / "d.jsonl"
    with DecisionLogger(path) as lg:
        for i, x in enumerate(rng.normal(size=(200, 4))):
            c = ex.choose(r.route(x, 10.0))
            lg.log_decision(f"q{i}", c.decision, chosen=c.llm, propensity=c.propensity,
                            lam=r.lam, alpha=0.0, beta=0.0, input_tokens=10.0, x=x)
            lg.log_feedback(f"q{i}", quality=float(x[c.index] > 0), cost=1e-4 * (c.index + 1))
    r.save(tmp_path / "router.npz")
    out = tmp_path / "ope.json"
    assert main(["ope", "--log", str(path), "--lam", "1e-4", "--n-boot", "200",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dr" in text and "effective sample" in text
    res = json.loads(out.read_text())
    assert res["policy"]["lam"] == 1e-4 and res["quality"]["n"] == 200
    assert main(["ope", "--log", str(path), "--router", str(tmp_path / "router.npz"),
                 "--direct", "policy", "--n-boot", "200"]) == 0
    assert main(["ope", "--log", str(tmp_path / "missing.jsonl")]) == 2
    (tmp_path / "bad.jsonl").write_text("{\n")
    assert main(["ope", "--log", str(tmp_path / "bad.jsonl")]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_logger_lines_from_two_processes_do_not_interleave(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "shared.jsonl"
    code = (
        "import sys; from mixllm.decision_log import DecisionLogger\n"
        "lg = DecisionLogger(sys.argv[1])\n"
        "for i in range(300):\n"
        "    lg.log_feedback(f'{sys.argv[2]}-{i}-' + 'x' * 9000, quality=1.0)\n"
        "lg.close()\n")
    import mixllm

    env = {"PYTHONPATH": str(Path(mixllm.__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), tag], env=env)
             for tag in ("a", "b")]
    assert all(p.wait(60) == 0 for p in procs)
    lines = path.read_text().splitlines()
    assert len(lines) == 600 and all(json.loads(line)["quality"] == 1.0 for line in lines)
