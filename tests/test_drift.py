"""Change detection per LLM and forgetting (discounted statistics) on generated data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixllm import LLM, Router
from mixllm.drift import DriftCollector, DriftMonitor

POOL = [LLM("a", 1.0, 2.0), LLM("b", 0.5, 0.5), LLM("c", 0.1, 0.1)]


# ----------------------------------------------------------------------------- the monitor
def test_monitor_flags_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    m = DriftMonitor(window=100, threshold=4.0)
    for _ in range(2000):
        m.observe("steady", float(rng.normal(0, 0.5)))
        m.observe("shifts", float(rng.normal(0, 0.5)))
    s = m.stats()
    assert not s["steady"].drifted and not s["shifts"].drifted
    for _ in range(100):
        m.observe("shifts", float(rng.normal(-0.3, 0.5)))
    s = m.stats()
    assert s["shifts"].drifted and s["shifts"].direction == "worse"
    assert s["shifts"].recent_mean == pytest.approx(-0.3, abs=0.12)
    assert s["shifts"].n == 2100 and abs(s["steady"].z) < 4
    m.reset("shifts")
    assert "shifts" not in m.stats()


def test_monitor_false_alarm_rate_is_small():
    # Checked after every residual over a long stationary stream: |z| > 4 stays rare.
    rng = np.random.default_rng(1)
    m = DriftMonitor(window=200, threshold=4.0)
    alarms = 0
    for e in (rng.random(20000) < 0.7).astype(float) - 0.7:
        m.observe("x", float(e))
        alarms += m.stats()["x"].drifted if rng.random() < 0.05 else 0
    assert alarms <= 2


def test_monitor_matches_a_direct_computation():
    rng = np.random.default_rng(2)
    e = rng.normal(0.1, 1.0, 357)
    m = DriftMonitor(window=50, min_history=10)
    for v in e:
        m.observe("k", float(v))
    s = m.stats()["k"]
    rec, hist = e[-50:], e[:-50]
    z = (rec.mean() - hist.mean()) / math.sqrt(rec.var(ddof=1) / 50 + hist.var(ddof=1) / 307)
    assert s.z == pytest.approx(z, rel=1e-9)
    assert s.history_rmse == pytest.approx(math.sqrt((hist ** 2).mean()))
    c = m.copy()
    m.observe("k", 100.0)
    assert c.stats()["k"].z == pytest.approx(z, rel=1e-9)


def test_monitor_rejects_bad_inputs():
    for kw in ({"window": 5}, {"threshold": 0.0}, {"threshold": math.inf}, {"min_history": 1}):
        with pytest.raises(ValueError):
            DriftMonitor(**kw)
    m = DriftMonitor()
    with pytest.raises(ValueError):
        m.observe("a", math.nan)
    with pytest.raises(ValueError):
        m.observe(3, 0.0)
    assert m.stats() == {}


# ----------------------------------------------------------------------------- on the Router
@pytest.mark.parametrize("engine", ["native", "reference"])
def test_router_drift_sees_an_llm_getting_worse(engine):
    rng = np.random.default_rng(3)
    r = Router(POOL, 3, ridge=1.0, engine=engine)
    with pytest.raises(ValueError, match="monitor_drift"):
        r.drift()
    r.monitor_drift(window=100)
    assert r.feedback(np.zeros(3), "b", 0.5, 1.0) is r  # as without monitoring
    p_good = np.array([0.8, 0.6, 0.4])
    for t in range(1500):
        x = rng.normal(size=3)
        k = t % 3
        p = p_good[k] if (t < 1200 or k != 0) else 0.3  # "a" drops at t = 1200
        r.feedback(x, POOL[k].name, float(rng.random() < p), 10.0)
    d = r.drift()
    assert set(d) == {"a", "b", "c"}
    assert d["a"].drifted and d["a"].direction == "worse"
    assert not d["b"].drifted and not d["c"].drifted
    other = r.clone()
    r.monitor_drift()  # a fresh history
    assert r.drift()["a"].n == 0 and other.drift()["a"].drifted
    r.remove_llm("a")
    assert set(r.drift()) == {"b", "c"}
    fresh = Router(POOL, 3, ridge=1.0, engine=engine)
    fresh.drift_monitor = other.drift_monitor  # a replacement router keeps the statistics
    assert fresh.drift()["a"].drifted
    with pytest.raises(ValueError):
        fresh.drift_monitor = "monitor"
    fresh.drift_monitor = None
    with pytest.raises(ValueError, match="monitor_drift"):
        fresh.drift()


def test_router_drift_refuses_bad_feedback_without_recording(rng):
    r = Router(POOL, 3, ridge=1.0)
    r.monitor_drift()
    with pytest.raises(ValueError):
        r.feedback(np.array([1.0, math.nan, 0.0]), "a", 1.0, 1.0)
    with pytest.raises(ValueError):
        r.feedback(np.ones(3), "a", math.inf, 1.0)
    with pytest.raises(KeyError):
        r.feedback(np.ones(3), "zzz", 1.0, 1.0)
    assert r.drift()["a"].n == 0 and r.n_observations()["a"] == 0


def test_drift_collector_gauges():
    prom = pytest.importorskip("prometheus_client")
    r = Router(POOL, 2, ridge=1.0)
    reg = prom.CollectorRegistry()
    reg.register(DriftCollector(lambda: r))
    assert b"mixllm_drift_z{" not in prom.generate_latest(reg)  # not monitoring: no samples
    r.monitor_drift(window=10, min_history=10)
    for i in range(40):
        r.feedback(np.array([1.0, 0.0]), "a", 1.0 if i < 30 else 0.0, 5.0)
    text = prom.generate_latest(reg).decode()
    assert 'mixllm_drift_alarm{llm="a"} 1.0' in text
    assert 'mixllm_drift_alarm{llm="b"} 0.0' in text
    assert 'mixllm_drift_z{llm="a"}' in text


# ----------------------------------------------------------------------------- forgetting
def _dense_forgetting(X, Y, ridge, gamma):
    """The recurrence of the router's docstring, in plain dense algebra."""
    D = X.shape[1]
    A, b = ridge * np.eye(D), np.zeros((Y.shape[1], D))
    rho = (1 - gamma) * ridge * D
    for n, (x, y) in enumerate(zip(X, Y)):
        A = gamma * A + np.outer(x, x)
        A[n % D, n % D] += rho
        b = gamma * b + np.outer(y, x)
    return A, b


@pytest.mark.parametrize("engine", ["native", "reference"])
@pytest.mark.parametrize("dim", [1, 7, 16])
def test_forgetting_is_the_discounted_recurrence(dim, engine):
    rng = np.random.default_rng(dim)
    r = Router(POOL, dim, ridge=2.0, discount=0.97, engine=engine, refactor_every=50)
    X = rng.normal(size=(300, dim))
    q = rng.random(300)
    tok = rng.integers(1, 100, 300).astype(float)
    for x, qq, tt in zip(X, q, tok):
        r.feedback(x, "b", float(qq), float(tt))
    Z = np.hstack([X, np.ones((300, 1))])
    A, b = _dense_forgetting(Z, np.stack([q, np.log1p(tok)], 1), 2.0, 0.97)
    s = r._pool.arm("b")
    assert np.allclose(s["A"], A, rtol=1e-10, atol=1e-10)
    assert np.allclose(s["b"], b, rtol=1e-10, atol=1e-10)
    assert np.allclose(s["theta"], np.linalg.solve(A, b.T).T, rtol=1e-7, atol=1e-9)
    assert np.allclose(s["Ainv"], np.linalg.inv(A), rtol=1e-7, atol=1e-9)
    # partial_fit is the same recurrence, row by row
    r2 = Router(POOL, dim, ridge=2.0, discount=0.97, engine=engine)
    r2.partial_fit(X, {"b": q}, {"b": tok})
    assert np.allclose(r2._pool.arm("b")["A"], A, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_forgetting_follows_a_change_and_stays_conditioned(engine):
    # Collinear features (two that sum to the intercept): plain discounting would let the
    # unexcited direction's prior decay to 0; the pseudo-rows keep it at ridge on average.
    rng = np.random.default_rng(5)
    forget = Router(POOL, 2, ridge=1.0, discount=0.99, engine=engine)
    keep = Router(POOL, 2, ridge=1.0, engine=engine)
    for t in range(6000):
        p = rng.random()
        x = np.array([p, 1 - p])
        y = 0.8 if t < 3000 else 0.2
        for r in (forget, keep):
            r.feedback(x, "a", y + 0.05 * float(rng.normal()), 10.0)
    x = np.array([0.5, 0.5])
    q_forget = forget.predict(x[None])[0][0, 0]
    q_keep = keep.predict(x[None])[0][0, 0]
    assert q_forget == pytest.approx(0.2, abs=0.03)
    assert q_keep == pytest.approx(0.5, abs=0.05)  # half the stream on each side
    A = forget._pool.arm("a")["A"]
    w = np.linalg.eigvalsh(A)
    assert w.min() > 0.1 and w.max() / w.min() < 1e4


def test_forgetting_option_checks_and_persistence(tmp_path):
    for bad in (0.0, 1.5, math.nan, True, "0.9"):
        with pytest.raises(ValueError):
            Router(POOL, 2, discount=bad, engine="reference")
    assert Router(POOL, 2, discount=0.99).discount == 0.99  # the native engine forgets too
    r = Router(POOL, 2, ridge=1.0, discount=0.9, engine="reference")
    for i in range(30):
        r.feedback(np.array([float(i % 3), 1.0]), "c", 0.5, 3.0)
    r.save(tmp_path / "r.npz")
    back = Router.load(tmp_path / "r.npz", engine="reference")
    assert back.discount == 0.9
    assert np.allclose(back._pool.arm("c")["A"], r._pool.arm("c")["A"])
    back.feedback(np.array([1.0, 1.0]), "c", 0.5, 3.0)
    r.feedback(np.array([1.0, 1.0]), "c", 0.5, 3.0)
    assert np.allclose(back._pool.arm("c")["theta"], r._pool.arm("c")["theta"])
    # The native engine loads the reference engine's file from the exact statistics.
    nat = Router.load(tmp_path / "r.npz")  # (as saved: before the feedback just above)
    assert nat.discount == 0.9
    nat.feedback(np.array([1.0, 1.0]), "c", 0.5, 3.0)
    assert np.allclose(nat._pool.arm("c")["A"], r._pool.arm("c")["A"])
    assert np.allclose(nat._pool.arm("c")["theta"], r._pool.arm("c")["theta"])
    with pytest.raises(ValueError, match="merged"):
        r.export_delta()
    assert Router(POOL, 2, engine="reference").discount == 1.0
    with pytest.raises(AttributeError):
        r.discount = 0.5  # fixed at construction: the engine's state follows it


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_set_prices_takes_effect_at_once_and_persists(engine, tmp_path):
    r = Router(POOL, 2, ridge=1.0, lam=1e-3, engine=engine)
    r.fit(np.eye(2)[[0, 1] * 20], np.full((40, 3), 0.5), np.full((40, 3), 100.0))
    x = np.array([1.0, 0.0])
    assert r.route(x, 100.0).llm == "c"
    before = r.predict(x[None])
    r.set_prices("c", 50.0, 50.0)
    d = r.route(x, 100.0)
    assert d.llm == "b"
    assert d.cost[2] == pytest.approx((100 * 50 + d.output_tokens[2] * 50) / 1e6, rel=1e-9)
    assert all(np.array_equal(a, b) for a, b in zip(before, r.predict(x[None])))
    assert r.llms[2].input_price == 50.0
    for bad in ((-1.0, 1.0), (1.0, math.nan), ("1", 1.0)):
        with pytest.raises(ValueError):
            r.set_prices("c", *bad)
    with pytest.raises(KeyError):
        r.set_prices("zzz", 1.0, 1.0)
    assert r.llms[2].output_price == 50.0  # unchanged by the refused calls
    r.save(tmp_path / "r.npz")
    assert Router.load(tmp_path / "r.npz", engine=engine).route(x, 100.0).llm == "b"
