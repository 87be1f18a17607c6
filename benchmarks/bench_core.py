"""Routing core benchmarks: mixllm's C++ core beside a vectorised NumPy LinUCB in each group.

Run: ``python -m pytest benchmarks/bench_core.py --benchmark-enable --benchmark-group-by=group``
(CI runs this file with ``--benchmark-disable``: each case once, as a smoke test). The NumPy
baseline (``mixllm.bench.NumpyLinUCB``, shared with ``mixllm bench``) is the same maths (float64,
one stacked (K, d, d) inverse, one matmul per decision); each case first checks that both give
the same decisions. ``d`` counts the intercept. ``mixllm-f32`` is the opt-in
``Router(precision="float32")`` scoring (float32 copy of the shared triangle; a decision multiplies
and sums it in float32 over blocks of 8 columns, a batch widens it: kernels.hpp).
"""

from __future__ import annotations

import numpy as np
import pytest

from mixllm.bench import NumpyLinUCB, make_router

DIMS = [64, 384]
KS = [4, 11, 32]
BATCH = 256


def _case(benchmark, group, d, k):
    """One case in its benchmark group: the router, its queries and the NumPy baseline."""
    benchmark.group = group
    router, Q = make_router(d, k, BATCH, 0)
    return router, Q, NumpyLinUCB(router)


def _grid(ks=KS, impls=("mixllm", "mixllm-f32", "numpy")):
    """Parametrise a benchmark over ``d``, ``k`` and the implementation."""
    def mark(f):
        for name, values in (("impl", impls), ("k", ks), ("d", DIMS)):  # ids: impl-k-d
            f = pytest.mark.parametrize(name, values)(f)
        return f
    return mark


@_grid()
def test_decision(benchmark, d, k, impl):
    router, Q, ref = _case(benchmark, f"decision d={d} K={k}", d, k)
    inv_lam = 100.0
    z = np.append(Q[0], 1.0)
    assert ref.decide(z, 100.0, inv_lam) == router.route(Q[0], 100.0, lam=0.01).index
    if impl == "mixllm-f32":  # the opt-in float32 scoring (Router(precision="float32"))
        router.precision = "float32"
        assert ref.decide(z, 100.0, inv_lam) == router.route(Q[0], 100.0, lam=0.01).index
    if impl != "numpy":
        x = Q[0]
        benchmark(lambda: router.route(x, 100.0, lam=0.01))
    else:
        benchmark(lambda: ref.decide(z, 100.0, inv_lam))


@_grid()
def test_batch(benchmark, d, k, impl):
    router, Q, ref = _case(benchmark, f"batch{BATCH} d={d} K={k}", d, k)
    n_in = np.full(BATCH, 100.0)
    Z = np.hstack([Q, np.ones((BATCH, 1))])
    np.testing.assert_array_equal(ref.decide_batch(Z, n_in, 100.0),
                                  router.route_batch(Q, n_in, lam=0.01))
    if impl == "mixllm-f32":
        router.precision = "float32"
    if impl != "numpy":
        benchmark(lambda: router.route_batch(Q, n_in, lam=0.01))
    else:
        benchmark(lambda: ref.decide_batch(Z, n_in, 100.0))


@_grid(ks=[11], impls=["mixllm", "numpy"])
def test_update(benchmark, d, k, impl):
    router, Q, ref = _case(benchmark, f"update d={d} K={k}", d, k)
    x = Q[1]
    z = np.append(x, 1.0)
    y = np.array([0.7, np.log1p(120.0)])
    if impl == "mixllm":
        benchmark(lambda: router.feedback(x, "m3", 0.7, 120.0))
    else:
        benchmark(lambda: ref.update(3, z, y))


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("impl", ["mixllm", "numpy"])
def test_route_then_feedback(benchmark, d, impl):
    """The serving cycle: a decision, then the update of the routed LLM on that query."""
    router, Q, ref = _case(benchmark, f"route+feedback d={d} K=11", d, 11)
    state = {"i": 0}
    y = np.array([0.7, np.log1p(120.0)])

    def mix():
        x = Q[state["i"] % BATCH]
        state["i"] += 1
        router.feedback(x, router.route(x, 100.0, lam=0.01).llm, 0.7, 120.0)

    def ref_cycle():
        z = np.append(Q[state["i"] % BATCH], 1.0)
        state["i"] += 1
        ref.update(ref.decide(z, 100.0, 100.0), z, y)

    benchmark(mix if impl == "mixllm" else ref_cycle)
