"""Static-encoder pooling: the core's ``embed_pool`` beside NumPy, on a MiniLM-sized table.

Run: ``python -m pytest benchmarks/bench_static.py --benchmark-enable --benchmark-group-by=group``
(CI: ``--benchmark-disable``, each case once). The table is random (30,522 x 256 float32, as
the default static table once loaded); the token ids are the real WordPiece ids of ~50-token
queries, so the rows gathered are spread over the table as in use. Each case first checks the
core against the float64 reference. The full text-to-decision figures (tokenisation, tag
transform and router included) come from ``mixllm bench``.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixllm import _core, _reference

VOCAB, DIM = 30522, 256


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(3)
    T = rng.normal(size=(VOCAB, DIM)).astype(np.float32)
    w = rng.uniform(0.0, 1.0, VOCAB).astype(np.float32)
    ids = rng.integers(1996, VOCAB, size=50 * 256).astype(np.int32)
    return T, w, ids


def numpy_pool(T, w, ids, offsets):
    s = np.add.reduceat(w[ids, None] * T[ids], offsets[:-1], axis=0)
    return s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-12)


@pytest.mark.parametrize("impl", ["core", "numpy"])
@pytest.mark.parametrize("texts", [1, 256])
def test_pool_50_tokens(benchmark, case, impl, texts):
    T, w, ids = case
    ids = ids[:50 * texts]
    offsets = np.arange(0, 50 * texts + 1, 50, dtype=np.int64)
    want = _reference.embed_pool(T, w, ids, offsets)
    fn = _core.embed_pool if impl == "core" else numpy_pool
    np.testing.assert_allclose(fn(T, w, ids, offsets), want, atol=1e-5)
    benchmark.group = f"static pool, {texts} text(s) x 50 tokens, dim {DIM}"
    benchmark(fn, T, w, ids, offsets)
