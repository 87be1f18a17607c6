"""The Router on the native core against the same Router on the float64 NumPy reference."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixllm import LLM, Router, StateError
from mixllm import _core, _reference

from fakes import in_threads

# Native and reference agree to this relative tolerance on every prediction and score term
# (differences come only from summation order in the SIMD kernels and the Cholesky routine).
RTOL = 1e-9
ATOL = 1e-10

POOL = [
    LLM("gpt-4", 10.0, 30.0),
    LLM("gpt-3.5", 1.0, 2.0),
    LLM("mixtral", 0.6, 0.6),
    LLM("mistral-7b", 0.2, 0.2),
]


def _data(rng, n, dim, k=len(POOL), missing=0.2):
    X = rng.normal(size=(n, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    W = rng.normal(size=(dim, k))
    quality = 1.0 / (1.0 + np.exp(-(X @ W)))
    tokens = np.exp(3.0 + X @ rng.normal(size=(dim, k))).round()
    mask = rng.random((n, k)) < missing
    quality[mask] = np.nan
    return X, quality, tokens


def _pair(dim, **kw):
    return Router(POOL, dim, engine="native", **kw), Router(POOL, dim, engine="reference", **kw)


def _exact(r):
    """Every term compared with the reference: every bonus exact (a decision leaves an LLM
    that cannot win at its certified bound; tests/test_bound_refine.py holds that path to the
    exact one). Set after fit, which builds a new pool."""
    if r.engine == "native":
        r._pool.exact_bonus = True
    return r


def _assert_same_decision(a, b):
    assert a.llm == b.llm and a.index == b.index and a.names == b.names
    for t in ("quality", "output_tokens", "cost", "bonus", "penalty", "score"):
        np.testing.assert_allclose(getattr(a, t), getattr(b, t), rtol=RTOL, atol=ATOL, err_msg=t)


@pytest.mark.parametrize("dim", [1, 7, 16, 17, 33, 384])
def test_fit_route_feedback_cycle_matches_reference(backend, rng, dim):
    native, ref = _pair(dim, alpha=0.3, beta=0.05, tau=2.0, ridge=0.5, refactor_every=7)
    X, q, t = _data(rng, 60, dim)
    native.fit(X, q, t)
    ref.fit(X, q, t)
    _exact(native)
    for r in (native, ref):
        r.set_waiting_time("gpt-4", 3.0)
        r.set_waiting_time("mixtral", 0.5)
    Xs, qs, ts = _data(rng, 25, dim, missing=0.0)
    for i in range(25):  # a stream: route, then learn from the routed LLM only (bandit feedback)
        dn = native.route(Xs[i], input_tokens=50 + i, lam=0.002)
        dr = ref.route(Xs[i], input_tokens=50 + i, lam=0.002)
        _assert_same_decision(dn, dr)
        for r in (native, ref):
            r.feedback(Xs[i], dn.llm, quality=qs[i, dn.index], output_tokens=ts[i, dn.index])
    for a, b in zip(native.predict(Xs), ref.predict(Xs)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(native.route_batch(Xs, 80, lam=0.01),
                                  ref.route_batch(Xs, 80, lam=0.01))
    assert native.n_observations() == ref.n_observations()


def test_partial_fit_matches_reference_and_fit(backend, rng):
    dim = 17
    native, ref = _pair(dim)
    X, q, t = _data(rng, 80, dim)
    for r in (native, ref):
        r.partial_fit(X[:50], q[:50], t[:50])
        r.partial_fit(X[50:], q[50:], t[50:])
    whole = Router(POOL, dim).fit(X, q, t)
    for a, b, c in zip(native.predict(X), ref.predict(X), whole.predict(X)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(a, c, rtol=RTOL, atol=ATOL)


def test_fit_accepts_mapping_and_skips_unobserved(rng):
    dim = 5
    X, q, t = _data(rng, 30, dim, missing=0.0)
    a = Router(POOL, dim).fit(X, q, t)
    b = Router(POOL, dim).fit(X, {n.name: q[:, k] for k, n in enumerate(POOL)},
                              {n.name: t[:, k] for k, n in enumerate(POOL)})
    for u, v in zip(a.predict(X), b.predict(X)):
        np.testing.assert_allclose(u, v)
    c = Router(POOL, dim).fit(X, {"gpt-4": q[:, 0]}, {"gpt-4": t[:, 0]})
    assert c.n_observations() == {"gpt-4": 30, "gpt-3.5": 0, "mixtral": 0, "mistral-7b": 0}


def test_lam_extremes_pick_best_quality_and_cheapest(rng):
    dim = 8
    router = Router(POOL, dim, alpha=0.0)
    X, q, t = _data(rng, 200, dim, missing=0.0)
    router.fit(X, q, t)
    Xq = X[:40]
    pq, pt, _ = router.predict(Xq)
    n_in = np.full(40, 300.0)
    prices_in = np.array([m.input_price for m in POOL])
    prices_out = np.array([m.output_price for m in POOL])
    cost = (n_in[:, None] * prices_in + pt * prices_out) * 1e-6
    np.testing.assert_array_equal(router.route_batch(Xq, n_in, lam=1e12), pq.argmax(axis=1))
    np.testing.assert_array_equal(router.route_batch(Xq, n_in, lam=math.inf), pq.argmax(axis=1))
    np.testing.assert_array_equal(router.route_batch(Xq, n_in, lam=1e-12), cost.argmin(axis=1))


def test_latency_penalty_steers_away_from_a_busy_llm(rng):
    dim = 6
    router = Router(POOL, dim, beta=1.0, tau=1.0)
    X, q, t = _data(rng, 100, dim, missing=0.0)
    router.fit(X, q, t)
    x = X[0]
    first = router.route(x, 100, lam=math.inf).llm
    router.set_waiting_time(first, 10.0)
    d = router.route(x, 100, lam=math.inf)
    assert d.llm != first
    assert d.penalty[d.names.index(first)] == pytest.approx(math.expm1(10.0))
    assert router.route(x, 100, lam=math.inf).penalty.min() == 0.0


def test_feedback_moves_predictions_towards_observations(rng):
    dim = 4
    router = Router(POOL, dim, ridge=1.0)
    x = np.array([1.0, 0.0, 0.0, 0.0])
    before = router.predict(x[None])[0][0, 1]
    bonus_before = router.predict(x[None])[2][0, 1]
    for _ in range(20):
        router.feedback(x, "gpt-3.5", quality=1.0, output_tokens=100)
    q, tok, bonus = router.predict(x[None])
    assert before == 0.0 and q[0, 1] > 0.9
    assert 80 < tok[0, 1] < 101
    assert bonus[0, 1] < bonus_before / 4
    assert q[0, 0] == 0.0  # other LLMs untouched


def test_add_llm_cold_start_and_remove(rng):
    dim = 6
    router = Router(POOL, dim, alpha=1.0, cold_ridge=0.1)
    X, q, t = _data(rng, 150, dim, missing=0.0)
    router.fit(X, q, t)
    router.add_llm(LLM("newcomer", 0.5, 0.5))
    assert router.names[-1] == "newcomer"
    _, _, bonus = router.predict(X[:10])
    assert (bonus[:, -1] > 2 * bonus[:, :-1].max(axis=1)).all()  # exploration favours it
    pq_new = router.predict(X[:10])[0][:, -1]
    pq_pool = router.predict(X[:10])[0][:, :-1].mean(axis=1)
    np.testing.assert_allclose(pq_new, pq_pool, rtol=1e-9, atol=1e-9)  # prior = pool mean
    router.add_llm(LLM("copy", 1.0, 1.0), warm_start="gpt-4")
    np.testing.assert_allclose(router.predict(X[:5])[0][:, -1], router.predict(X[:5])[0][:, 0],
                               rtol=1e-9, atol=1e-12)
    router.remove_llm("gpt-4")
    assert "gpt-4" not in router.names
    assert (np.array(router.names)[router.route_batch(X, 100, lam=1e9)] != "gpt-4").all()
    with pytest.raises(KeyError):
        router.feedback(X[0], "gpt-4", 1.0, 10)


def _snapshot(router):
    return {n: router._pool.arm(n) for n in router.names}, router.names


def _assert_unchanged(router, snap):
    arms, names = snap
    assert router.names == names
    for n in names:
        now = router._pool.arm(n)
        for key in ("A", "Ainv", "b", "theta"):
            np.testing.assert_array_equal(now[key], arms[n][key])
        assert now["n_obs"] == arms[n]["n_obs"] and now["wait"] == arms[n]["wait"]


BAD_CALLS = [
    ("route", lambda r, x: r.route(x[:-1], 10)),
    ("route", lambda r, x: r.route(np.full_like(x, np.nan), 10)),
    ("route", lambda r, x: r.route(np.where(np.arange(x.size) == 0, np.inf, x), 10)),
    ("route", lambda r, x: r.route(x.astype(str), 10)),
    ("route", lambda r, x: r.route(x, -1)),
    ("route", lambda r, x: r.route(x, 10, lam=0.0)),
    ("route", lambda r, x: r.route(x, 10, lam=-1.0)),
    ("route", lambda r, x: r.route(x, 10, lam=float("nan"))),
    ("route_batch", lambda r, x: r.route_batch(x[None, :], [1, 2])),
    ("route_batch", lambda r, x: r.route_batch(x, 10)),
    ("predict", lambda r, x: r.predict(x)),
    ("feedback", lambda r, x: r.feedback(x, "nope", 1.0, 10)),
    ("feedback", lambda r, x: r.feedback(x, "gpt-4", float("nan"), 10)),
    ("feedback", lambda r, x: r.feedback(x, "gpt-4", 1.0, -5)),
    ("feedback", lambda r, x: r.feedback(x, "gpt-4", 1.0, float("inf"))),
    ("feedback", lambda r, x: r.feedback(x[:3], "gpt-4", 1.0, 10)),
    ("fit", lambda r, x: r.fit(x[None, :], np.ones((1, 3)), np.ones((1, 4)))),
    ("fit", lambda r, x: r.fit(x[None, :], {"nope": [1.0]}, {"nope": [1.0]})),
    ("fit", lambda r, x: r.fit(x[None, :], np.full((1, 4), np.inf), np.ones((1, 4)))),
    ("fit", lambda r, x: r.fit(x[None, :], np.ones((1, 4)), -np.ones((1, 4)))),
    ("partial_fit", lambda r, x: r.partial_fit(np.vstack([x, x * np.nan]), np.ones((2, 4)),
                                               np.ones((2, 4)))),
    ("add_llm", lambda r, x: r.add_llm(LLM("gpt-4", 1, 1))),
    ("add_llm", lambda r, x: r.add_llm(LLM("z", 1, 1), warm_start="nope")),
    ("add_llm", lambda r, x: r.add_llm(LLM("z", 1, 1), warm_start=np.ones((2, 3)))),
    ("add_llm", lambda r, x: r.add_llm("not an llm")),
    ("remove_llm", lambda r, x: r.remove_llm("nope")),
    ("set_waiting_time", lambda r, x: r.set_waiting_time("gpt-4", -1.0)),
    ("set_waiting_time", lambda r, x: r.set_waiting_time("nope", 1.0)),
]


@pytest.mark.parametrize("engine", ["native", "reference"])
@pytest.mark.parametrize("call", BAD_CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(BAD_CALLS)])
def test_bad_input_raises_and_leaves_state_unchanged(rng, engine, call):
    dim = 5
    router = Router(POOL, dim, engine=engine, alpha=0.1)
    X, q, t = _data(rng, 40, dim)
    router.fit(X, q, t)
    router.set_waiting_time("mixtral", 1.5)
    snap = _snapshot(router)
    with pytest.raises((ValueError, KeyError)):
        call[1](router, X[0].copy())
    _assert_unchanged(router, snap)


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_update_llm_reprices_and_keeps_what_it_learned(rng, engine):
    router = Router(POOL, 4, ridge=1.0, lam=1e-3, engine=engine)
    X, q, t = _data(rng, 40, 4)
    router.fit(X, q, t)
    name = POOL[1].name
    before = router.predict(X)
    d0 = router.route(X[0], 100.0)
    dearer = LLM(name, POOL[1].input_price * 10, POOL[1].output_price * 10, ttft_s=2.0)
    router.update_llm(dearer)
    for a, b in zip(before, router.predict(X)):  # the learned predictors are untouched
        np.testing.assert_array_equal(a, b)
    d1 = router.route(X[0], 100.0)
    k = d0.names.index(name)
    np.testing.assert_allclose(d1.cost[k], d0.cost[k] * 10, rtol=1e-12)
    assert {m.name: m for m in router.llms}[name] == dearer
    assert router.llm(name) == dearer and router.llm(POOL[0].name) == POOL[0]
    for bad in ("nobody", 3, None):
        with pytest.raises(KeyError, match="unknown LLM"):
            router.llm(bad)
    with pytest.raises(KeyError):
        router.update_llm(LLM("nobody", 1, 1))
    with pytest.raises(ValueError):
        router.update_llm("gpt-4")


def test_remove_last_llm_is_refused():
    router = Router([LLM("only", 1, 1)], 3)
    with pytest.raises(ValueError, match="last LLM"):
        router.remove_llm("only")
    assert router.names == ["only"]


@pytest.mark.parametrize("kwargs", [
    {"pool": []}, {"pool": [LLM("a", 1, 1), LLM("a", 2, 2)]}, {"dim": 0}, {"dim": 2.5},
    {"alpha": -1.0}, {"beta": float("nan")}, {"tau": 0.0}, {"ridge": 0.0}, {"lam": 0.0},
    {"refactor_every": 0}, {"engine": "gpu"}, {"pool": ["gpt-4"]},
])
def test_bad_constructor_arguments(kwargs):
    args = {"pool": POOL, "dim": 4, **kwargs}
    with pytest.raises(ValueError):
        Router(args.pop("pool"), args.pop("dim"), **args)


@pytest.mark.parametrize("field,value", [
    ("input_price", -1.0), ("output_price", float("inf")), ("name", ""), ("tokens_per_s", 0.0),
    ("slots", 0), ("ttft_s", float("nan")), ("input_price", "1.0"),
])
def test_bad_llm(field, value):
    kw = {"name": "m", "input_price": 1.0, "output_price": 1.0, field: value}
    with pytest.raises(ValueError):
        LLM(**kw)


def test_inputs_are_not_mutated(rng):
    dim = 9
    router = Router(POOL, dim, alpha=0.2)
    X, q, t = _data(rng, 30, dim)
    copies = [a.copy() for a in (X, q, t)]
    router.fit(X, q, t)
    router.partial_fit(X, q, t)
    n_in = np.arange(30, dtype=float)
    n_copy = n_in.copy()
    router.route_batch(X, n_in)
    router.route(X[0], 10)
    router.feedback(X[1], "gpt-4", 0.5, 10)
    router.predict(X)
    for a, c in zip((X, q, t), copies):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(n_in, n_copy)


def test_float32_and_list_inputs(rng):
    dim = 4
    router = Router(POOL, dim).fit(*_data(rng, 20, dim))
    x = rng.normal(size=dim)
    d64 = router.route(x, 10, lam=0.1)
    d32 = router.route(x.astype(np.float32).astype(np.float64), 10, lam=0.1)
    dlist = router.route(list(x), 10, lam=0.1)
    assert d64.llm == dlist.llm
    np.testing.assert_allclose(d32.quality, d64.quality, rtol=1e-6, atol=1e-6)


def test_save_load_gives_identical_decisions(tmp_path, rng):
    dim = 12
    router = Router(POOL, dim, alpha=0.4, beta=0.2, tau=3.0, refactor_every=50)
    X, q, t = _data(rng, 100, dim)
    router.fit(X, q, t)
    for i in range(30):  # leave the inverses between refactorisations: drift must survive
        router.feedback(X[i], POOL[i % 4].name, q[i, 0] if np.isfinite(q[i, 0]) else 0.5, 20)
    router.set_waiting_time("gpt-4", 2.0)
    router.metadata["encoder"] = {"name": "test"}
    path = tmp_path / "router.npz"
    router.save(path)
    loaded = Router.load(path)
    assert loaded.names == router.names and loaded.llms == router.llms
    assert loaded.metadata == {"encoder": {"name": "test"}}
    np.testing.assert_array_equal(loaded.route_batch(X, 100, lam=0.01),
                                  router.route_batch(X, 100, lam=0.01))
    for a, b in zip(loaded.predict(X), router.predict(X)):
        np.testing.assert_array_equal(a, b)
    # and they keep learning identically
    for r in (router, loaded):
        r.feedback(X[0], "mixtral", 1.0, 30)
    for a, b in zip(loaded.predict(X), router.predict(X)):
        np.testing.assert_array_equal(a, b)
    assert loaded.n_observations() == router.n_observations()


def test_load_rejects_tampered_and_foreign_files(tmp_path, rng):
    dim = 4
    router = Router(POOL, dim).fit(*_data(rng, 20, dim))
    path = tmp_path / "r.npz"
    router.save(path)
    raw = bytearray(path.read_bytes())
    # Flip a byte inside the first stored array's data (past the zip and .npy headers).
    raw[200] ^= 0xFF
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(StateError):
        Router.load(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(StateError):
        Router.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.ones(3))
    with pytest.raises(StateError):
        Router.load(other)
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(path.read_bytes()[: len(raw) // 2])
    with pytest.raises(StateError):
        Router.load(truncated)
    with pytest.raises(FileNotFoundError):
        Router.load(tmp_path / "missing.npz")


def test_sherman_morrison_drift_is_bounded_and_reanchored(backend, rng):
    dim = 33
    pool = _core.Pool(dim, 2, 10**9)  # no automatic refactorisation: measure raw drift
    pool.add_arm("a", 1.0, np.zeros((2, dim)), 1.0, 1.0)
    X = rng.normal(size=(3000, dim))
    for x in X:
        pool.update("a", x, np.array([x[0], 1.0]))
    s = pool.arm("a")
    exact = np.linalg.inv(s["A"])
    rel = np.abs(s["Ainv"] - exact).max() / np.abs(exact).max()
    assert rel < 1e-9
    pool.refactor("a")
    rel_after = np.abs(pool.arm("a")["Ainv"] - exact).max() / np.abs(exact).max()
    assert rel_after < 1e-12
    # automatic re-anchoring resets the counter (max_rank past 250: no fold in between)
    auto = _core.Pool(dim, 2, 100, 256)
    auto.add_arm("a", 1.0, np.zeros((2, dim)), 1.0, 1.0)
    for x in X[:250]:
        auto.update("a", x, np.array([1.0, 1.0]))
    assert auto.arm("a")["since_refactor"] == 50
    # and so does a fold, an exact refactorisation: computed by the update (every 8 rows at
    # max_rank 8), or in the background, installed max_rank / 4 = 2 rows after it started (the
    # first at update 10, then every 8), the 2 rows since staying corrections
    folds = _core.Pool(dim, 2, 100, 8)
    folds.background_folds = False
    bg = _core.Pool(dim, 2, 100, 8)
    assert bg.background_folds
    for p in (folds, bg):
        p.add_arm("a", 1.0, np.zeros((2, dim)), 1.0, 1.0)
    for n, x in enumerate(X[:250], 1):
        folds.update("a", x, np.array([1.0, 1.0]))
        bg.update("a", x, np.array([1.0, 1.0]))
        if n >= 10:
            assert bg.arm("a")["rank"] == 2 + (n - 10) % 8
            assert bg.arm("a")["since_refactor"] == (n - 10) % 8
    assert folds.arm("a")["since_refactor"] == 250 % 8 and folds.arm("a")["rank"] == 250 % 8
    np.testing.assert_allclose(bg.arm("a")["Ainv"], folds.arm("a")["Ainv"], rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 40), dim=st.sampled_from([1, 3, 8, 17]), seed=st.integers(0, 2**31 - 1),
       ridge=st.floats(0.05, 20.0))
def test_property_sm_inverse_matches_direct(n, dim, seed, ridge):
    r = np.random.default_rng(seed)
    pool = _core.Pool(dim, 2, 10**9)
    pool.add_arm("a", ridge, np.zeros((2, dim)), 0.0, 0.0)
    X = r.normal(size=(n, dim))
    Y = r.normal(size=(n, 2))
    for x, y in zip(X, Y):
        pool.update("a", x, y)
    s = pool.arm("a")
    A = ridge * np.eye(dim) + X.T @ X
    np.testing.assert_allclose(s["A"], A, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s["Ainv"], np.linalg.inv(A), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(s["theta"], np.linalg.solve(A, X.T @ Y).T, rtol=1e-7, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 30), seed=st.integers(0, 2**31 - 1))
def test_property_update_order_does_not_matter(n, seed):
    r = np.random.default_rng(seed)
    dim = 6
    X = r.normal(size=(n, dim))
    Y = r.normal(size=(n, 2))
    perm = r.permutation(n)
    pools = []
    for order in (np.arange(n), perm):
        p = _core.Pool(dim, 2, 10**9)
        p.add_arm("a", 1.0, np.zeros((2, dim)), 0.0, 0.0)
        for i in order:
            p.update("a", X[i], Y[i])
        pools.append(p.arm("a"))
    for key in ("A", "b"):
        np.testing.assert_allclose(pools[0][key], pools[1][key], rtol=1e-12, atol=1e-12)
    for key in ("Ainv", "theta"):
        np.testing.assert_allclose(pools[0][key], pools[1][key], rtol=1e-8, atol=1e-10)


def test_score_weights_are_checked_when_changed():
    router = Router(POOL, 3)
    router.alpha, router.beta, router.tau = 0.5, 2.0, math.inf
    for name, bad, match in (("alpha", -1.0, "alpha must be >= 0.0"),
                             ("beta", math.nan, "beta must be finite"),
                             ("tau", 0.0, "tau must be > 0.0"),
                             ("alpha", "1", "alpha must be a number")):
        with pytest.raises(ValueError, match=match):
            setattr(router, name, bad)
    assert (router.alpha, router.beta, router.tau) == (0.5, 2.0, math.inf)  # refused: unchanged
    assert "LinUCB bonus" in Router.alpha.__doc__


def test_concurrent_route_and_feedback_lose_nothing(rng):
    dim = 16
    router = Router(POOL, dim, alpha=0.1, refactor_every=64)
    X, q, t = _data(rng, 50, dim, missing=0.0)
    router.fit(X, q, t)
    n_threads, per_thread = 4, 150

    def work(seed):
        r = np.random.default_rng(seed)
        for i in range(per_thread):
            x = X[r.integers(50)]
            assert router.route(x, 100, lam=0.01).llm in router.names
            router.route_batch(X[:8], 100, lam=0.01)
            router.feedback(x, POOL[i % 4].name, 0.5, 10)

    assert in_threads(work, n_threads) == []
    counts = router.n_observations()
    assert sum(counts.values()) == 50 * 4 + n_threads * per_thread
    for k, name in enumerate(router.names):
        assert counts[name] == 50 + n_threads * sum(1 for i in range(per_thread) if i % 4 == k)


def test_weighted_feedback_equals_scaled_sufficient_statistics(rng):
    dim = 5
    a = Router(POOL, dim, engine="reference")
    x = rng.normal(size=dim)
    a.feedback(x, "gpt-4", 0.8, 40, weight=0.25)
    s = a._pool.arm("gpt-4")
    z = np.append(x, 1.0)
    np.testing.assert_allclose(s["A"], np.eye(dim + 1) + 0.25 * np.outer(z, z), rtol=1e-12)
    np.testing.assert_allclose(s["b"], 0.25 * np.outer([0.8, np.log1p(40)], z), rtol=1e-12)
    with pytest.raises(ValueError):
        a.feedback(x, "gpt-4", 0.8, 40, weight=0.0)


def test_thumbs_feedback_is_a_weaker_thresholded_signal(rng):
    dim = 3
    strong, weak = Router(POOL, dim), Router(POOL, dim)
    x = np.array([1.0, 0.0, 0.0])
    for _ in range(3):
        strong.feedback(x, "mixtral", 1.0, 50)
        weak.feedback_thumbs(x, "mixtral", True, 50)
    qs = strong.predict(x[None])[0][0, 2]
    qw = weak.predict(x[None])[0][0, 2]
    assert 0 < qw < qs < 1
    weak.feedback_thumbs(x, "mixtral", False, 50)
    assert weak.predict(x[None])[0][0, 2] < qw
    with pytest.raises(ValueError):
        weak.feedback_thumbs(x, "mixtral", "yes", 50)


def test_clone_is_independent(rng):
    dim = 4
    router = Router(POOL, dim, alpha=0.2).fit(*_data(rng, 30, dim))
    router.metadata["k"] = [1]
    twin = router.clone()
    X = rng.normal(size=(10, dim))
    np.testing.assert_array_equal(twin.predict(X)[0], router.predict(X)[0])
    twin.feedback(X[0], "gpt-4", 1.0, 10)
    twin.add_llm(LLM("extra", 1, 1))
    twin.metadata["k"].append(2)
    assert "extra" not in router.names and router.metadata == {"k": [1]}
    assert twin.n_observations()["gpt-4"] == router.n_observations()["gpt-4"] + 1


# ---------------------------------------------------------------- the shared-base representation
# The native pool keeps a shared inverse Cholesky factor plus low-rank corrections per LLM and
# folds an LLM into a base of its own past max_rank (cpp/include/mixllm/pool.hpp). These tests
# drive every path of that representation against the dense float64 reference.

@pytest.mark.parametrize("dim", [1, 7, 16, 17, 33])
@pytest.mark.parametrize("max_rank", [1, 3, 8])
def test_low_rank_corrections_and_folds_match_reference(backend, rng, dim, max_rank):
    native = _core.Pool(dim, 2, 10**9, max_rank)
    ref = _reference.RefPool(dim, 2, 10**9)
    X, q, t = _data(rng, 30, dim, k=3, missing=0.3)
    Y = np.stack([q, np.log1p(t)], axis=2)
    for p in (native, ref):
        p.fit(["a", "b", "c"], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], 0.7, X, Y)
    Xs = rng.normal(size=(40, dim))
    for i, x in enumerate(Xs):  # weighted updates through corrections, folds and re-anchoring
        name, w = "abc"[i % 3], (0.25, 1.0, 2.0)[i % 3]
        y = np.array([rng.normal(), rng.normal()])
        for p in (native, ref):
            p.update(name, x, y, w)
        if i == 20:
            for p in (native, ref):
                p.refactor(None)
    mn, bn, _ = native.predict(Xs)
    mr, br, _ = ref.predict(Xs)
    np.testing.assert_allclose(mn, mr, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(bn, br, rtol=1e-8, atol=1e-9)
    for name in "abc":
        a, b = native.arm(name), ref.arm(name)
        assert a["rank"] < max_rank + max(1, max_rank // 4)  # a background fold's lag
        for key in ("A", "b"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-12)
        for key in ("Ainv", "theta"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(native.theta(name), a["theta"], rtol=0, atol=0)


@pytest.mark.parametrize("dim", [1, 7, 17])
def test_add_arm_state_takes_the_exact_statistics_and_refuses_ainv_theta_natively(rng, dim):
    """Both engines build an arm from A and b alike; the reference engine resumes from a given
    inverse and theta (its own saved ones), the native core, which derives them, refuses them
    (ValueError, pool unchanged) instead of ignoring them."""
    Z = rng.normal(size=(3 * dim + 2, dim))
    A = np.eye(dim) * 0.5 + Z.T @ Z
    b = rng.normal(size=(2, dim))
    native, ref = _core.Pool(dim, 2, 100), _reference.RefPool(dim, 2, 100)
    for p in (native, ref):
        p.add_arm_state("a", A, None, b, None, 7, 3, 1.0, 2.0)
    a, r = native.arm("a"), ref.arm("a")
    for key in ("A", "b"):
        np.testing.assert_array_equal(a[key], r[key])
    for key in ("Ainv", "theta"):
        np.testing.assert_allclose(a[key], r[key], rtol=1e-9, atol=1e-10)
    assert a["n_obs"] == r["n_obs"] == 7
    given_inv, given_theta = r["Ainv"] * 1.5, r["theta"] + 1.0  # deliberately not A^-1, A^-1 b
    ref.add_arm_state("kept", A, given_inv, b, given_theta, 7, 3, 1.0, 2.0)
    np.testing.assert_array_equal(ref.arm("kept")["Ainv"], given_inv)
    np.testing.assert_array_equal(ref.arm("kept")["theta"], given_theta)
    version = native.version()
    for inv, theta in ((r["Ainv"], None), (None, r["theta"]), (r["Ainv"], r["theta"])):
        with pytest.raises(ValueError, match="pass None for both"):
            native.add_arm_state("b", A, inv, b, theta, 7, 3, 1.0, 2.0)
    assert native.names() == ["a"] and native.version() == version


def test_fit_shares_one_base_on_full_information_data(rng):
    dim = 24
    native = _core.Pool(dim, 2, 4096)
    X, q, t = _data(rng, 50, dim, k=4, missing=0.0)
    q[3, 1] = np.nan  # one LLM misses one row: the base is the rows all four observed
    native.fit(["a", "b", "c", "d"], [1.0] * 4, [1.0] * 4, 1.0, X,
               np.stack([q, np.log1p(t)], axis=2))
    snap = native.snapshot()
    assert len(snap["bases"]) == 1
    assert [a["rank"] for a in snap["arms"]] == [1, 0, 1, 1]  # row 3: a rank-1 correction
    assert native.n_obs() == [50, 49, 50, 50]
    A = native.arm("b")["A"]
    seen = np.ones(50, bool)
    seen[3] = False
    np.testing.assert_allclose(A, np.eye(dim) + X[seen].T @ X[seen], rtol=1e-12, atol=1e-12)


def test_update_after_route_reuses_the_cached_whitening(rng):
    # Same results whether or not the update finds R x from the decision in the cache.
    dim = 20
    X, q, t = _data(rng, 60, dim, missing=0.0)
    a, b = Router(POOL, dim, alpha=0.5).fit(X, q, t), Router(POOL, dim, alpha=0.5).fit(X, q, t)
    for i in range(12):
        d = a.route(X[i], 30)
        a.feedback(X[i], d.llm, 0.5, 20)            # cache hit
        b.feedback(X[i].copy() + 0.0, d.llm, 0.5, 20)  # b never routed X[i]: cache miss
    for u, v in zip(a.predict(X), b.predict(X)):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)


def test_snapshot_round_trip_is_bit_exact(rng):
    dim = 9
    pool = _core.Pool(dim, 2, 50, 4)
    X, q, t = _data(rng, 20, dim, k=2, missing=0.4)
    pool.fit(["a", "b"], [1.0, 2.0], [1.0, 2.0], 1.0, X, np.stack([q, np.log1p(t)], axis=2))
    for x in X[:6]:
        pool.update("a", x, np.array([1.0, 2.0]), 0.5)
    pool.set_wait("b", 1.5)
    again = _core.Pool.from_snapshot(dim, 2, 50, 4, pool.snapshot())
    for u, v in zip(pool.predict(X)[:2], again.predict(X)[:2]):
        np.testing.assert_array_equal(u, v)
    bad = pool.snapshot()
    bad["arms"][0]["W"] = np.ones(3)
    with pytest.raises(ValueError, match="wrong size"):
        _core.Pool.from_snapshot(dim, 2, 50, 4, bad)


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_lean_route_and_feedback_accept_what_the_slow_path_did(rng, engine):
    dim = 6
    router = Router(POOL, dim, alpha=0.2, engine=engine).fit(*_data(rng, 30, dim))
    x = rng.normal(size=dim)
    want = router.route(x, 12.0, lam=0.1)
    for xs, n_in, lam in [(list(x), 12, 0.1), (tuple(x), 12.0, 0.1),
                          (x, np.float64(12.0), np.float64(0.1)), (x, np.array([12.0]), 0.1)]:
        d = router.route(xs, n_in, lam=lam)
        assert d.llm == want.llm and d.names == want.names
        np.testing.assert_allclose(d.score, want.score, rtol=1e-12)
        assert isinstance(d.as_dict()["terms"], dict)
    np.testing.assert_array_equal(router.route(x, 12, lam=1).score, router.route(x, 12, lam=1.0).score)
    router.feedback(list(x), "gpt-4", np.float64(0.5), np.int64(10), weight=np.float32(0.5))
    with pytest.raises(KeyError):
        router.feedback(x, 3, 1.0, 10)
    with pytest.raises(ValueError, match="shape"):
        router.route(x[None, :], 10)
    with pytest.raises(ValueError):
        router.route(x.astype(complex), 10)
    with pytest.raises(ValueError):
        router.feedback(x, "gpt-4", True, 10)


def test_names_memo_follows_membership_changes(rng):
    dim = 4
    router = Router(POOL, dim).fit(*_data(rng, 20, dim))
    x = rng.normal(size=dim)
    assert router.route(x, 1).names == tuple(router.names)
    router.add_llm(LLM("new", 0.1, 0.1))
    assert router.route(x, 1).names == tuple(router.names)
    router.remove_llm("gpt-4")
    d = router.route(x, 1)
    assert d.names == tuple(router.names) and "gpt-4" not in d.names
    router.fit(*_data(rng, 20, dim, k=len(router.names)))
    assert router.route(x, 1).names == tuple(router.names)


def test_load_reads_a_version_1_file(tmp_path, rng):
    import hashlib
    import json

    dim = 5
    router = Router(POOL, dim, alpha=0.3).fit(*_data(rng, 30, dim))
    arrays = {}
    llms = []
    for k, name in enumerate(router.names):
        s = router._pool.arm(name)
        for key in ("A", "Ainv", "b", "theta"):
            arrays[f"{k}.{key}"] = s[key]
        llms.append({"name": name, "input_price": POOL[k].input_price,
                     "output_price": POOL[k].output_price, "ttft_s": 0.5, "tokens_per_s": 50.0,
                     "slots": 8, "n_obs": int(s["n_obs"]), "since_refactor": 0, "wait": 0.0})
    manifest = {"format": "mixllm-router", "version": 1, "config": router._config(),
                "llms": llms, "metadata": {},
                "sha256": {k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest()
                           for k, v in arrays.items()}}
    arrays["manifest"] = np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8)
    path = tmp_path / "v1.npz"
    np.savez(path, **arrays)
    X = rng.normal(size=(10, dim))
    for engine in ("native", "reference"):
        loaded = Router.load(path, engine=engine)
        for a, b in zip(loaded.predict(X), router.predict(X)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


def test_bench_runs_and_reports_the_documented_keys(tmp_path):
    import argparse
    import json

    from mixllm import bench

    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "bench.json"
    args = parser.parse_args(["bench", "--dim", "17", "--k", "3", "--batch", "8", "--n", "20",
                              "--json", str(out)])
    assert args.func(args) == 0
    res = json.loads(out.read_text())
    assert res["d"] == 17 and res["k"] == 3
    for key in ("decision_us", "update_us", "batch_qps"):  # installed peers add their keys
        assert {"mixllm", "numpy"} <= set(res[key]) and all(v > 0 for v in res[key].values())


@pytest.mark.parametrize("attr,bad", [("alpha", -0.1), ("beta", float("nan")), ("tau", 0.0),
                                      ("lam", 0.0), ("alpha", "1")])
def test_score_weights_can_be_changed_but_are_validated(attr, bad):
    router = Router(POOL, 3, alpha=0.2, beta=0.1, tau=5.0, lam=0.01)
    before = getattr(router, attr)
    with pytest.raises(ValueError):
        setattr(router, attr, bad)
    assert getattr(router, attr) == before
    setattr(router, attr, 0.5)
    assert getattr(router, attr) == 0.5


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_decision_is_an_immutable_value_over_its_terms(rng, engine):
    import copy
    import dataclasses
    import pickle

    dim = 5
    router = Router(POOL, dim, alpha=0.1, engine=engine).fit(*_data(rng, 30, dim))
    d = router.route(rng.normal(size=dim), 20, lam=0.05)
    assert d.terms.shape == (6, len(POOL))
    for j, t in enumerate(("quality", "output_tokens", "cost", "bonus", "penalty", "score")):
        np.testing.assert_array_equal(getattr(d, t), d.terms[j])
    assert d.llm == d.names[d.index] and d.index == int(np.argmax(d.score))
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.llm = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        del d.index
    with pytest.raises(AttributeError):
        d.extra = 1  # no __dict__: nothing else can be attached either
    with pytest.raises(ValueError, match="read-only"):
        d.score[0] = 1e9
    assert not d.terms.flags.writeable and not d.quality.flags.writeable
    for other in (pickle.loads(pickle.dumps(d)), copy.deepcopy(d), copy.copy(d)):
        assert other == d and other is not d
    rebuilt = type(d)(d.llm, d.index, list(d.names), d.terms.tolist())
    assert rebuilt == d
    changed = d.terms.copy()
    changed[2, 0] += 1.0
    assert type(d)(d.llm, d.index, d.names, changed) != d
    assert d != "x" and (d == "x") is False
    assert repr(d).startswith(f"Decision(llm={d.llm!r}, index={d.index}")
    doc = d.as_dict()
    assert doc["llm"] == d.llm and set(doc["terms"]) == set(d.names)
    assert doc["terms"][d.llm]["score"] == float(d.score[d.index])
    with pytest.raises(TypeError):
        hash(d)


def test_decision_constructor_validates(rng):
    from mixllm import Decision

    terms = np.zeros((6, 2))
    ok = Decision("b", 0, ("b", "a"), terms)
    assert ok.llm == "b" and ok.names == ("b", "a")
    for args, match in [(("a", 0, ("b", "a"), terms), "is not names"),
                        (("b", 2, ("b", "a"), terms), "index"),
                        (("b", True, ("b", "a"), terms), "index"),
                        (("b", 0, (), np.zeros((6, 0))), "names"),
                        (("b", 0, ("b", 1), terms), "names"),
                        (("b", 0, ("b", "a"), np.zeros((6, 3))), "shape"),
                        (("b", 0, ("b", "a"), np.zeros((5, 2))), "shape")]:
        with pytest.raises(ValueError, match=match):
            Decision(*args)


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_lean_route_batch_accepts_what_the_slow_path_did(rng, engine):
    dim = 6
    router = Router(POOL, dim, alpha=0.2, engine=engine).fit(*_data(rng, 30, dim))
    X = rng.normal(size=(5, dim))
    n_in = np.array([1.0, 50.0, 400.0, 3.0, 0.0])
    want = np.array([router.route(X[i], n_in[i], lam=0.01).index for i in range(5)])
    np.testing.assert_array_equal(router.route_batch(X, n_in, lam=0.01), want)
    for xs, toks, lam in [(X.tolist(), n_in.tolist(), 0.01), (X.astype(np.float32).astype(float), n_in, 0.01),
                          (np.asfortranarray(X), tuple(n_in), np.float64(0.01)),
                          (X, n_in.astype(np.int64), 0.01)]:
        np.testing.assert_array_equal(router.route_batch(xs, toks, lam=lam), want)
    one = np.array([router.route(X[i], 7, lam=1.0).index for i in range(5)])
    for toks in (7, 7.0, np.float64(7.0), np.array(7.0), np.int32(7), [7, 7, 7, 7, 7]):
        got = router.route_batch(X, toks, lam=1.0)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, one)
    assert router.route_batch(np.empty((0, dim)), 5).shape == (0,)
    for bad, match in [((X[0], 5), r"shape \(n, 6\), got \(6,\)"),
                       ((X[:, :-1], 5), r"got \(5, 5\)"),
                       ((np.where(X > 1, np.nan, X), 5), "NaN or inf"),
                       ((X * 1e200, 5), "too large"),
                       ((X, [1, 2]), r"shape \(5,\), got \(2,\)"),
                       ((X, -1), "finite and >= 0"),
                       ((X, np.array([1, 2, np.inf, 4, 5])), "finite and >= 0"),
                       ((X.astype(complex), 5), "real"),
                       ((X, "many"), "numeric")]:
        with pytest.raises(ValueError, match=match):
            router.route_batch(*bad)


def test_concurrent_updates_across_unlocked_folds_keep_every_row(rng):
    # A fold runs with the lock released: rows that arrive meanwhile must end up as corrections
    # on the new base, none lost or counted twice, and decisions must go on and stay finite.
    dim, max_rank, n_threads, per_thread = 64, 3, 3, 60
    pool = _core.Pool(dim, 2, 10**9, max_rank)
    pool.add_arm("a", 1.0, np.zeros((2, dim)), 1.0, 1.0)
    pool.add_arm("b", 1.0, np.zeros((2, dim)), 1.0, 1.0)
    X = rng.normal(size=(n_threads, per_thread, dim))
    Y = rng.normal(size=(n_threads, per_thread, 2))
    errors, stop = [], threading.Event()

    def updater(t):
        for i in range(per_thread):
            pool.update("a", X[t, i], Y[t, i], 1.0)

    def scorer():
        q = rng.normal(size=(1, dim))
        while not stop.is_set():
            choice, terms, _ = pool.score(q, np.array([10.0]), 0.1, 0.5, 0.0, math.inf, True)
            if not np.isfinite(terms).all():
                errors.append(AssertionError("non-finite term"))

    s = threading.Thread(target=scorer)
    s.start()
    errors += in_threads(updater, n_threads)
    stop.set()
    s.join()
    assert errors == []
    Xa, Ya = X.reshape(-1, dim), Y.reshape(-1, 2)
    a = pool.arm("a")
    np.testing.assert_allclose(a["A"], np.eye(dim) + Xa.T @ Xa, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(a["b"], Ya.T @ Xa, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(a["Ainv"], np.linalg.inv(a["A"]), rtol=1e-8, atol=1e-10)
    assert a["n_obs"] == n_threads * per_thread and a["rank"] <= 2 * max_rank
    assert pool.arm("b")["n_obs"] == 0
