"""The values every part of mixllm shares: the pool's :class:`LLM`, the :class:`Decision` a router
returns, and the errors. Plain Python and NumPy: importing it needs no compiled code, so reading a
data or pool file does not load the native core."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LLM", "Decision", "DataError", "EncoderError", "StateError", "TERMS"]

#: The rows of :attr:`Decision.terms`, in order.
TERMS = ("quality", "output_tokens", "cost", "bonus", "penalty", "score")


class DataError(ValueError):
    """A data or pool file (or an in-memory dataset) is malformed, inconsistent or unusable."""


class EncoderError(ValueError):
    """A model or tokenizer file is unusable: wrong checksum, unreadable, or unsupported."""


class StateError(ValueError):
    """A saved router file is missing, of another format or version, or corrupted."""


@dataclass(frozen=True)
class LLM:
    """One LLM of the pool.

    Parameters
    ----------
    name : str
        Unique name, e.g. ``"gpt-4-1106-preview"``.
    input_price, output_price : float
        USD per one million input / output tokens (>= 0).
    ttft_s : float
        Time to first token in seconds (latency profile, >= 0).
    tokens_per_s : float
        Generation speed in output tokens per second (> 0).
    slots : int
        Requests the LLM serves concurrently (>= 1).
    """

    name: str
    input_price: float
    output_price: float
    ttft_s: float = 0.5
    tokens_per_s: float = 50.0
    slots: int = 8

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"LLM name must be a non-empty string, got {self.name!r}")
        for field_name in ("input_price", "output_price", "ttft_s"):
            v = getattr(self, field_name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{field_name} of '{self.name}' must be a finite number >= 0, got {v!r}")
        if isinstance(self.tokens_per_s, bool) or not isinstance(self.tokens_per_s, (int, float)) \
                or not math.isfinite(self.tokens_per_s) or self.tokens_per_s <= 0:
            raise ValueError(f"tokens_per_s of '{self.name}' must be finite and > 0")
        if isinstance(self.slots, bool) or not isinstance(self.slots, int) or self.slots < 1:
            raise ValueError(f"slots of '{self.name}' must be an integer >= 1")


class Decision:
    """One routing decision and the terms behind it. Immutable.

    Attributes
    ----------
    llm : str
        The chosen LLM.
    index : int
        Its position in ``names``.
    names : tuple of str
        The pool, in order, when the decision was taken; the terms are aligned with it.
    terms : ndarray (6, K), read-only
        One row per term, in the order of the attributes below, one column per LLM.
    quality, output_tokens, cost, bonus, penalty, score : ndarray (K,)
        The rows of ``terms`` (views): predicted quality, predicted output tokens, cost in
        USD, uncertainty bonus, latency penalty and the score itself.
    """

    # One slot, the tuple (llm, index, names, terms): the engine returns it ready-made, so a
    # decision is one allocation and one store (~0.15 us; four slots took ~0.3 us).
    __slots__ = ("_v",)

    def __init__(self, llm: str, index: int, names: Sequence[str], terms: Any) -> None:
        names = tuple(names)
        if not all(isinstance(n, str) for n in names) or not names:
            raise ValueError("names must be a non-empty sequence of str")
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
                or not 0 <= index < len(names):
            raise ValueError(f"index must be an integer in [0, {len(names)}), got {index!r}")
        if llm != names[index]:
            raise ValueError(f"llm {llm!r} is not names[{index}] ({names[index]!r})")
        arr = np.array(terms, dtype=np.float64)
        if arr.shape != (len(TERMS), len(names)):
            raise ValueError(f"terms must have shape ({len(TERMS)}, {len(names)}), got {arr.shape}")
        arr.flags.writeable = False
        object.__setattr__(self, "_v", (llm, int(index), names, arr))

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple:
        return (Decision, self._v)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return (self.llm == other.llm and self.index == other.index
                and self.names == other.names and np.array_equal(self.terms, other.terms))

    __hash__ = None  # type: ignore[assignment]  # holds an array

    def __repr__(self) -> str:
        return (f"Decision(llm={self.llm!r}, index={self.index}, names={self.names!r}, "
                + ", ".join(f"{t}={getattr(self, t)!r}" for t in TERMS) + ")")

    llm = property(lambda self: self._v[0], doc="The chosen LLM.")
    index = property(lambda self: self._v[1], doc="Its position in names.")
    names = property(lambda self: self._v[2], doc="The pool, in order, when the decision was taken.")
    terms = property(lambda self: self._v[3], doc="The (6, K) read-only terms, one row per term.")
    quality = property(lambda self: self._v[3][0], doc="Predicted quality per LLM.")
    output_tokens = property(lambda self: self._v[3][1], doc="Predicted output tokens per LLM.")
    cost = property(lambda self: self._v[3][2], doc="Predicted cost per LLM, USD.")
    bonus = property(lambda self: self._v[3][3], doc="Uncertainty bonus per LLM.")
    penalty = property(lambda self: self._v[3][4], doc="Latency penalty per LLM.")
    score = property(lambda self: self._v[3][5], doc="Score per LLM (the largest wins).")

    def as_dict(self) -> dict[str, Any]:
        """The decision as plain Python types, one entry per LLM."""
        rows = self.terms.tolist()
        return {
            "llm": self.llm,
            "index": self.index,
            "terms": {n: {t: rows[j][k] for j, t in enumerate(TERMS)}
                      for k, n in enumerate(self.names)},
        }
