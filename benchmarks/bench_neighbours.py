"""Neighbour-mean features: the cost of one query's lookup in the outcome memory.

Run: ``python -m pytest benchmarks/bench_neighbours.py --benchmark-enable``
(CI: ``--benchmark-disable``, each case once). Random unit embeddings (384-d, MiniLM's size)
and qualities for 2,000 stored prompts x 11 LLMs (RouterBench-sized training data) and
16,000 x 7 (RouterDC-sized); one query, neighbourhoods of 10 and 50. Each case first checks
the features against a plain per-query computation.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixllm.text.neighbours import OutcomeMemory


@pytest.mark.parametrize("n,k", [(2000, 11), (16000, 7)])
def test_features_one_query(benchmark, n, k):
    rng = np.random.default_rng(n)
    E = rng.normal(size=(n, 384))
    Q = rng.random((n, k))
    mem = OutcomeMemory((10, 50)).fit(E, Q, [f"m{i}" for i in range(k)])
    q = rng.normal(size=(1, 384))
    Eu = (E / np.linalg.norm(E, axis=1, keepdims=True)).astype(np.float32)
    qu = (q / np.linalg.norm(q)).astype(np.float32)
    order = np.argsort(-(Eu @ qu[0]), kind="stable")
    want = np.concatenate([Q[order[:10]].mean(axis=0), Q[order[:50]].mean(axis=0)])
    np.testing.assert_allclose(mem.features(q)[0], want, atol=1e-12)
    benchmark.group = "neighbour features, one query"
    benchmark(mem.features, q)
