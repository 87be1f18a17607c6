"""Test doubles shared by the test modules (imported as ``from fakes import ...``)."""

from __future__ import annotations

import hashlib

import numpy as np


class HashEncoder:
    """Bag of hashed words, L2-normalised: deterministic (across processes too) and instant.

    A :class:`mixllm.text.encoder.Encoder` that stands in for the transformer wherever only the
    plumbing around an encoder is under test. Like a transformer it embeds the first
    ``max_length`` words only, and counts them all.
    """

    max_length = 512
    model_sha256 = "0" * 64

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim

    @property
    def identity(self) -> str:
        return f"hash-{self.dim}"

    def encode(self, texts, progress=False):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split()[:self.max_length]:
                h = int(hashlib.md5(w.encode()).hexdigest(), 16)
                out[i, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
            out[i] /= max(np.linalg.norm(out[i]), 1e-9)
        return out

    def count_tokens(self, texts):
        return np.array([len(t.split()) for t in texts], dtype=np.int64)

    def encode_with_counts(self, texts):
        return self.encode(texts), self.count_tokens(texts)
