"""Forgetting (``discount < 1``) in the native engine against the NumPy reference engine.

The native core keeps ``A_k = c_k (G + U^T U)`` and ``b_k = c_k b~_k`` with a per-LLM scale
``c_k`` (``cpp/include/mixllm/pool.hpp``): a discount is ``c_k <- gamma c_k``, the observation's
row and the prior's pseudo-row enter scaled by ``1 / sqrt(c_k)``, and folds renormalise by a
power of 4. The reference engine applies the recurrence of :mod:`mixllm.router`'s docstring to
dense matrices. Over streams long enough to cross many folds (and ``refactor_every``), the two
must agree to rounding, choose the same LLMs, and the native engine's pruned decisions must be
exact LinUCB's; a saved and restored forgetting router must learn bit for bit as the original.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixllm import LLM, Router, _core, _reference
from fakes import exact_decisions

POOL = [LLM(f"m{i}", float(0.5 + i), float(1.0 + 2 * i)) for i in range(4)]


def _unit(rng, n, dim):
    X = rng.normal(size=(n, dim))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _quality(W, k, x, rng):
    return float(np.clip(0.5 + W[k] @ x + 0.1 * rng.normal(), 0.0, 1.0))


@pytest.mark.parametrize("dim, gamma, background", [(7, 0.99, True), (16, 0.95, True),
                                                     (16, 0.995, False), (33, 0.999, True)])
def test_native_forgetting_follows_the_reference_over_long_streams(backend, rng, dim, gamma,
                                                                    background):
    kw = dict(alpha=0.6, lam=50.0, ridge=1.0, discount=gamma, refactor_every=700)
    nat = Router(POOL, dim, **kw)
    ref = Router(POOL, dim, engine="reference", **kw)
    nat._pool.background_folds = background
    # An offline fit first (not discounted, in either engine): LLMs on bases of their own.
    Xf = _unit(rng, 3 * dim, dim)
    Qf, Tf = rng.random((3 * dim, len(POOL))), rng.integers(1, 400, (3 * dim, len(POOL)))
    for r in (nat, ref):
        r.fit(Xf, Qf, Tf.astype(float))
    nat._pool.background_folds = background  # fit builds a new pool
    assert nat._pool.discount == gamma
    W = rng.normal(size=(len(POOL), dim)) * 0.3
    probe = _unit(rng, 16, dim)
    n = 4000
    for i, x in enumerate(_unit(rng, n, dim)):
        dn, dr = nat.route(x, 100.0), ref.route(x, 100.0)
        assert dn.llm == dr.llm, i
        # a bonus left at its certified upper bound is reported as that bound (pool.hpp)
        assert np.all(dn.bonus >= dr.bonus * (1 - 1e-9))
        np.testing.assert_allclose(dn.quality, dr.quality, rtol=1e-9, atol=1e-12)
        if i == n // 2:  # a change in the world: the LLMs' qualities move
            W = rng.normal(size=(len(POOL), dim)) * 0.3
        if i == n // 3:  # saved and restored mid-stream: it goes on following the reference
            nat = Router.from_bytes(nat.to_bytes())
            nat._pool.background_folds = background
        q, tok = _quality(W, dn.index, x, rng), float(rng.integers(1, 400))
        for r in (nat, ref):
            r.feedback(x, dn.llm, q, tok)
        if i % 250 == 0 or i == n - 1:
            for a, b in zip(nat.predict(probe), ref.predict(probe)):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert nat._pool.n_obs() == ref._pool.n_obs()
    # long enough to fold every LLM that was routed to many times over
    assert max(nat._pool.n_obs()) - 3 * dim > 10 * nat._pool.max_rank
    assert len(nat._pool.snapshot()["bases"]) > 1


def _forgetting_router(rng, dim, gamma, n_stream, alpha=0.5):
    r = Router(POOL, dim, alpha=alpha, lam=50.0, discount=gamma, refactor_every=500)
    Xf = _unit(rng, 3 * dim, dim)
    r.fit(Xf, rng.random((3 * dim, len(POOL))),
          rng.integers(1, 400, (3 * dim, len(POOL))).astype(float))
    W = rng.normal(size=(len(POOL), dim)) * 0.3
    for x in _unit(rng, n_stream, dim):
        d = r.route(x, 100.0)
        r.feedback(x, d.llm, _quality(W, d.index, x, rng), float(rng.integers(1, 400)))
    return r


@pytest.mark.parametrize("dim, gamma", [(9, 0.98), (17, 0.995), (33, 0.999)])
def test_forgetting_decisions_are_exact_linucb(backend, rng, dim, gamma):
    # The certified bounds scale with c_k (A_k >= c_k floor_k S, A_k <= c_k C_k gersh_k S):
    # pruned choices equal exact_bonus's, every reported bonus is >= the exact one, and the
    # pruning did run (some LLMs left at their bounds, some choices certified by them).
    r = _forgetting_router(rng, dim, gamma, 60 * dim)
    pool = r._pool
    snap = pool.snapshot()
    assert len(snap["bases"]) > 1
    assert any(a["scale"] != 1.0 for a in snap["arms"])  # the scales are in play
    Q = _unit(rng, 400, dim)
    n_in = rng.integers(1, 2000, 400).astype(float)
    exact = exact_decisions(r, Q, n_in)
    loose = certified = 0
    for q, t, e in zip(Q, n_in, exact):
        d = r.route(q, t)
        assert d.llm == e.llm
        np.testing.assert_array_equal(d.quality, e.quality)
        assert np.all(d.bonus >= e.bonus * (1 - 1e-12))
        loose += int(np.any(d.bonus > e.bonus * (1 + 1e-9)))
        certified += int(d.bonus[d.index] > e.bonus[e.index] * (1 + 1e-9))
    assert loose > 0 and certified > 0


def _base_matrix(base, n):
    return base["scalar"] * np.eye(n) if base["scalar"] > 0 else base["A"].reshape(n, n)


@pytest.mark.parametrize("dim", [7, 33])
def test_forgetting_floors_and_ceilings_stay_certified(backend, rng, dim):
    # Every fold renormalises the base by a power of 4 (and the floor and ceiling with it):
    # floor S <= G <= ceil S still holds for every LLM's base, and with the scale the real
    # A_k = c_k (G + U^T U) lies between c_k floor S and c_k ceil gersh S (checked through
    # the dense matrices the pool reports).
    r = _forgetting_router(rng, dim, 0.99, 40 * dim)
    pool = r._pool
    snap = pool.snapshot()
    n = pool.dim
    S = _base_matrix(snap["bases"][snap["reference"]], n)
    Li = np.linalg.inv(np.linalg.cholesky(S))
    for name, a in zip(pool.names(), snap["arms"]):
        G = _base_matrix(snap["bases"][a["base"]], n)
        ev = np.linalg.eigvalsh(Li @ G @ Li.T)
        assert 0.0 < a["floor"] <= ev[0] * (1 + 1e-9)
        assert ev[-1] * (1 - 1e-9) <= a["ceil"]
        assert 0.0 < a["scale"] < 4.0
        A = pool.arm(name)["A"]
        evA = np.linalg.eigvalsh(Li @ A @ Li.T)
        assert evA[0] >= a["scale"] * a["floor"] * (1 - 1e-9)
        W = a["W"]
        gersh = max([1.0] + list(np.abs(np.eye(len(W)) + W @ W.T).sum(axis=1)))
        assert evA[-1] <= a["scale"] * a["ceil"] * gersh * (1 + 1e-9)


@pytest.mark.parametrize("background", [True, False])
def test_saved_forgetting_router_learns_bit_for_bit(backend, rng, tmp_path, background):
    # Saved mid-stream (a background fold may be pending), restored, and both fed the same
    # stream: the same decisions and terms, the same state bits (the scale c_k is saved; a
    # fold's renormalisation happens at the same update in both).
    dim = 12
    r = _forgetting_router(rng, dim, 0.97, 0)
    r._pool.background_folds = background
    W = rng.normal(size=(len(POOL), dim)) * 0.3
    stream = _unit(rng, 1500, dim)
    feed = [(_quality(W, i % len(POOL), x, rng), float(rng.integers(1, 400)))
            for i, x in enumerate(stream)]
    back = None
    for i, (x, (q, tok)) in enumerate(zip(stream, feed)):
        if i in (401, 777):  # save twice: the second restore replaces the first
            r.save(tmp_path / "r.npz")
            back = Router.load(tmp_path / "r.npz")
            back._pool.background_folds = background
            assert back.discount == r.discount == 0.97
        for router in (r,) if back is None else (r, back):
            d = router.route(x, 100.0)
            router.feedback(x, d.llm, q, tok)
        if back is not None:
            a, b = r.route(x, 50.0), back.route(x, 50.0)
            assert a == b
    sa, sb = r._pool.snapshot(), back._pool.snapshot()
    assert len(sa["bases"]) == len(sb["bases"])
    for ea, eb in zip(sa["arms"], sb["arms"]):
        assert ea["scale"] == eb["scale"] and ea["rank"] == eb["rank"]
        for key in ("floor", "floor_n", "ceil", "ceil_cert"):
            assert ea[key] == eb[key], key
        for key in ("U", "W", "Cinv", "b", "beta", "omega", "theta"):
            np.testing.assert_array_equal(ea[key], eb[key], err_msg=key)
    for ba, bb in zip(sa["bases"], sb["bases"]):
        np.testing.assert_array_equal(ba["R"], bb["R"])
    # ... and a reference engine loading the same file rebuilds the exact statistics
    ref = Router.load(tmp_path / "r.npz", engine="reference")
    nat = Router.load(tmp_path / "r.npz")
    for name in nat.llm_names if hasattr(nat, "llm_names") else [m.name for m in POOL]:
        np.testing.assert_allclose(ref._pool.arm(name)["A"], nat._pool.arm(name)["A"], rtol=1e-12)


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_invalid_discounts_raise_and_change_nothing(engine, rng):
    for bad in (0.0, -0.5, 1.5, math.nan, math.inf, True, "0.9", None):
        with pytest.raises(ValueError):
            Router(POOL, 3, discount=bad, engine=engine)
    r = Router(POOL, 3, discount=0.9, engine=engine)
    twin = Router(POOL, 3, discount=0.9, engine=engine)
    X = rng.normal(size=(40, 3))
    for i, x in enumerate(X[:20]):
        for router in (r, twin):
            router.feedback(x, POOL[i % 4].name, 0.5 + 0.01 * i, 10.0)
    for gamma, ridge in ((0.0, 1.0), (1.5, 1.0), (math.nan, 1.0), (-1.0, 1.0), (0.9, 0.0),
                         (0.9, math.inf), (0.9, -1.0)):
        with pytest.raises(ValueError):
            r._pool.set_discount(gamma, ridge)
    assert r._pool.discount == 0.9
    for i, x in enumerate(X[20:]):
        for router in (r, twin):
            router.feedback(x, POOL[i % 4].name, 0.3, 20.0)
    for name in [m.name for m in POOL]:
        a, b = r._pool.arm(name), twin._pool.arm(name)
        for key in ("A", "b", "theta", "Ainv"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    with pytest.raises(AttributeError):
        r.discount = 0.5


@pytest.mark.parametrize("gamma", [0.4, 0.9])
@pytest.mark.parametrize("background", [True, False])
def test_scale_renormalises_instead_of_underflowing(backend, rng, gamma, background):
    # gamma^n would underflow over a long stream (0.4^2000 = 0): folds renormalise c_k to
    # [1, 4), and an arm whose scale would fall below 2^-8 before its fold (max_rank 128:
    # 64 observations at most) folds first, so that its rows never outgrow its base by more
    # than that (the Woodbury form's accuracy). The pool follows the reference.
    d = 8
    nat = _core.Pool(d, 2, 4096, 128)
    nat.background_folds = background
    ref = _reference.RefPool(d, 2, 4096)
    for p in (nat, ref):
        p.set_discount(gamma, 1.0)
        p.add_arm("a", 1.0, np.zeros((2, d)), 1.0, 1.0)
    X = rng.normal(size=(2000, d))
    Y = rng.random((2000, 2))
    # At gamma = 0.4 every row outweighs the rest of the arm (a memory of under 2 observations),
    # which the bordered inverse pays for in accuracy (about 2e-9 relative here, pool.hpp).
    rtol = 1e-9 if gamma >= 0.9 else 1e-7
    low = 1.0
    for i, (x, y) in enumerate(zip(X, Y)):
        for p in (nat, ref):
            p.update("a", x, y, 1.0 + (i % 3))
        low = min(low, nat.snapshot()["arms"][0]["scale"])
        if i % 100 == 0 or i == len(X) - 1:
            mn, bn, _ = nat.predict(X[:10])
            mr, br, _ = ref.predict(X[:10])
            np.testing.assert_allclose(mn, mr, rtol=rtol, atol=1e-12)
            np.testing.assert_allclose(bn, br, rtol=rtol)
    assert low >= 2.0**-8 * gamma
    assert nat.n_obs() == [2000]
