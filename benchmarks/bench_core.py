"""Routing core benchmarks: mixllm's C++ core beside a vectorised NumPy LinUCB in each group.

Run: ``python -m pytest benchmarks/bench_core.py --benchmark-enable --benchmark-group-by=group``
(CI runs this file with ``--benchmark-disable``: each case once, as a smoke test). The NumPy
baseline is the same maths (float64, one stacked (K, d, d) inverse, one matmul per decision);
each case first checks that both give the same decisions.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixllm import LLM, Router

DIMS = [64, 384]
KS = [4, 11, 32]
BATCH = 256


class NumpyLinUCB:
    """Stacked float64 state and the MixLLM score, written the way a NumPy user would."""

    def __init__(self, router: Router) -> None:
        arms = [router._pool.arm(n) for n in router.names]
        self.Ainv = np.stack([a["Ainv"] for a in arms])                   # (K, d, d)
        self.theta = np.stack([a["theta"] for a in arms])                 # (K, 2, d)
        self.pin = np.array([a["input_price"] for a in arms])
        self.pout = np.array([a["output_price"] for a in arms])
        self.alpha = router.alpha

    def decide(self, z, n_in, inv_lam):
        means = self.theta @ z                                            # (K, 2)
        bonus = np.sqrt(np.maximum(np.einsum("kij,j->ki", self.Ainv, z) @ z, 0.0))
        tok = np.expm1(np.clip(means[:, 1], 0.0, 20.0))
        cost = (n_in * self.pin + tok * self.pout) * 1e-6
        return int(np.argmax(means[:, 0] - cost * inv_lam + self.alpha * bonus))

    def decide_batch(self, Z, n_in, inv_lam):
        means = np.einsum("ktd,bd->bkt", self.theta, Z)
        AZ = np.einsum("kij,bj->bki", self.Ainv, Z)
        bonus = np.sqrt(np.maximum(np.einsum("bki,bi->bk", AZ, Z), 0.0))
        tok = np.expm1(np.clip(means[:, :, 1], 0.0, 20.0))
        cost = (n_in[:, None] * self.pin + tok * self.pout) * 1e-6
        return np.argmax(means[:, :, 0] - cost * inv_lam + self.alpha * bonus, axis=1)

    def update(self, k, z, y):
        u = self.Ainv[k] @ z
        denom = 1.0 + z @ u
        self.Ainv[k] -= np.outer(u, u) / denom
        self.theta[k] += np.outer((y - self.theta[k] @ z) / denom, u)


def _setup(d, k, seed=0):
    rng = np.random.default_rng(seed)
    pool = [LLM(f"m{i}", float(rng.uniform(0.1, 10)), float(rng.uniform(0.1, 30))) for i in range(k)]
    router = Router(pool, d - 1, alpha=0.1)  # d - 1 features + intercept = d
    n = 2 * d
    X = rng.normal(size=(n, d - 1))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    router.fit(X, rng.random((n, k)), rng.integers(1, 500, (n, k)).astype(float))
    Q = rng.normal(size=(BATCH, d - 1))
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    return router, Q


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("impl", ["mixllm", "numpy"])
def test_decision(benchmark, d, k, impl):
    benchmark.group = f"decision d={d} K={k}"
    router, Q = _setup(d, k)
    ref = NumpyLinUCB(router)
    inv_lam = 100.0
    z = np.append(Q[0], 1.0)
    assert ref.decide(z, 100.0, inv_lam) == router.route(Q[0], 100.0, lam=0.01).index
    if impl == "mixllm":
        x = Q[0]
        benchmark(lambda: router.route(x, 100.0, lam=0.01))
    else:
        benchmark(lambda: ref.decide(z, 100.0, inv_lam))


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("impl", ["mixllm", "numpy"])
def test_batch(benchmark, d, k, impl):
    benchmark.group = f"batch{BATCH} d={d} K={k}"
    router, Q = _setup(d, k)
    ref = NumpyLinUCB(router)
    n_in = np.full(BATCH, 100.0)
    Z = np.hstack([Q, np.ones((BATCH, 1))])
    np.testing.assert_array_equal(ref.decide_batch(Z, n_in, 100.0),
                                  router.route_batch(Q, n_in, lam=0.01))
    if impl == "mixllm":
        benchmark(lambda: router.route_batch(Q, n_in, lam=0.01))
    else:
        benchmark(lambda: ref.decide_batch(Z, n_in, 100.0))


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("k", [11])
@pytest.mark.parametrize("impl", ["mixllm", "numpy"])
def test_update(benchmark, d, k, impl):
    benchmark.group = f"update d={d} K={k}"
    router, Q = _setup(d, k)
    ref = NumpyLinUCB(router)
    x = Q[1]
    z = np.append(x, 1.0)
    y = np.array([0.7, np.log1p(120.0)])
    if impl == "mixllm":
        benchmark(lambda: router.feedback(x, "m3", 0.7, 120.0))
    else:
        benchmark(lambda: ref.update(3, z, y))
