"""Encoder benchmarks: the default MiniLM (int8) on 2 ONNX Runtime threads, cache off.

Run: ``python -m pytest benchmarks/bench_encoder.py --benchmark-enable --benchmark-group-by=group``
(CI runs it with ``--benchmark-disable``: each case once, as a smoke test, about 8 s on 2 cores).
Sentences per second = texts in the group's name / mean time. Each group holds a baseline
beside the encoder, and each case first checks the baseline gives the same embeddings:

* short queries: batch 1, batch 32, and batch 32 padded to the 128 tokens that MiniLM's
  ``tokenizer.json`` ships with (what the file does if used as is);
* mixed lengths (20 to 150 tokens) in batches of 8: sorted by length (the encoder) against
  batches in input order, which pad every short text to the longest of its batch;
* a warm memory cache: the cost of a cache hit.
"""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer

from mixllm.text.onnx import OnnxEncoder

THREADS = 2
TOPICS = ["bread", "the stock market", "photosynthesis", "a binary search tree", "the French "
          "revolution", "compound interest", "a sonnet about autumn", "TCP congestion control"]
ASKS = ["What is {}?", "Explain {} to a ten-year-old.", "Write a short summary of {}.",
        "List three common misconceptions about {} and correct each one.",
        "How would you test a claim about {} with a small experiment?"]
FILLER = ("Please answer step by step, cite what you rely on, keep it under two hundred words "
          "and say where you are unsure. ").split()


def short_queries(n: int, seed: int = 7) -> list[str]:
    """Distinct router-style queries of 6 to 20 tokens (special tokens included)."""
    every = [ask.format(topic) for ask in ASKS for topic in TOPICS]
    return [every[i] for i in np.random.default_rng(seed).permutation(len(every))[:n]]


def mixed_prompts(n: int, seed: int = 11) -> list[str]:
    """Distinct prompts of 20 to about 150 tokens, lengths shuffled."""
    rng = np.random.default_rng(seed)
    out = []
    for q in short_queries(n, seed):
        words = int(rng.integers(0, 120))
        out.append(q + " " + " ".join(FILLER[i % len(FILLER)] for i in range(words)))
    return out


@pytest.fixture(scope="module")
def encoders():
    return {b: OnnxEncoder(batch_size=b, threads=THREADS, cache_size=0) for b in (1, 8, 32)}


def stock_padding_encode(enc: OnnxEncoder, texts: list[str]) -> np.ndarray:
    """One batch tokenised with the file's own settings (fixed padding and truncation, 128)."""
    tok = Tokenizer.from_file(str(enc.tokenizer_path))
    batch = tok.encode_batch(texts)
    ids = np.array([e.ids for e in batch], dtype=np.int64)
    mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
    hidden = enc._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                     "token_type_ids": np.zeros_like(ids)})[0]
    pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def input_order_encode(enc: OnnxEncoder, texts: list[str]) -> np.ndarray:
    """The encoder's batches without the sort: each batch padded to its own longest text."""
    ids, types = enc._tokenize(texts)
    b = enc.batch_size
    return np.concatenate([enc._run(ids[i:i + b], types[i:i + b])
                           for i in range(0, len(texts), b)])


SHORT = short_queries(32)
MIXED = mixed_prompts(32)


def bench_baseline(benchmark, baseline, enc: OnnxEncoder, texts: list[str]) -> None:
    """Time ``baseline(enc, texts)`` once it gives the encoder's embeddings on a few texts."""
    check = texts[:4]
    np.testing.assert_allclose(baseline(enc, check), enc.encode(check), atol=1e-5)
    benchmark(baseline, enc, texts)


@pytest.mark.benchmark(group="short queries: 32 texts, 2 threads")
@pytest.mark.parametrize("batch", [1, 32])
def test_short_encoder(benchmark, encoders, batch):
    enc = encoders[batch]
    out = benchmark(enc.encode, SHORT)
    assert out.shape == (32, 384)
    assert enc.cache_info().hits == 0  # every round embedded: the cache is off


@pytest.mark.benchmark(group="short queries: 32 texts, 2 threads")
def test_short_baseline_file_padding(benchmark, encoders):
    bench_baseline(benchmark, stock_padding_encode, encoders[32], SHORT)


@pytest.mark.benchmark(group="mixed 20-150 tokens: 32 texts, batch 8, 2 threads")
def test_mixed_encoder_sorted(benchmark, encoders):
    out = benchmark(encoders[8].encode, MIXED)
    assert out.shape == (32, 384)


@pytest.mark.benchmark(group="mixed 20-150 tokens: 32 texts, batch 8, 2 threads")
def test_mixed_baseline_input_order(benchmark, encoders):
    bench_baseline(benchmark, input_order_encode, encoders[8], MIXED)


@pytest.mark.benchmark(group="warm memory cache: 32 texts")
def test_cache_hits(benchmark):
    enc = OnnxEncoder(threads=THREADS)
    want = enc.encode(SHORT)
    got = benchmark(enc.encode, SHORT)
    np.testing.assert_array_equal(got, want)
    assert enc.cache_info().misses == 32
