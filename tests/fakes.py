"""Test doubles and helpers shared by the test modules (imported as ``from fakes import ...``)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import numpy as np


class HashEncoder:
    """Bag of hashed words, L2-normalised: deterministic (across processes too) and instant.

    A :class:`mixllm.text.encoder.Encoder` that stands in for the transformer wherever only the
    plumbing around an encoder is under test. Like a transformer it embeds the first
    ``max_length`` words only, and counts them all. It records what it is asked, for the tests
    of how often the plumbing tokenises and embeds: ``calls`` names the methods called, in
    order, and ``embedded`` counts the texts embedded.
    """

    max_length = 512
    model_sha256 = "0" * 64
    additive_counts = True  # a count of words adds over blocks

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim
        self.calls: list[str] = []  # the methods called, in order
        self.embedded = 0  # texts embedded

    @property
    def identity(self) -> str:
        return f"hash-{self.dim}"

    def encode(self, texts, progress=False):
        self.calls.append("encode")
        return self._embed(texts)

    def count_tokens(self, texts):
        self.calls.append("count_tokens")
        return self._count(texts)

    def encode_with_counts(self, texts):
        self.calls.append("encode_with_counts")
        return self._embed(texts), self._count(texts)

    def _embed(self, texts):
        self.embedded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split()[:self.max_length]:
                h = int(hashlib.md5(w.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
            out[i] /= max(np.linalg.norm(out[i]), 1e-9)
        return out

    @staticmethod
    def _count(texts):
        return np.array([len(t.split()) for t in texts], dtype=np.int64)


def in_threads(work: Callable[[int], object], n: int) -> list[Exception]:
    """Run ``work(0)`` ... ``work(n - 1)`` at once, one thread each; what they raised."""
    errors: list[Exception] = []

    def run(i: int) -> None:
        try:
            work(i)
        except Exception as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def exact_decisions(router, Q: np.ndarray, n_in: np.ndarray) -> list:
    """Each query's decision with the exact LinUCB bonus (``exact_bonus`` on), after checking
    that the bounded batch path (``exact_bonus`` off again) chooses as the exact one does."""
    pool = router._pool
    pool.exact_bonus = True
    want = router.route_batch(Q, n_in)
    exact = [router.route(q, t) for q, t in zip(Q, n_in)]
    pool.exact_bonus = False
    np.testing.assert_array_equal(router.route_batch(Q, n_in), want)
    return exact
