"""Off-policy evaluation: what a candidate policy would have earned, judged from a decision log.

A log (:mod:`mixllm.decision_log`) holds, for each query ``i``, the LLM ``a_i`` the logging
policy chose with probability ``mu_i`` (its propensity, :mod:`mixllm.exploration`), the outcome
``r_i`` observed for it (quality, or cost), and the router's predictions ``rhat_ik`` for every
LLM (the logged score terms). For a candidate policy ``pi`` with probabilities ``pi_ik``
(another ``lam``, ``alpha`` or ``beta`` re-applied to the logged terms, or another fitted
router applied to the logged features), with importance weights ``w_i = pi_{i a_i} / mu_i``:

    IPS   V = (1/n) sum_i w_i r_i                           unbiased when mu > 0 wherever pi > 0
    SNIPS V = sum_i w_i r_i / sum_i w_i                     self-normalised: small bias, less
                                                            variance, bounded by the outcomes
    DR    V = (1/n) sum_i [ sum_k pi_ik rhat_ik + w_i (r_i - rhat_{i a_i}) ]
                                                            unbiased if either the propensities
                                                            or the direct model are right

(Horvitz & Thompson 1952; Dudik, Langford & Li, "Doubly Robust Policy Evaluation and
Learning", ICML 2011.) Intervals are percentile bootstraps over the log's rows (Efron &
Tibshirani 1993). Rows without the outcome (no feedback yet) are left out and counted.

A candidate applied to logged *terms* is the logging router's state at each decision with other
settings; for a router that learned online while logging, that is "the same learning router
with another lam", up to the different feedback the candidate's own choices would have taught
it (which no log can show).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..decision_log import TERMS, DecisionLog, LogError
from ..exploration import policy_probabilities
from ..router import Router

__all__ = ["Policy", "TermsPolicy", "RouterPolicy", "estimate", "evaluate_log", "ESTIMATORS"]

ESTIMATORS = ("ips", "snips", "dr")
_Q, _TOK, _COST, _BONUS, _PEN, _SCORE = range(len(TERMS))


def _opt(v: Any, name: str, *, low: float = 0.0, strict: bool = False,
         allow_inf: bool = False) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {v!r}")
    v = float(v)
    if math.isnan(v) or (math.isinf(v) and not allow_inf) or v < low or (strict and v == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}"
                         f"{' (inf allowed)' if allow_inf else ''}, got {v}")
    return v


@runtime_checkable
class Policy(Protocol):
    """A candidate policy, as :func:`evaluate_log` judges it: :class:`TermsPolicy`,
    :class:`RouterPolicy`, or any object with these two methods."""

    def probabilities(self, log: DecisionLog) -> np.ndarray:
        """``(n, K)``: the probability of each of the log's LLMs (log order) on each row."""
        ...

    def describe(self) -> dict[str, Any]:
        """The policy's settings, for the JSON report."""
        ...


@dataclass(frozen=True)
class TermsPolicy:
    """The logging router's predictions scored with other settings.

    Each of ``lam``, ``alpha``, ``beta`` left ``None`` keeps the logged value of that row;
    ``temperature`` and ``epsilon`` make the candidate stochastic (:mod:`mixllm.exploration`).
    """

    lam: float | None = None
    alpha: float | None = None
    beta: float | None = None
    temperature: float = 0.0
    epsilon: float = 0.0

    def __post_init__(self) -> None:
        _opt(self.lam, "lam", strict=True, allow_inf=True)
        _opt(self.alpha, "alpha")
        _opt(self.beta, "beta")
        policy_probabilities(np.zeros(1), self.temperature, self.epsilon)  # checks them

    def scores(self, log: DecisionLog) -> np.ndarray:
        T = log.terms
        lam = log.lam if self.lam is None else np.full(len(log), float(self.lam))
        alpha = log.alpha if self.alpha is None else np.full(len(log), float(self.alpha))
        beta = log.beta if self.beta is None else np.full(len(log), float(self.beta))
        inv = np.where(np.isinf(lam), 0.0, 1.0 / lam)[:, None]
        with np.errstate(invalid="ignore"):
            cost = np.where(inv == 0.0, 0.0, T[:, _COST] * inv)
        return T[:, _Q] - cost + alpha[:, None] * T[:, _BONUS] - beta[:, None] * T[:, _PEN]

    def probabilities(self, log: DecisionLog) -> np.ndarray:
        return policy_probabilities(self.scores(log), self.temperature, self.epsilon)

    def describe(self) -> dict[str, Any]:
        return {"kind": "terms", "lam": _jnum(self.lam), "alpha": self.alpha, "beta": self.beta,
                "temperature": self.temperature, "epsilon": self.epsilon}


class RouterPolicy:
    """Another fitted router applied to the logged features ``x`` (which must be features of
    that router's dimension: a router refit on the same features, another ridge or pool)."""

    def __init__(self, router: Router, lam: float | None = None, temperature: float = 0.0,
                 epsilon: float = 0.0) -> None:
        if not isinstance(router, Router):
            raise ValueError(f"router must be a Router, got {type(router).__name__}")
        self.router = router
        self.lam = _opt(lam, "lam", strict=True, allow_inf=True)
        policy_probabilities(np.zeros(1), temperature, epsilon)
        self.temperature, self.epsilon = float(temperature), float(epsilon)

    def _check(self, log: DecisionLog) -> np.ndarray:
        if log.x is None:
            raise LogError("judging another router needs the features x in every decision "
                           "record (DecisionLogger(log_features=True))")
        if log.x.shape[1] != self.router.dim:
            raise LogError(f"the log's features have {log.x.shape[1]} dimensions, the router "
                           f"takes {self.router.dim}")
        if sorted(self.router.names) != sorted(log.llms):
            raise LogError(f"the router's LLMs {sorted(self.router.names)} are not the log's "
                           f"{sorted(log.llms)}")
        return np.array([self.router.names.index(n) for n in log.llms])

    def probabilities(self, log: DecisionLog) -> np.ndarray:
        cols = self._check(log)
        n = len(log)
        if self.temperature == 0.0 and self.epsilon == 0.0:
            idx = self.router.route_batch(log.x, log.input_tokens, lam=self.lam)
            inv = np.argsort(cols)  # router column -> log column
            p = np.zeros((n, len(log.llms)))
            p[np.arange(n), inv[idx]] = 1.0
            return p
        S = np.array([self.router.route(log.x[i], float(log.input_tokens[i]), lam=self.lam).score
                      for i in range(n)])
        return policy_probabilities(S[:, cols], self.temperature, self.epsilon)

    def direct(self, log: DecisionLog) -> dict[str, np.ndarray]:
        """This router's predicted quality and cost (USD) per row and LLM, in log order."""
        cols = self._check(log)
        q, tok, _ = self.router.predict(log.x)
        llms = self.router.llms
        pin = np.array([m.input_price for m in llms])
        pout = np.array([m.output_price for m in llms])
        cost = (log.input_tokens[:, None] * pin + tok * pout) * 1e-6
        return {"quality": q[:, cols], "cost": cost[:, cols]}

    def describe(self) -> dict[str, Any]:
        return {"kind": "router", "names": self.router.names, "lam": _jnum(self.lam),
                "temperature": self.temperature, "epsilon": self.epsilon}


def _jnum(v: float | None) -> float | str | None:
    return "inf" if v is not None and math.isinf(v) else v


def _check_probs(P: Any, n: int, K: int, name: str) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (n, K):
        raise ValueError(f"{name} must have shape ({n}, {K}), got {P.shape}")
    if not np.isfinite(P).all() or (P < 0).any() or np.abs(P.sum(axis=1) - 1.0).max() > 1e-6:
        raise ValueError(f"{name} must be finite, >= 0, with rows summing to 1")
    return P


def _terms_per_row(r: np.ndarray, w: np.ndarray, dm_pi: np.ndarray, dm_a: np.ndarray
                   ) -> np.ndarray:
    """(n, 4): the per-row quantities every estimator is a ratio of means of:
    w r, w, and the DR term, plus r (the logging policy's own mean)."""
    return np.stack([w * r, w, dm_pi + w * (r - dm_a), r], axis=1)


def _stats(M: np.ndarray) -> np.ndarray:
    """Estimates (..., 4) -> ips, snips, dr, logged from column means ``M`` (..., 4)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        snips = M[..., 0] / M[..., 1]
    return np.stack([M[..., 0], snips, M[..., 2], M[..., 3]], axis=-1)


def estimate(outcome: Any, chosen: Any, propensity: Any, target: Any, direct: Any = None, *,
             n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """IPS, SNIPS and DR estimates of a target policy's mean outcome, with bootstrap intervals.

    Parameters
    ----------
    outcome : array (n,)
        Observed outcome of each logged decision (NaN: not observed; such rows are left out).
    chosen : int array (n,)
        Logged action (column of ``target``).
    propensity : array (n,)
        Logging probability of the chosen action, in (0, 1].
    target : array (n, K)
        The candidate policy's probabilities.
    direct : array (n, K), optional
        Predicted outcome of every action (the DR direct model); ``None``: zeros (DR = IPS).
    n_boot : int
        Bootstrap resamples (>= 100).
    level : float
        Interval coverage, in (0, 1).
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``{"ips"|"snips"|"dr": {"estimate", "low", "high"}, "logged": {...}, "n", "n_left_out",
        "ess", "max_weight"}``; ``logged`` is the logging policy's own mean outcome.
    """
    r = np.asarray(outcome, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"outcome must have shape (n,), got {r.shape}")
    n_all = len(r)
    a = np.asarray(chosen)
    mu = np.asarray(propensity, dtype=np.float64)
    if a.shape != (n_all,) or mu.shape != (n_all,):
        raise ValueError("outcome, chosen and propensity must have the same length")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"chosen must be integers, got dtype {a.dtype}")
    if not np.isfinite(mu).all() or (mu <= 0).any() or (mu > 1).any():
        raise ValueError("propensity must be in (0, 1]")
    if np.isinf(r).any():
        raise ValueError("outcome must be finite (NaN = not observed)")
    tgt = np.asarray(target, dtype=np.float64)
    if tgt.ndim != 2 or tgt.shape[0] != n_all:
        raise ValueError(f"target must have shape ({n_all}, K), got {tgt.shape}")
    K = tgt.shape[1]
    tgt = _check_probs(tgt, n_all, K, "target")
    if ((a < 0) | (a >= K)).any():
        raise ValueError(f"chosen must be in [0, {K})")
    dm = np.zeros((n_all, K)) if direct is None else np.asarray(direct, dtype=np.float64)
    if dm.shape != (n_all, K) or not np.isfinite(dm).all():
        raise ValueError(f"direct must be a finite ({n_all}, {K}) array")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100, got {n_boot!r}")
    if not (isinstance(level, float) and 0.0 < level < 1.0):
        raise ValueError(f"level must be a float in (0, 1), got {level!r}")
    seen = ~np.isnan(r)
    if not seen.any():
        raise ValueError("no row has the outcome observed")
    r, a, mu, tgt, dm = r[seen], a[seen], mu[seen], tgt[seen], dm[seen]
    n = len(r)
    rows = np.arange(n)
    w = tgt[rows, a] / mu
    per_row = _terms_per_row(r, w, (tgt * dm).sum(axis=1), dm[rows, a])
    point = _stats(per_row.mean(axis=0))
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, 4))
    chunk = max(1, 2_000_000 // max(n, 1))
    for s in range(0, n_boot, chunk):
        m = min(chunk, n_boot - s)
        idx = rng.integers(0, n, size=(m, n))
        boots[s:s + m] = _stats(per_row[idx].mean(axis=1))
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    out: dict[str, Any] = {}
    for j, name in enumerate((*ESTIMATORS, "logged")):
        b = boots[:, j]
        b = b[np.isfinite(b)]
        low, high = (float(np.quantile(b, lo_q)), float(np.quantile(b, hi_q))) if len(b) \
            else (math.nan, math.nan)
        out[name] = {"estimate": float(point[j]), "low": low, "high": high}
    out["n"] = int(n)
    out["n_left_out"] = int(n_all - n)
    out["ess"] = float(w.sum() ** 2 / (w @ w)) if (w @ w) > 0 else 0.0
    out["max_weight"] = float(w.max())
    out["match_rate"] = float(np.mean(tgt[rows, a]))
    return out


def evaluate_log(log: DecisionLog, policy: Policy, *, direct: str | Any = "logged",
                 outcomes: tuple[str, ...] = ("quality", "cost"), n_boot: int = 1000,
                 level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Judge ``policy`` (:class:`TermsPolicy` or :class:`RouterPolicy`) on a decision log.

    ``direct`` is the DR direct model: ``"logged"`` (the logging router's own predicted
    quality and cost, from the log's terms), ``"policy"`` (a :class:`RouterPolicy`'s
    predictions), or a mapping outcome -> (n, K) array.
    """
    if not isinstance(log, DecisionLog):
        raise ValueError(f"log must be a DecisionLog, got {type(log).__name__}")
    if not isinstance(policy, Policy):
        raise ValueError(f"policy must be a TermsPolicy or a RouterPolicy (a Policy: "
                         f"probabilities(log) and describe()), got {type(policy).__name__}")
    for o in outcomes:
        if o not in ("quality", "cost"):
            raise ValueError(f"outcomes are 'quality' and 'cost', got {o!r}")
    P = _check_probs(policy.probabilities(log), len(log), len(log.llms), "policy probabilities")
    if isinstance(direct, str):
        if direct == "logged":
            dm = {"quality": log.terms[:, _Q], "cost": log.terms[:, _COST]}
        elif direct == "policy":
            if not isinstance(policy, RouterPolicy):
                raise ValueError("direct='policy' needs a RouterPolicy")
            dm = policy.direct(log)
        else:
            raise ValueError(f"direct must be 'logged', 'policy' or a mapping, got {direct!r}")
    else:
        dm = dict(direct)
    support = None
    if log.probabilities is not None:
        support = float(np.mean(((P > 0) & (log.probabilities <= 0)).any(axis=1)))
    res: dict[str, Any] = {"policy": policy.describe(), "n_decisions": len(log),
                           "llms": list(log.llms), "level": level,
                           "target_share": {n: float(v) for n, v in zip(log.llms, P.mean(0))},
                           "rows_outside_logging_support": support}
    for o in outcomes:
        r = getattr(log, o)
        d = np.asarray(dm[o], dtype=np.float64)
        if not np.isfinite(d).all():
            d = np.where(np.isfinite(d), d, np.nanmax(np.where(np.isfinite(d), d, np.nan)))
        res[o] = estimate(r, log.chosen, log.propensity, P, d, n_boot=n_boot, level=level,
                          seed=seed)
    return res
