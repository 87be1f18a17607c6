"""The model's semantics live in the engines: the batch calls (fit, partial_fit, predict) pass
raw queries, observations and ``fit_intercept``, and each engine appends the intercept, takes
``log1p`` of the output tokens and turns predicted lengths back into tokens itself
(cpp/include/mixllm/model.hpp; ``_reference.RefPool``).

Held here: both engines give what the z-space calls give on the features and targets built by
hand (the Router's former arithmetic) to 1e-12 relative; the engines agree with each other; the
engine calls take the same arguments by name; bad input raises a typed error and leaves the
pool as it was. Sizes straddle the SIMD widths, with and without the intercept, with NaN for
unobserved entries, on every backend.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixllm import LLM, Router, _core, _reference

POOL = [LLM("a", 10.0, 30.0), LLM("b", 1.0, 2.0), LLM("c", 0.6, 0.6)]
NAMES = [m.name for m in POOL]
PIN = [m.input_price for m in POOL]
POUT = [m.output_price for m in POOL]
DIMS = [1, 7, 15, 16, 17, 31, 33, 384]
# The engines' own maths against the same maths done by hand: only the rounding of log1p and
# expm1 (libm against NumPy's) and of nothing else may differ.
TIGHT = 1e-12
# Native against reference: summation order in the SIMD kernels and the factorisations.
RTOL, ATOL = 1e-9, 1e-10


def _data(rng, n, dim, missing=0.25):
    X = rng.normal(size=(n, dim)) / np.sqrt(dim)
    q = 1.0 / (1.0 + np.exp(-(X @ rng.normal(size=(dim, len(POOL))))))
    t = np.exp(3.0 + X @ rng.normal(size=(dim, len(POOL)))).round()
    q[rng.random(q.shape) < missing] = np.nan
    t[rng.random(t.shape) < missing / 2] = np.nan  # a row counts only where both are observed
    return X, q, t


def _z(X, intercept):
    return np.hstack([X, np.ones((len(X), 1))]) if intercept else np.array(X)


def _engine(name, zdim):
    return _core.Pool(zdim, 2, 4096) if name == "native" else _reference.RefPool(zdim, 2, 4096)


def _close(a, b, rtol=TIGHT):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize("engine", ["native", "reference"])
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("dim", DIMS)
def test_batch_calls_equal_the_z_space_calls_on_hand_built_features(backend, rng, engine,
                                                                    intercept, dim):
    X, q, t = _data(rng, 3 * dim + 20, dim)
    zdim = dim + intercept
    by_hand, ours = _engine(engine, zdim), _engine(engine, zdim)
    Y = np.stack([q, np.log1p(t)], axis=2)
    by_hand.fit(NAMES, PIN, POUT, 2.0, _z(X, intercept), Y)
    ours.fit_observed(NAMES, PIN, POUT, 2.0, X, q, t, intercept)
    # partial_fit: each LLM's observed rows as one batch
    X2, q2, t2 = _data(rng, 40, dim)
    for k, name in enumerate(NAMES):
        seen = np.isfinite(q2[:, k]) & np.isfinite(t2[:, k])
        by_hand.update_batch(name, _z(X2[seen], intercept),
                             np.stack([q2[seen, k], np.log1p(t2[seen, k])], axis=1))
    ours.observe_many(NAMES, X2, q2, t2, intercept)
    assert list(ours.n_obs()) == list(by_hand.n_obs())
    Xq, _, _ = _data(rng, 9, dim)
    means, bonus, names = by_hand.predict(_z(Xq, intercept))
    quality, tokens, bonus2, names2 = ours.predict_many(Xq, intercept)
    assert list(names2) == list(names) == NAMES
    _close(quality, means[:, :, 0])
    _close(tokens, np.expm1(np.clip(means[:, :, 1], 0.0, _reference.MAX_LOG_TOKENS)))
    _close(bonus2, bonus)


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("dim", DIMS)
def test_router_batch_paths_agree_across_engines(backend, rng, intercept, dim):
    native = Router(POOL, dim, fit_intercept=intercept, ridge=1.5)
    ref = Router(POOL, dim, fit_intercept=intercept, ridge=1.5, engine="reference")
    X, q, t = _data(rng, 2 * dim + 30, dim)
    X2, q2, t2 = _data(rng, 25, dim)
    for r in (native, ref):
        r.fit(X, q, t).partial_fit(X2, q2, t2)
    assert native.n_observations() == ref.n_observations()
    Xq, _, _ = _data(rng, 11, dim)
    for a, b in zip(native.predict(Xq), ref.predict(Xq)):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    # and the single-query path sees the same model as the batch one
    d = native.route(Xq[0], 100, lam=0.01)
    quality, tokens, _ = native.predict(Xq[:1])
    np.testing.assert_allclose(d.quality, quality[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(d.output_tokens, tokens[0], rtol=RTOL, atol=ATOL)


def test_engines_take_the_batch_calls_by_the_same_names(rng):
    X, q, t = _data(rng, 30, 6)
    out = []
    for engine in ("native", "reference"):
        p = _engine(engine, 7)
        p.fit_observed(names=NAMES, input_prices=PIN, output_prices=POUT, ridge=1.0, X=X,
                       quality=q, output_tokens=t, intercept=True)
        p.observe_many(names=NAMES, X=X[:5], quality=q[:5], output_tokens=t[:5],
                       intercept=True)
        out.append(p.predict_many(X=X[:4], intercept=True))
    for a, b in zip(out[0][:3], out[1][:3]):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    assert list(out[0][3]) == list(out[1][3])


def _bad(X, q, t):
    inf_q = q.copy()
    inf_q[0, 0] = np.inf
    neg_t = t.copy()
    neg_t[1, 2] = -1.0
    nan_x = X.copy()
    nan_x[2, 0] = np.nan
    return [
        (nan_x, q, t, True),                    # NaN in a query
        (np.full_like(X, 1e200), q, t, True),   # a squared norm that overflows
        (X[:, :-1], q, t, True),                # a row one entry short
        (X, inf_q, t, True),                    # inf is not "unobserved"
        (X, q, neg_t, True),                    # negative tokens
        (X, q[:, :2], t, True),                 # one LLM's column missing
        (X, q, t[:-1], True),                   # one row missing
        (X, q, t, False),                       # no intercept: X is a column short
    ]


@pytest.mark.parametrize("engine", ["native", "reference"])
@pytest.mark.parametrize("case", range(8))
def test_bad_batches_raise_and_leave_the_pool_unchanged(rng, engine, case):
    X, q, t = _data(rng, 12, 5)
    bx, bq, bt, intercept = _bad(X, q, t)[case]
    empty = _engine(engine, 6)
    with pytest.raises(ValueError):
        empty.fit_observed(NAMES, PIN, POUT, 1.0, bx, bq, bt, intercept)
    assert len(empty) == 0
    fitted = _engine(engine, 6)
    fitted.fit_observed(NAMES, PIN, POUT, 1.0, X, q, t, True)
    before = {n: fitted.arm(n) for n in NAMES}
    with pytest.raises(ValueError):
        fitted.observe_many(NAMES, bx, bq, bt, intercept)
    if bq is q and bt is t:  # predictions refuse the same queries
        with pytest.raises(ValueError):
            fitted.predict_many(bx, intercept)
    for n in NAMES:
        now = fitted.arm(n)
        for key in ("A", "Ainv", "b", "theta"):
            np.testing.assert_array_equal(now[key], before[n][key])
        assert now["n_obs"] == before[n]["n_obs"]


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_router_partial_fit_refuses_bad_observations_unchanged(rng, engine):
    router = Router(POOL, 5, engine=engine).fit(*_data(rng, 30, 5))
    X, q, t = _data(rng, 6, 5)
    arms = {n: router._pool.arm(n) for n in router.names}
    for bad in (dict(quality=np.where(np.isnan(q), np.inf, q)), dict(output_tokens=-t),
                dict(X=np.vstack([X[:-1], X[:1] * 1e200]))):
        args = {"X": X, "quality": q, "output_tokens": t, **bad}
        with pytest.raises(ValueError):
            router.partial_fit(**args)
        with pytest.raises(ValueError):
            router.fit(**args)
    for n in router.names:
        np.testing.assert_array_equal(router._pool.arm(n)["A"], arms[n]["A"])
        np.testing.assert_array_equal(router._pool.arm(n)["b"], arms[n]["b"])
