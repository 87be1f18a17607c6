"""Stochastic routing decisions with recorded propensities (for off-policy evaluation).

The router's decision is deterministic: the first LLM with the largest score. A log of such
decisions says nothing about what another policy would have earned on the queries where it
would choose differently. :class:`Explorer` turns a decision's scores into a distribution and
samples from it, recording the probability of the LLM it picked (its *propensity*), so that a
candidate policy can later be judged from the log (:mod:`mixllm.evaluation.ope`)::

    p_k = (1 - epsilon) * s_k + epsilon / K
    s   = softmax(score / temperature)           temperature > 0
    s   = one-hot of the router's choice          temperature = 0

``temperature`` is in units of the score (quality units: 0.05 lets LLMs within a few hundredths
of quality of the best share traffic); ``epsilon`` spreads a floor over every LLM, which keeps
every propensity >= epsilon / K and so bounds the importance weights. With both at 0 (the
default) the choice is the router's own with propensity 1.

Sampling is reproducible: one uniform draw per decision from a seeded generator, in call
order (thread-safe; across threads the order is the order of the calls).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .types import Decision

__all__ = ["Explorer", "Choice", "policy_probabilities"]


def policy_probabilities(score: Any, temperature: float = 0.0, epsilon: float = 0.0
                         ) -> np.ndarray:
    """The distribution over LLMs of the formula above, for one ``(K,)`` or many ``(n, K)``
    score rows. NaN scores count as ``-inf`` (never the argmax, zero softmax mass)."""
    temperature, epsilon = _check_settings(temperature, epsilon)
    s = np.asarray(score, dtype=np.float64)
    one = s.ndim == 1
    if one:
        s = s[None, :]
    if s.ndim != 2 or s.shape[1] < 1:
        raise ValueError(f"score must have shape (K,) or (n, K) with K >= 1, got {s.shape}")
    s = np.where(np.isnan(s), -np.inf, s)
    if (s == np.inf).any():
        raise ValueError("score contains +inf")
    K = s.shape[1]
    best = np.argmax(s, axis=1)  # first maximum: the router's tie rule
    base = np.zeros_like(s)
    base[np.arange(len(s)), best] = 1.0
    if temperature > 0:
        top = s[np.arange(len(s)), best]
        finite = np.isfinite(top)
        with np.errstate(invalid="ignore", over="ignore"):
            z = np.exp((s[finite] - top[finite, None]) / temperature)
        base[finite] = z / z.sum(axis=1, keepdims=True)
    p = (1.0 - epsilon) * base + epsilon / K
    return p[0] if one else p


def _check_settings(temperature: Any, epsilon: Any) -> tuple[float, float]:
    for name, v in (("temperature", temperature), ("epsilon", epsilon)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    return float(temperature), float(epsilon)


@dataclass(frozen=True)
class Choice:
    """A sampled decision.

    Attributes
    ----------
    decision : Decision
        The router's decision (its scores and terms).
    index : int
        The sampled LLM's position in ``decision.names``.
    llm : str
        The sampled LLM.
    propensity : float
        Its probability under the policy (> 0).
    probabilities : ndarray (K,)
        The whole distribution, aligned with ``decision.names``.
    """

    decision: Decision
    index: int
    llm: str
    propensity: float
    probabilities: np.ndarray


class Explorer:
    """Samples an LLM from a decision's scores (see the module docstring).

    Parameters
    ----------
    temperature : float
        Softmax temperature in score units (>= 0; 0 keeps the router's choice).
    epsilon : float
        Uniform mixing weight in [0, 1].
    seed : int, optional
        Seed of the generator (``None``: fresh entropy, not reproducible).
    """

    def __init__(self, temperature: float = 0.0, epsilon: float = 0.0,
                 seed: int | None = None) -> None:
        self.temperature, self.epsilon = _check_settings(temperature, epsilon)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise ValueError(f"seed must be an integer >= 0 or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)
        self._rng = np.random.default_rng(self.seed)
        self._lock = threading.Lock()

    @property
    def deterministic(self) -> bool:
        """True when every choice is the router's own (propensity 1)."""
        return self.temperature == 0.0 and self.epsilon == 0.0

    def settings(self) -> dict[str, Any]:
        """What a decision log records about this policy."""
        return {"temperature": self.temperature, "epsilon": self.epsilon, "seed": self.seed}

    def probabilities(self, decision: Decision) -> np.ndarray:
        """The distribution this explorer samples from for ``decision``."""
        if not isinstance(decision, Decision):
            raise ValueError(f"decision must be a Decision, got {type(decision).__name__}")
        return policy_probabilities(decision.score, self.temperature, self.epsilon)

    def choose(self, decision: Decision) -> Choice:
        """Sample one LLM for ``decision`` (the router's choice, propensity 1, when
        :attr:`deterministic`; no random draw is spent then)."""
        p = self.probabilities(decision)
        if self.deterministic:
            k = decision.index
        else:
            with self._lock:
                u = float(self._rng.random())
            c = np.cumsum(p)
            k = int(min(np.searchsorted(c, u * c[-1], side="right"), len(p) - 1))
            while p[k] == 0.0:  # a zero-probability LLM is never drawn (rounding at the edges)
                k -= 1
        p.flags.writeable = False
        return Choice(decision, k, decision.names[k], float(p[k]), p)
