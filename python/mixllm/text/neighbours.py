"""Neighbour outcomes: what the LLMs scored on the stored prompts most like a new one.

An :class:`OutcomeMemory` keeps the L2-normalised embedding of every prompt it was given with
the quality each LLM was observed to reach on it (sums and counts, so repeated feedback on one
prompt averages). For a query embedding ``e`` its features are, for each ``k`` of ``ks`` and
each LLM ``j``::

    m_kj(e) = sum_{i in N_k(e)} s_ij / sum_{i in N_k(e)} c_ij     (prior_j where no count)

where ``N_k(e)`` are the ``k`` stored prompts of largest cosine similarity ``e . e_i``,
``s_ij`` and ``c_ij`` the stored sum and count of LLM ``j``'s quality on prompt ``i``, and
``prior_j`` the LLM's mean over everything stored. These ``len(ks) * K`` numbers go to the
router's linear heads beside the embedding: a nonparametric summary of the neighbourhood that a
linear map of the embedding cannot draw, learned with the heads' exact online updates.

Repeated prompts. With ``duplicates = s`` (a cosine similarity, default 0.995) two more blocks
of ``K`` numbers say what the LLMs scored on *this same prompt* when it was seen before::

    r_j(e) = h_j(e) * sum_{i in R(e)} s_ij / sum_{i in R(e)} c_ij      h_j(e) = [sum_{i in R(e)} c_ij > 0]

(the repeat's own mean quality of LLM ``j``, and whether there is one), where ``R(e)`` are the
stored prompts with ``e . e_i >= s`` among the ``max(ks)`` nearest; both are 0 for a prompt
never seen, or an LLM never observed on it. A linear head cannot single one neighbour out of a
mean over ten, nor switch its other terms off for a prompt it has seen; these gated blocks let
it learn, from the repeats among the training rows, how far a repeat's recorded outcome
predicts the next one (production streams repeat prompts often). In
``mixllm experiment repeats`` on RouterBench they lift mixllm's AIQ from 0.976 to 1.020
(docs/RESULTS.md, section 11).

On the training rows themselves the features are computed leaving the row out (its own
outcome would otherwise leak into its features), so the heads learn how far a neighbourhood
can be trusted on prompts they have not seen.

Cost per query: one (n, d) x (d,) product over the stored prompts plus a partial sort of n
similarities (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._io import pack_checked, unpack_checked

__all__ = ["OutcomeMemory"]

_FORMAT = "mixllm-outcome-memory"
_VERSION = 2  # 2: the repeat blocks' threshold (``duplicates``)
_READABLE = (1, 2)
_CHUNK = 1024


def _unit_rows(E: Any, dim: int | None = None, name: str = "embeddings") -> np.ndarray:
    arr = np.asarray(E)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or (dim is not None and arr.shape[1] != dim):
        raise ValueError(f"{name} must be a 2-d array"
                         + (f" with {dim} columns" if dim is not None else "")
                         + f", got shape {arr.shape}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or inf")
    norm = np.linalg.norm(arr, axis=1, keepdims=True)
    return arr / np.maximum(norm, 1e-12)


class OutcomeMemory:
    """Stored prompts and the qualities the LLMs reached on them; neighbour-mean features.

    Parameters
    ----------
    ks : sequence of int
        Neighbourhood sizes (each >= 1); one block of K features per size.
    duplicates : float or None
        Cosine similarity at or above which a stored prompt counts as the same prompt for the
        repeat blocks (two more blocks of K features); ``None``: no repeat blocks.
    """

    def __init__(self, ks: Sequence[int] = (10, 50), duplicates: float | None = 0.995) -> None:
        ks = tuple(ks)
        if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1
                         for k in ks):
            raise ValueError(f"ks must be a non-empty sequence of ints >= 1, got {ks!r}")
        if duplicates is not None and (isinstance(duplicates, bool) or not isinstance(
                duplicates, (int, float, np.floating)) or not -1.0 < float(duplicates) <= 1.0):
            raise ValueError(f"duplicates must be None or a cosine similarity in (-1, 1], "
                             f"got {duplicates!r}")
        self.ks = tuple(int(k) for k in ks)
        self.duplicates = None if duplicates is None else float(duplicates)
        self._E: np.ndarray | None = None   # (capacity, d) float32 unit rows
        self._S: np.ndarray | None = None   # (capacity, K) sums of quality
        self._C: np.ndarray | None = None   # (capacity, K) counts
        self._n = 0
        self.llms: list[str] = []

    # ------------------------------------------------------------------ state
    @property
    def fitted(self) -> bool:
        return self._E is not None

    def __len__(self) -> int:
        return self._n

    @property
    def dim(self) -> int:
        return self._require()[0].shape[1]

    @property
    def n_llms(self) -> int:
        return self._require()[1].shape[1]

    @property
    def out_dim(self) -> int:
        """Width of :meth:`features`: ``len(ks) * K``, plus ``2 K`` with the repeat blocks."""
        return (len(self.ks) + 2 * (self.duplicates is not None)) * self.n_llms

    def _require(self):
        if self._E is None:
            raise ValueError("OutcomeMemory is empty: call fit() first")
        n = self._n
        return self._E[:n], self._S[:n], self._C[:n]

    def prior(self) -> np.ndarray:
        """Each LLM's mean quality over everything stored (0 where nothing is)."""
        _, S, C = self._require()
        tot = C.sum(axis=0)
        return np.where(tot > 0, S.sum(axis=0) / np.maximum(tot, 1), 0.0)

    def fit(self, E: Any, quality: Any, llms: Sequence[str]) -> "OutcomeMemory":
        """Store embeddings ``E`` (n, d) with the qualities (n, K) of the LLMs named ``llms``
        (one column each), NaN = not observed."""
        E = _unit_rows(E)
        names = list(llms)
        if not names or not all(isinstance(m, str) for m in names) or len(set(names)) != len(names):
            raise ValueError("llms must be unique names, one per quality column")
        q = np.asarray(quality, dtype=np.float64)
        if q.ndim != 2 or q.shape != (len(E), len(names)):
            raise ValueError(f"quality must have shape ({len(E)}, {len(names)}), got {q.shape}")
        if np.isinf(q).any():
            raise ValueError("quality must not contain inf (NaN = not observed)")
        seen = ~np.isnan(q)
        self._E, self._S, self._C = E.copy(), np.where(seen, q, 0.0), seen.astype(np.float64)
        self._n = len(E)
        self.llms = names
        return self

    # ------------------------------------------------------------------ features
    def features(self, E: Any, *, leave_self_out: bool = False) -> np.ndarray:
        """Neighbour means for queries ``E`` (n, d): (n, :attr:`out_dim`), blocks in ``ks``
        order, then the repeat blocks ``r`` and ``h`` (when ``duplicates`` is set).

        ``leave_self_out``: ``E`` are the stored rows themselves, in order (the training
        rows), and row ``i`` does not count itself among its neighbours.
        """
        Es, S, C = self._require()
        Q = _unit_rows(E, Es.shape[1])
        if leave_self_out and len(Q) != len(Es):
            raise ValueError("leave_self_out needs the stored rows themselves")
        n, K = len(Q), S.shape[1]
        prior = self.prior()
        avail = len(Es) - (1 if leave_self_out else 0)
        nb = len(self.ks)
        out = np.empty((n, self.out_dim))
        if avail < 1:
            out[:, :nb * K] = np.tile(prior, nb)
            out[:, nb * K:] = 0.0
            return out
        kmax = min(max(self.ks), avail)
        for s in range(0, n, _CHUNK):
            sims = Q[s:s + _CHUNK] @ Es.T
            if leave_self_out:
                rows = np.arange(len(sims))
                sims[rows, s + rows] = -np.inf
            nn = self._nearest(sims, kmax)
            for b, k in enumerate(self.ks):
                sel = nn[:, :min(k, kmax)]
                num, den = S[sel].sum(axis=1), C[sel].sum(axis=1)
                out[s:s + len(sims), b * K:(b + 1) * K] = np.where(
                    den > 0, num / np.maximum(den, 1e-300), prior)
            if self.duplicates is not None:
                same = (np.take_along_axis(sims, nn, axis=1) >= self.duplicates).astype(np.float64)
                num = np.einsum("mk,mkj->mj", same, S[nn])
                den = np.einsum("mk,mkj->mj", same, C[nn])
                seen = den > 0
                out[s:s + len(sims), nb * K:(nb + 1) * K] = np.where(
                    seen, num / np.maximum(den, 1e-300), 0.0)
                out[s:s + len(sims), (nb + 1) * K:] = seen
        return out

    @staticmethod
    def _nearest(sims: np.ndarray, k: int) -> np.ndarray:
        """Indices of each row's k largest similarities, largest first (ties: lower index)."""
        if k < sims.shape[1]:
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        return np.take_along_axis(part, order, axis=1)

    # ------------------------------------------------------------------ learning
    def observe(self, e: Any, llm: str, quality: float, *, same: float = 1.0 - 1e-6) -> None:
        """Store one observed quality of ``llm`` on the query embedding ``e``: added to the
        stored prompt with cosine similarity >= ``same`` (the same prompt), else stored as a
        new prompt. Raises ``KeyError`` for an LLM the memory has no column for."""
        Es, S, C = self._require()
        x = _unit_rows(np.reshape(np.asarray(e, dtype=np.float64), (1, -1)), Es.shape[1], "e")[0]
        if llm not in self.llms:
            raise KeyError(f"the memory stores no outcomes of {llm!r} (it has {self.llms})")
        llm = self.llms.index(llm)
        if isinstance(quality, bool) or not isinstance(quality, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(quality)):
            raise ValueError(f"quality must be a finite number, got {quality!r}")
        q = float(quality)
        i = -1
        if len(Es):
            sims = Es @ x
            j = int(np.argmax(sims))
            if sims[j] >= same:
                i = j
        if i < 0:
            i = self._append(x)
        self._S[i, llm] += q
        self._C[i, llm] += 1.0

    def _append(self, x: np.ndarray) -> int:
        if self._n == len(self._E):
            cap = max(16, 2 * len(self._E))
            for name in ("_E", "_S", "_C"):
                old = getattr(self, name)
                new = np.zeros((cap, old.shape[1]), dtype=old.dtype)
                new[: self._n] = old[: self._n]
                setattr(self, name, new)
        self._E[self._n] = x
        self._n += 1
        return self._n - 1

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """Serialise (``.npz`` arrays + JSON manifest with sha256 per array; no pickle)."""
        E, S, C = self._require()
        return pack_checked({"format": _FORMAT, "version": _VERSION, "ks": list(self.ks),
                             "duplicates": self.duplicates, "llms": list(self.llms)},
                            {"E": np.ascontiguousarray(E), "S": np.ascontiguousarray(S),
                             "C": np.ascontiguousarray(C)})

    @classmethod
    def from_bytes(cls, raw: bytes, source: str = "<bytes>") -> "OutcomeMemory":
        """Inverse of :meth:`to_bytes`; raises ``ValueError`` naming ``source`` if bad."""
        manifest, data = unpack_checked(raw, source, "outcome memory")
        if manifest.get("format") != _FORMAT or manifest.get("version") not in _READABLE:
            raise ValueError(f"{source}: not a mixllm outcome memory of version {_READABLE}")
        try:
            # version 1 had no repeat block
            m = cls(manifest["ks"], manifest["duplicates"] if manifest["version"] >= 2 else None)
            names = manifest["llms"]
            E, S, C = data["E"], data["S"], data["C"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names) \
                    or len(set(names)) != len(names) or S.ndim != 2 or S.shape[1] != len(names):
                raise ValueError("llms must be unique names, one per stored column")
            if E.ndim != 2 or E.dtype != np.float32 or S.ndim != 2 or S.shape != C.shape \
                    or len(S) != len(E) or S.dtype.kind != "f" or C.dtype.kind != "f" \
                    or not (np.isfinite(E).all() and np.isfinite(S).all()
                            and np.isfinite(C).all() and (C >= 0).all()):
                raise ValueError("arrays of the wrong shape, type or values")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: invalid outcome memory ({exc})") from exc
        m._E, m._S, m._C, m._n = E.copy(), S.astype(np.float64), C.astype(np.float64), len(E)
        m.llms = list(names)
        return m
