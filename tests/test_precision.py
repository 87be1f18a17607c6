"""The opt-in float32 scoring (Router(precision="float32")) against the float64 router.

Only the whitening v = R z of the scoring reads the float32 copy of the base's triangle. A single
decision (panel_mv_f32) multiplies and sums in float32 over blocks of 8 columns: per component
|dv_i| <= 6 2^-24 sum_j |R_ij z_j| (kernels.hpp: R's and z's rounding, the product, three float32
sums); a batch widens R's entries for its blocks of queries (float64 products: R's rounding only)
and sends the queries left over through the decision's kernel. Every score term then differs from
float64's normwise: |term32 - term64| <= TOL * max |term64| over the queries and LLMs, with
TOL = 1e-6 (measured on 12 seeded routers a size, d = 1 .. 384: decisions <= 6.1e-7, median
1e-7 .. 3e-7; widened, as a batch: <= 2.8e-7). Decisions agree wherever the float64 top two
scores are further apart than twice that bound, and so do a single decision and a batch's. The
learned state stays float64, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixllm import Router, _core
from test_router import POOL, _data

TOL = 1e-6
TERMS = ("quality", "output_tokens", "cost", "bonus", "penalty", "score")


def _routers(rng, dim, n=400, **kw):
    X, q, t = _data(rng, n, dim)
    kw = dict(alpha=0.3, beta=0.05, tau=2.0, ridge=0.5, refactor_every=7, **kw)
    out = (Router(POOL, dim, **kw).fit(X, q, t),
           Router(POOL, dim, precision="float32", **kw).fit(X, q, t))
    # Every term compared: every bonus exact (an LLM the decision does not need keeps a bound
    # that differs with the precision; tests/test_bound_refine.py holds that path to this one).
    for r in out:
        r._pool.exact_bonus = True
    return out


def _z(X):
    return np.ascontiguousarray(np.hstack([X, np.ones((X.shape[0], 1))]))


@pytest.mark.parametrize("dim", [1, 7, 17, 33, 384])
def test_float32_score_terms_match_float64(backend, rng, dim):
    r64, r32 = _routers(rng, dim)
    assert (r64.precision, r32.precision) == ("float64", "float32")
    assert r32._pool.float32 and not r64._pool.float32
    for r in (r64, r32):
        r.set_waiting_time("gpt-4", 3.0)
    Xs, qs, ts = _data(rng, 40, dim, missing=0.0)
    dec64, dec32 = [], []
    for i in range(40):  # a stream, both fed the float64 router's choice
        d64 = r64.route(Xs[i], input_tokens=50 + i, lam=0.002)
        d32 = r32.route(Xs[i], input_tokens=50 + i, lam=0.002)
        dec64.append(d64), dec32.append(d32)
        for r in (r64, r32):
            r.feedback(Xs[i], d64.llm, quality=qs[i, d64.index], output_tokens=ts[i, d64.index])
    for t in TERMS:
        a = np.array([getattr(d, t) for d in dec64])
        b = np.array([getattr(d, t) for d in dec32])
        assert np.max(np.abs(a - b)) <= TOL * np.max(np.abs(a)) + 1e-300, t
    # The learned state is float64 and identical: the float32 whitening never enters it.
    s64, s32 = r64._pool.snapshot(), r32._pool.snapshot()
    for a, b in zip(s64["arms"], s32["arms"]):
        for key in ("U", "W", "Cinv", "b", "beta", "omega"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for a, b in zip(s64["bases"], s32["bases"]):
        np.testing.assert_array_equal(a["R"], b["R"])
    # predict and the batch path use the float32 triangle as well, within the same bound
    for a, b in zip(r64.predict(Xs), r32.predict(Xs)):
        assert np.max(np.abs(a - b)) <= TOL * np.max(np.abs(a))


@pytest.mark.parametrize("dim", [16, 384])
def test_float32_decisions_agree_except_near_ties(backend, rng, dim):
    r64, r32 = _routers(rng, dim, n=600)
    n = 4000 if dim > 100 else 20000
    X = rng.normal(size=(n, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    n_in = rng.uniform(10, 2000, size=n)
    for lam in (1e-4, 0.002, 0.1):
        c64, t64, _ = r64._pool.score(_z(X), n_in, 1.0 / lam, 0.3, 0.05, 2.0, True)
        c32, t32, _ = r32._pool.score(_z(X), n_in, 1.0 / lam, 0.3, 0.05, 2.0, True)
        s64, s32 = t64[..., 5], t32[..., 5]
        bound = TOL * np.max(np.abs(s64))
        assert np.max(np.abs(s64 - s32)) <= bound
        top2 = np.sort(s64, axis=1)[:, -2:]
        near_tie = top2[:, 1] - top2[:, 0] <= 2 * bound
        assert np.all((c64 == c32) | near_tie)
        np.testing.assert_array_equal(r32.route_batch(X, n_in, lam=lam), c32)
        # one query at a time (the decision kernel) against the batch (widened R)
        m = 64
        one = [r32._pool.score(_z(X[i:i + 1]), n_in[i:i + 1], 1.0 / lam, 0.3, 0.05, 2.0, True)
               for i in range(m)]
        c1 = np.array([o[0][0] for o in one])
        s1 = np.array([o[1][0, :, 5] for o in one])
        assert np.max(np.abs(s1 - s32[:m])) <= 2 * bound
        assert np.all((c1 == c32[:m]) | near_tie[:m])


def test_precision_survives_save_load_clone_and_is_validated(tmp_path, rng):
    r64, r32 = _routers(rng, 9)
    path = tmp_path / "r.npz"
    r32.save(path)
    loaded = Router.load(path)
    assert loaded.precision == "float32" and loaded._pool.float32
    X = rng.normal(size=(50, 9))
    np.testing.assert_array_equal(loaded.route_batch(X, 80, lam=0.01), r32.route_batch(X, 80, lam=0.01))
    assert Router.load(path, engine="reference").precision == "float64"
    clone = r32.clone()
    assert clone.precision == "float32" and clone._pool.float32
    # files written before the setting existed load as float64
    r64.save(path)
    assert Router.load(path).precision == "float64"
    # switching at run time
    r64.precision = "float32"
    assert r64._pool.float32
    np.testing.assert_array_equal(r64.route_batch(X, 80, lam=0.01), r32.route_batch(X, 80, lam=0.01))
    r64.precision = "float64"
    assert not r64._pool.float32
    with pytest.raises(ValueError, match="precision"):
        Router(POOL, 3, precision="float16")
    with pytest.raises(ValueError, match="native"):
        Router(POOL, 3, precision="float32", engine="reference")
    with pytest.raises(ValueError, match="precision"):
        r64.precision = "half"


def test_pool_float32_flag_keeps_float64_state_after_folds(rng):
    # Updates after float32 decisions (no cached float32 whitening), folds, refactorisations.
    dim = 10
    a, b = _core.Pool(dim, 2, 5, 3), _core.Pool(dim, 2, 5, 3)
    b.float32 = True
    X = rng.normal(size=(30, dim))
    for p in (a, b):
        p.add_arm("m", 1.0, np.zeros((2, dim)), 1.0, 1.0)
    for x in X:
        for p in (a, b):
            p.score(x[None, :], np.array([10.0]), 0.0, 0.2, 0.0, 0.0, False)
            p.update("m", x, np.array([0.5, 1.0]), 1.0)
    assert len(b.snapshot()["bases"][0]["R"]) > 0  # folded into a dense base
    sa, sb = a.snapshot(), b.snapshot()
    for key in ("U", "W", "Cinv", "b", "beta", "omega"):
        np.testing.assert_array_equal(sa["arms"][0][key], sb["arms"][0][key])
    np.testing.assert_array_equal(sa["bases"][0]["R"], sb["bases"][0]["R"])
    assert b.copy().float32
