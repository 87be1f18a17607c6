"""The MixLLM router: per-LLM quality and length predictors, and the meta-decision maker.

Score of LLM ``k`` for a query embedding ``x`` with ``n_in`` input tokens (the exact formula
the native core and :mod:`mixllm._reference` compute)::

    q_k     = theta_k[quality] . z                      predicted quality
    len_k   = expm1(clip(theta_k[log_tokens] . z, 0, 20))  predicted output tokens
    cost_k  = (n_in * input_price_k + len_k * output_price_k) / 1e6     USD
    bonus_k = sqrt(z^T A_k^{-1} z)                      LinUCB uncertainty
    pen_k   = expm1(wait_k / tau)                       latency penalty, 0 when tau = inf
    score_k = q_k - cost_k / lam + alpha * bonus_k - beta * pen_k

where ``z`` is ``x`` with a trailing 1 when ``fit_intercept`` is set, ``A_k = ridge * I +
sum z z^T`` over the queries LLM ``k`` was observed on, and ``lam`` (USD per unit of quality)
is the willingness to pay: ``lam = inf`` routes on quality alone, a small ``lam`` on cost. The
decision is the first LLM with the largest score.

The model's semantics are the engine's: every call passes the raw ``x`` (or ``X``), the
observed quality and output tokens, and ``fit_intercept``; the engine (the native core's
``model.hpp``, or :class:`mixllm._reference.RefPool`) appends the intercept, takes the target
``log1p(output_tokens)`` and turns predicted lengths back into tokens. This module checks the
input (shapes, finiteness, ranges; a typed error before any state changes) and nothing more.

Forgetting (``discount = gamma < 1``, for non-stationary streams). Each online observation of
LLM ``k`` first discounts what it knew, and keeps the ridge prior alive with one pseudo-row::

    A_k <- gamma A_k + w z z^T + rho e_j e_j^T      rho = (1 - gamma) * ridge * D
    b_k <- gamma b_k + w y z^T                     j = (n_obs_k mod D), D = dim of z

so old observations weigh ``gamma^age`` (a memory of about ``1 / (1 - gamma)`` observations of
that LLM) while the prior, topped up one coordinate at a time, averages ``ridge * I`` over every
D observations in the steady state. Plain discounting (``A <- gamma A + z z^T``) lets the prior
decay as ``gamma^n``: directions the queries never excite (the tag features' domain
probabilities sum to the intercept) then go singular after a long stream. The pseudo-row form
stays two rank-1 terms per observation, so it keeps the engines' exact rank-1 updates.

Both engines forget. The native form (``cpp/include/mixllm/pool.hpp``): with ``A_k = c_k (G +
U^T U)`` and ``b_k = c_k b~_k``, a discount is ``c_k <- gamma c_k`` and both rows enter scaled by
``1 / sqrt(c_k)`` (``theta`` is unchanged by the common scale, the bonus is divided by
``sqrt(c_k)``, and so are the certified bounds the decisions prune with), renormalised at folds
by the power of 4 at or below ``c_k`` (exact): O(1) more per update besides the second row. The
online updates stay exact rank-1 steps, so the native engine follows the reference one to
rounding; an offline :meth:`Router.fit` is not discounted (in either engine), and replicas of a
forgetting router cannot be merged (:meth:`Router.export_delta` refuses).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, overload

import numpy as np

from . import _core, _reference
from ._io import atomic_write, pack_checked, unpack_checked
from .types import LLM, Decision, StateError

__all__ = ["DEFAULT_LAM", "Router"]

#: The stated default willingness to pay of ``mixllm fit`` and ``mixllm serve`` (a pool file's
#: ``lam``), USD per unit of quality: an LLM that costs 1 cent more on a request must be
#: predicted 0.2 better (on a 0-1 quality scale) to be chosen. On the RouterBench subset (one
#: task-stratified 80/20 split, seed 0, static encoder, default pipeline) it routes to 95.5% of
#: gpt-4's quality at 34.7% of its cost (0.1: 98.2% at 59.5%; 0.01: 90.6% at 6.8%).
#: ``Router`` itself keeps ``lam = inf`` (quality alone) unless told otherwise.
DEFAULT_LAM = 0.05

from .drift import DriftMonitor, DriftStat  # noqa: E402 - after __all__ for the reader

FORMAT = "mixllm-router"
FORMAT_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)


_new_decision = object.__new__
# The route hot path stores the engine's (llm, index, names, terms) through the slot's own
# setter (no checks: the engine's output is well formed; a checked constructor costs ~1 us).
_set_decision = Decision._v.__set__  # type: ignore[attr-defined]


def _check_scalar(name: str, v: Any, *, low: float = -math.inf, allow_inf: bool = False,
                  strict: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {type(v).__name__}")
    v = float(v)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {v}")
    if v < low or (strict and v == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {v}")
    return v


class _Setting:
    """A score weight that may change between calls, checked on every assignment as the
    constructor's argument is (:func:`_check_scalar` with these limits); stored as ``_<name>``."""

    def __init__(self, doc: str, **limits: Any) -> None:
        self.__doc__ = doc
        self._limits = limits

    def __set_name__(self, owner: type, name: str) -> None:
        self._name, self._attr = name, "_" + name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Setting: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> float: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> float | _Setting:
        return self if obj is None else getattr(obj, self._attr)

    def __set__(self, obj: object, v: float) -> None:
        setattr(obj, self._attr, _check_scalar(self._name, v, **self._limits))


def _as_float_array(a: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except Exception as exc:  # noqa: BLE001 - anything numpy cannot take is a bad input
        raise ValueError(f"{name} is not array-like: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=True)


class Router:
    """MixLLM router over a pool of LLMs (see the module docstring for the score).

    Parameters
    ----------
    pool : sequence of LLM
        The LLMs, with unique names. At least one.
    dim : int
        Dimension of the query embeddings.
    alpha : float
        Weight of the LinUCB uncertainty bonus (>= 0).
    beta : float
        Weight of the latency penalty (>= 0).
    tau : float
        Waiting-time tolerance in seconds (> 0; ``inf`` disables the penalty).
    ridge : float
        Ridge strength of every LLM's regression (> 0).
    lam : float
        Default willingness to pay, USD per unit of quality (> 0, ``inf`` allowed).
    fit_intercept : bool
        Append a constant 1 to every embedding.
    cold_ridge : float or None
        Prior strength of an LLM added later (defaults to ``ridge``); the smaller, the larger
        its initial bonus and the faster its prior is overridden.
    refactor_every : int
        Exact refactorisation of an LLM's inverse after this many rank-1 updates.
    engine : {"native", "reference"}
        The C++ core, or the float64 NumPy specification (slow; for checking).
    precision : {"float64", "float32"}
        Precision of the triangular factor the scoring reads (see :attr:`precision`);
        ``"float32"`` is an opt-in for the native engine: faster decisions, score terms within
        about 1e-6 relative of ``"float64"``'s, the same float64 learned state.
    discount : float
        Forgetting factor ``gamma`` in (0, 1] of online observations (see the module
        docstring); 1 (the default) forgets nothing. Both engines forget (the native one
        with a per-LLM scale, see the module docstring).

    Notes
    -----
    Routing is deterministic: ties go to the first LLM in pool order.
    All methods are safe to call from several threads: scoring runs under a shared lock,
    updates and pool changes under an exclusive one, inside the engine.
    """

    def __init__(self, pool: Sequence[LLM], dim: int, *, alpha: float = 0.0, beta: float = 0.0,
                 tau: float = math.inf, ridge: float = 1.0, lam: float = math.inf,
                 fit_intercept: bool = True, cold_ridge: float | None = None,
                 refactor_every: int = 4096, engine: str = "native",
                 precision: str = "float64", discount: float = 1.0) -> None:
        try:
            pool = list(pool)
        except TypeError as exc:
            raise ValueError(f"pool must be a sequence of LLM, got {type(pool).__name__}") from exc
        if not pool:
            raise ValueError("the pool is empty: give at least one LLM")
        for llm in pool:
            if not isinstance(llm, LLM):
                raise ValueError(f"pool entries must be LLM, got {type(llm).__name__}")
        names = [llm.name for llm in pool]
        if len(set(names)) != len(names):
            raise ValueError(f"LLM names must be unique, got {names}")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if isinstance(refactor_every, bool) or not isinstance(refactor_every, (int, np.integer)) \
                or refactor_every < 1:
            raise ValueError(f"refactor_every must be a positive integer, got {refactor_every!r}")
        if engine not in ("native", "reference"):
            raise ValueError(f"engine must be 'native' or 'reference', got {engine!r}")
        _check_precision(precision, engine)
        self._discount = _check_discount(discount)
        self.dim = int(dim)
        self.alpha = alpha
        self.beta = beta
        self.tau = tau
        self.ridge = _check_scalar("ridge", ridge, low=0.0, strict=True)
        self.lam = lam
        self.cold_ridge = self.ridge if cold_ridge is None else _check_scalar(
            "cold_ridge", cold_ridge, low=0.0, strict=True)
        self.fit_intercept = bool(fit_intercept)
        self.refactor_every = int(refactor_every)
        self.engine = engine
        self.metadata: dict[str, Any] = {}
        self._llms: dict[str, LLM] = {}
        self._membership = threading.Lock()
        self._precision = precision
        self._drift: DriftMonitor | None = None
        self._pool = self._new_pool()
        for llm in pool:
            self._pool.add_arm(llm.name, self.ridge, np.zeros((2, self._zdim)), llm.input_price,
                               llm.output_price)
            self._llms[llm.name] = llm

    # ------------------------------------------------------------------ tunable settings
    # The score's weights may be changed between calls (e.g. a per-deployment trade-off);
    # they are validated like the constructor's arguments, so a bad value is refused.
    alpha = _Setting("Weight of the LinUCB bonus (>= 0).", low=0.0)
    beta = _Setting("Weight of the latency penalty (>= 0).", low=0.0)
    tau = _Setting("Waiting-time tolerance in seconds (> 0, inf disables the penalty).",
                   low=0.0, strict=True, allow_inf=True)

    @property
    def lam(self) -> float:
        """Default willingness to pay, USD per unit of quality (> 0, inf allowed)."""
        return self._lam_default

    @lam.setter
    def lam(self, v: float) -> None:
        self._lam_default = _check_scalar("lam", v, low=0.0, strict=True, allow_inf=True)
        self._inv_lam_default = 0.0 if math.isinf(self._lam_default) else 1.0 / self._lam_default

    @property
    def discount(self) -> float:
        """Forgetting factor of online observations (1: none); fixed at construction."""
        return self._discount

    @property
    def precision(self) -> str:
        """Precision of the scoring's whitening: ``"float64"`` (default) or ``"float32"``.

        ``"float32"`` (native engine only) keeps a float32 copy of each base's triangular
        factor, derived from the float64 one whenever a base is built, and scores with it
        (float64 products and sums): half the bytes a decision reads, score terms within about
        1e-6 relative of float64's. The learned state (updates, folds, saves) stays float64.
        """
        return self._precision

    @precision.setter
    def precision(self, v: str) -> None:
        _check_precision(v, self.engine)
        self._precision = v
        self._pool.float32 = v == "float32"

    # ------------------------------------------------------------------ helpers
    @property
    def _zdim(self) -> int:
        return self.dim + (1 if self.fit_intercept else 0)

    def _new_pool(self):
        if self.engine == "native":
            pool = _core.Pool(self._zdim, 2, self.refactor_every)
            pool.float32 = self._precision == "float32"
            pool.set_discount(self.discount, self.ridge)
            return pool
        pool = _reference.RefPool(self._zdim, 2, self.refactor_every)
        pool.set_discount(self.discount, self.ridge)
        return pool

    @staticmethod
    def _array_fast(x: Any, name: str) -> Any:
        """x itself when the engine can take it as it is (a real-valued ndarray), else a
        validated float64 copy; shapes and finiteness are checked by the engine."""
        if type(x) is np.ndarray and x.dtype.kind in "fiub":
            return x
        return _as_float_array(x, name)

    def _rows(self, X: Any, name: str = "X") -> np.ndarray:
        """X checked (shape (n, dim), finite, squared norms that do not overflow), as a
        contiguous float64 array; the engine appends the intercept."""
        arr = _as_float_array(X, name)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (n, {self.dim}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf")
        with np.errstate(over="ignore"):
            if not np.isfinite(np.einsum("ij,ij->i", arr, arr)).all():
                raise ValueError(f"{name} is too large: a row's squared norm overflows")
        return np.ascontiguousarray(arr)

    def _row(self, x: Any, name: str = "x") -> np.ndarray:
        """One query checked as :meth:`_rows` does, as a (1, dim) batch."""
        arr = _as_float_array(x, name)
        if arr.shape != (self.dim,):
            raise ValueError(f"{name} must have shape ({self.dim},), got {arr.shape}")
        return self._rows(arr[None, :], name)

    def _tokens(self, n_in: Any, n: int, name: str = "input_tokens") -> np.ndarray:
        arr = _as_float_array(n_in, name)
        if arr.ndim == 0:
            arr = np.full(n, float(arr))
        if arr.shape != (n,):
            raise ValueError(f"{name} must be a number or have shape ({n},), got {arr.shape}")
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise ValueError(f"{name} must be finite and >= 0")
        return arr

    def _inv_lam(self, lam: Any) -> float:
        """1 / lam for the routing hot paths: the default's kept value, a positive float
        directly, anything else through the full check of :meth:`_checked_inv_lam`."""
        if lam is None:
            return self._inv_lam_default
        if type(lam) is float and lam > 0.0:
            return 0.0 if lam == math.inf else 1.0 / lam
        return self._checked_inv_lam(lam)

    def _checked_inv_lam(self, lam: Any) -> float:
        """1 / lam (0 for an infinite lam) after the full check of ``lam`` (None: the default)."""
        lam = self.lam if lam is None else _check_scalar("lam", lam, low=0.0, strict=True,
                                                         allow_inf=True)
        return 0.0 if math.isinf(lam) else 1.0 / lam

    def _observations(self, quality: Any, output_tokens: Any, n: int
                      ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The names in pool order and the (n, K) quality and output tokens observed under
        them, checked (NaN = not observed, no inf, tokens >= 0); the engine takes the targets
        (quality, log1p tokens) from them."""
        names = self.names
        cols_q, cols_t = [], []
        for label, data, out in (("quality", quality, cols_q), ("output_tokens", output_tokens, cols_t)):
            if isinstance(data, Mapping):
                unknown = set(data) - set(names)
                if unknown:
                    raise KeyError(f"{label} names LLMs not in the pool: {sorted(unknown)}")
                for nm in names:
                    col = _as_float_array(data[nm], f"{label}[{nm!r}]") if nm in data \
                        else np.full(n, np.nan)
                    if col.shape != (n,):
                        raise ValueError(f"{label}[{nm!r}] must have shape ({n},), got {col.shape}")
                    out.append(col)
            else:
                arr = _as_float_array(data, label)
                if arr.shape != (n, len(names)):
                    raise ValueError(f"{label} must have shape ({n}, {len(names)}) in pool order "
                                     f"{names}, or be a mapping name -> array; got {arr.shape}")
                out.extend(arr.T)
        q = np.stack(cols_q, axis=1)
        t = np.stack(cols_t, axis=1)
        if np.isinf(q).any() or np.isinf(t).any():
            raise ValueError("quality and output_tokens must not contain inf (NaN = not observed)")
        if (t[np.isfinite(t)] < 0).any():
            raise ValueError("output_tokens must be >= 0")
        return names, np.ascontiguousarray(q), np.ascontiguousarray(t)

    # ------------------------------------------------------------------ pool
    @property
    def names(self) -> list[str]:
        """LLM names in pool order (the order of every per-LLM array)."""
        return list(self._pool.names())

    @property
    def llms(self) -> list[LLM]:
        """The pool's LLMs, in pool order."""
        return [self._llms[n] for n in self.names]

    def llm(self, name: str) -> LLM:
        """The pool LLM called ``name`` (its prices and latency profile); ``KeyError`` when
        the pool has none of that name."""
        if not isinstance(name, str) or name not in self._llms:
            raise KeyError(f"unknown LLM: {name!r}")
        return self._llms[name]

    def n_observations(self) -> dict[str, int]:
        """Observations (offline and online) each LLM's predictors have seen."""
        with self._membership:
            return dict(zip(self._pool.names(), (int(v) for v in self._pool.n_obs())))

    def add_llm(self, llm: LLM, warm_start: str | np.ndarray | None = "pool") -> None:
        """Add an LLM to the pool without touching the others.

        Parameters
        ----------
        llm : LLM
            The new LLM (its name must not be in the pool).
        warm_start : "pool", str, ndarray or None
            Prior for its predictors: ``"pool"`` the mean of the current LLMs' coefficients,
            the name of an LLM to copy, a ``(2, dim[+1])`` coefficient array (quality,
            log1p tokens), or ``None`` for zeros. The prior has strength ``cold_ridge``, so the
            new LLM starts with a large bonus and learns from its first feedback.
        """
        if not isinstance(llm, LLM):
            raise ValueError(f"llm must be an LLM, got {type(llm).__name__}")
        with self._membership:
            if llm.name in self._llms:
                raise ValueError(f"LLM already in the pool: '{llm.name}'")
            if warm_start is None:
                theta0 = np.zeros((2, self._zdim))
            elif isinstance(warm_start, str) and warm_start == "pool" and "pool" not in self._llms:
                thetas = [self._pool.theta(n) for n in self._pool.names()]
                theta0 = np.mean(thetas, axis=0) if thetas else np.zeros((2, self._zdim))
            elif isinstance(warm_start, str):
                if warm_start not in self._llms:
                    raise KeyError(f"warm_start names an unknown LLM: '{warm_start}'")
                theta0 = self._pool.theta(warm_start)
            else:
                theta0 = _as_float_array(warm_start, "warm_start")
                if theta0.shape != (2, self._zdim) or not np.isfinite(theta0).all():
                    raise ValueError(f"warm_start must be a finite (2, {self._zdim}) array")
            self._pool.add_arm(llm.name, self.cold_ridge, np.ascontiguousarray(theta0),
                               llm.input_price, llm.output_price)
            self._llms[llm.name] = llm

    def update_llm(self, llm: LLM) -> None:
        """Replace the whole profile of an LLM of the pool (prices and latency profile:
        ``ttft_s``, ``tokens_per_s``, ``slots``), keeping what it learned, e.g. a pool file's
        entry for a fitted router; :meth:`set_prices` changes the prices alone."""
        if not isinstance(llm, LLM):
            raise ValueError(f"llm must be an LLM, got {type(llm).__name__}")
        with self._membership:
            if llm.name not in self._llms:
                raise KeyError(f"unknown LLM: {llm.name!r}")
            self._pool.set_prices(llm.name, float(llm.input_price), float(llm.output_price))
            self._llms[llm.name] = llm

    def remove_llm(self, name: str) -> None:
        """Remove an LLM: it is never chosen again and its state is dropped."""
        with self._membership:
            if not isinstance(name, str) or name not in self._llms:
                raise KeyError(f"unknown LLM: {name!r}")
            if len(self._llms) == 1:
                raise ValueError("cannot remove the last LLM: the pool would be empty")
            self._pool.remove_arm(name)
            del self._llms[name]
            if self._drift is not None:
                self._drift.forget(name)

    def set_prices(self, name: str, input_price: float, output_price: float) -> None:
        """Change an LLM's prices (USD per 1M input / output tokens) from the next decision on.

        Prices are not learned from feedback (the cost term is the prices times the predicted
        token counts), so a provider's price change takes effect only through this call, and
        then at once: what the router learned about quality and length is kept.
        """
        with self._membership:
            if not isinstance(name, str) or name not in self._llms:
                raise KeyError(f"unknown LLM: {name!r}")
            llm = replace(self._llms[name], input_price=input_price,
                                      output_price=output_price)  # validates both
            self._pool.set_prices(name, llm.input_price, llm.output_price)
            self._llms[name] = llm

    def set_waiting_time(self, name: str, seconds: float) -> None:
        """Set an LLM's current expected waiting time (seconds), used by the latency penalty."""
        seconds = _check_scalar("seconds", seconds, low=0.0)
        if not isinstance(name, str) or name not in self._llms:
            raise KeyError(f"unknown LLM: {name!r}")
        self._pool.set_wait(name, seconds)

    # ------------------------------------------------------------------ learning
    def fit(self, X: Any, quality: Any, output_tokens: Any) -> "Router":
        """Fit every LLM's predictors offline, replacing what they had learned.

        Parameters
        ----------
        X : array (n, dim)
            Query embeddings.
        quality, output_tokens : array (n, K) in pool order, or mapping name -> array (n,)
            Observed response quality and output length; NaN where an LLM was not observed
            (a row counts for an LLM only where both are observed).

        Returns
        -------
        Router
            ``self``.
        """
        X = self._rows(X)
        names, q, t = self._observations(quality, output_tokens, X.shape[0])
        fresh = self._new_pool()
        llms = [self._llms[n] for n in names]
        # The engine builds one shared Gram matrix from the rows every LLM observed, and
        # per-LLM corrections from the rest (a row counts where both are observed).
        fresh.fit_observed(names, [m.input_price for m in llms], [m.output_price for m in llms],
                           self.ridge, X, q, t, self.fit_intercept)
        with self._membership:
            if self.names != names:
                raise RuntimeError("the pool changed during fit; call fit again")
            self._pool = fresh
        return self

    def partial_fit(self, X: Any, quality: Any, output_tokens: Any) -> "Router":
        """Add a batch of observations to what the predictors know (exact, then refactored)."""
        X = self._rows(X)
        names, q, t = self._observations(quality, output_tokens, X.shape[0])
        self._pool.observe_many(names, X, q, t, self.fit_intercept)
        return self

    def feedback(self, x: Any, llm: str, quality: float, output_tokens: float,
                 weight: float = 1.0) -> "Router":
        """Learn online from one observed response of ``llm`` to the query ``x``.

        Parameters
        ----------
        x : array (dim,)
            The query's embedding.
        llm : str
            The LLM that answered.
        quality : float
            Observed quality (e.g. 0/1 correctness or a judge's score).
        output_tokens : float
            Observed response length in tokens (>= 0).
        weight : float
            Weight of this observation in the ridge regression (> 0): ``A += w z z^T`` and
            ``b += w z y``. Below 1 for weaker signals such as thumbs.

        Returns
        -------
        Router
            ``self``, as :meth:`fit` and :meth:`merge` do.
        """
        # Lean path: type checks here; shape, finiteness, ranges, the intercept, log1p and the
        # unknown-LLM KeyError in the engine, all before any state changes.
        x = self._array_fast(x, "x")
        if type(quality) is not float and type(quality) is not int:
            quality = _check_scalar("quality", quality)
        if type(output_tokens) is not float and type(output_tokens) is not int:
            output_tokens = _check_scalar("output_tokens", output_tokens, low=0.0)
        if type(weight) is not float and type(weight) is not int:
            weight = _check_scalar("weight", weight, low=0.0, strict=True)
        if type(llm) is not str:
            raise KeyError(f"unknown LLM: {llm!r}")
        if self._drift is not None:
            self._observe_watched(x, llm, float(quality), float(output_tokens), float(weight))
            return self
        self._pool.observe(llm, x, float(quality), float(output_tokens), float(weight),
                           self.fit_intercept)
        return self

    def _observe_watched(self, x: Any, llm: str, quality: float, output_tokens: float,
                         weight: float) -> None:
        """feedback with the drift monitor on: the prediction before learning, then the
        residual once the observation is accepted."""
        monitor = self._drift
        quality_hat, _, _, names = self._pool.predict_many(self._row(x), self.fit_intercept)
        names = list(names)
        if llm not in names:
            raise KeyError(f"unknown LLM: '{llm}'")
        predicted = float(quality_hat[0, names.index(llm)])
        self._pool.observe(llm, x, quality, output_tokens, weight, self.fit_intercept)
        if monitor is not None:
            monitor.observe(llm, quality - predicted)

    # ------------------------------------------------------------------ change detection
    @property
    def drift_monitor(self) -> DriftMonitor | None:
        """The change detector fed by :meth:`feedback` (``None`` until :meth:`monitor_drift`).

        Settable, e.g. to hand the running statistics to a router that replaces this one (a
        replica adopting its peers' merged state); ``None`` turns monitoring off."""
        return self._drift

    @drift_monitor.setter
    def drift_monitor(self, monitor: DriftMonitor | None) -> None:
        if monitor is not None and not isinstance(monitor, DriftMonitor):
            raise ValueError(f"drift_monitor must be a DriftMonitor or None, got "
                             f"{type(monitor).__name__}")
        self._drift = monitor

    def monitor_drift(self, window: int = 200, threshold: float = 4.0,
                      min_history: int | None = None) -> DriftMonitor:
        """Track each LLM's prediction residuals from now on (see :mod:`mixllm.drift`).

        Every :meth:`feedback` then also predicts the routed LLM's quality before learning
        (one ``predict`` of the pool: at d = 385 and 11 LLMs a feedback took a median 55 us
        instead of 16 us on the shared 2-core dev machine). Calling it again starts afresh;
        the statistics are not saved with the router. Returns the monitor.
        """
        self._drift = DriftMonitor(window, threshold, min_history)
        return self._drift

    def drift(self) -> dict[str, DriftStat]:
        """Per LLM in the pool: its change statistics (:class:`mixllm.drift.DriftStat`;
        ``n = 0`` for an LLM without feedback yet). Raises ``ValueError`` when not
        monitoring."""
        monitor = self._drift
        if monitor is None:
            raise ValueError("drift monitoring is off: call monitor_drift() first")
        stats = monitor.stats()
        empty = DriftStat(0, math.nan, math.nan, math.nan, math.nan, 0.0, False, "")
        return {name: stats.get(name, empty) for name in self.names}

    def feedback_thumbs(self, x: Any, llm: str, up: bool, output_tokens: float, *,
                        weight: float = 0.5, up_quality: float = 1.0,
                        down_quality: float = 0.0) -> "Router":
        """Learn from a thumbs up/down on ``llm``'s response: a weaker, thresholded signal.

        The thumb becomes the quality ``up_quality`` or ``down_quality`` and is learned with
        ``weight`` (see :meth:`feedback`); the response length is still observed exactly.
        """
        if not isinstance(up, (bool, np.bool_)):
            raise ValueError(f"up must be a bool, got {type(up).__name__}")
        return self.feedback(x, llm, up_quality if up else down_quality, output_tokens,
                             weight=weight)

    def refactor(self) -> None:
        """Recompute every inverse exactly (re-anchors Sherman-Morrison drift)."""
        self._pool.refactor(None)

    # ------------------------------------------------------------------ routing
    def predict(self, X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicted quality, output tokens and uncertainty bonus, each (n, K) in pool order."""
        quality, out_tok, bonus, _ = self._pool.predict_many(self._rows(X), self.fit_intercept)
        return quality, out_tok, bonus

    def route(self, x: Any, input_tokens: float, lam: float | None = None) -> Decision:
        """Choose the LLM for one query and return the score terms behind the choice.

        Parameters
        ----------
        x : array (dim,)
            The query's embedding.
        input_tokens : float
            Tokens in the prompt (priced at each LLM's input price).
        lam : float, optional
            Willingness to pay, USD per unit of quality; defaults to the router's ``lam``.
        """
        # Lean path: the engine checks the shape and finiteness of x and appends the intercept.
        if type(x) is not np.ndarray or x.dtype.kind not in "fiub":
            x = _as_float_array(x, "x")
        if type(input_tokens) is not float and type(input_tokens) is not int:
            input_tokens = self._tokens(input_tokens, 1)[0]
        d = _new_decision(Decision)
        _set_decision(d, self._pool.route_one(x, float(input_tokens), self._inv_lam(lam),
                                              self._alpha, self._beta, self._tau,
                                              self.fit_intercept))
        return d

    def route_batch(self, X: Any, input_tokens: Any, lam: float | None = None) -> np.ndarray:
        """Choose an LLM for each row of ``X``; returns indices into :attr:`names`."""
        # Lean path, as in route: the engine checks shapes, finiteness and signs, and appends
        # the intercept (about 20 us of NumPy checks saved per call).
        X = self._array_fast(X, "X")
        if type(input_tokens) is float or type(input_tokens) is int:
            n_in = np.float64(input_tokens)
        else:
            n_in = self._array_fast(input_tokens, "input_tokens")
        return self._pool.route_many(X, n_in, self._inv_lam(lam), self._alpha, self._beta,
                                     self._tau, self.fit_intercept)

    def clone(self) -> "Router":
        """An independent deep copy (configuration, pool and learned state)."""
        other = object.__new__(Router)
        other.__dict__.update({k: v for k, v in self.__dict__.items()
                               if k not in ("_pool", "_membership", "metadata", "_llms")})
        other.metadata = json.loads(json.dumps(self.metadata))
        other._llms = dict(self._llms)
        other._membership = threading.Lock()
        other._drift = None if self._drift is None else self._drift.copy()
        with self._membership:
            other._pool = self._pool.copy()
            other._llms = dict(self._llms)
        return other

    # ------------------------------------------------------------------ merging replicas
    # What a router learns is sums (per LLM: A = prior + sum w z z^T, b = prior + sum w y z^T),
    # so replicas that started from one state can exchange what they learned since: the
    # difference of those sums. Applying it rebuilds each LLM from its exact A and b.
    def export_delta(self, base: "Router | None" = None) -> dict[str, Any]:
        """What this router learned since ``base``: per LLM, the change of A, b and n_obs.

        Parameters
        ----------
        base : Router, optional
            The state this router started from (e.g. a :meth:`clone` taken at the last sync),
            with the same dimension and LLMs. ``None``: the constructor's prior (``ridge * I``,
            zero coefficients), right only for LLMs given to the constructor and never refit
            with :meth:`fit` since the split.

        Returns
        -------
        dict
            ``{"dim", "fit_intercept", "llms": {name: {"A", "b", "n_obs"}}}`` (numpy arrays).
        """
        if base is not None and not isinstance(base, Router):
            raise ValueError(f"base must be a Router, got {type(base).__name__}")
        if self.discount < 1.0:
            raise ValueError("deltas are sums of observations; with forgetting (discount < 1) "
                             "the base is discounted too, so replicas cannot be merged")
        if base is not None and (base.dim, base.fit_intercept) != (self.dim, self.fit_intercept):
            raise ValueError("base has another dimension or intercept setting")
        with self._membership:
            pool = self._pool.copy()
        bpool = None
        if base is not None:
            with base._membership:
                bpool = base._pool.copy()
            missing = set(pool.names()) - set(bpool.names())
            if missing:
                raise KeyError(f"LLMs not in base: {sorted(missing)}")
        llms = {}
        for name in pool.names():
            s = pool.arm(name)
            if bpool is None:
                A0, b0, n0 = self.ridge * np.eye(self._zdim), np.zeros_like(s["b"]), 0
            else:
                s0 = bpool.arm(name)
                A0, b0, n0 = s0["A"], s0["b"], int(s0["n_obs"])
            llms[name] = {"A": s["A"] - A0, "b": s["b"] - b0, "n_obs": int(s["n_obs"]) - n0}
        return {"dim": self.dim, "fit_intercept": self.fit_intercept, "llms": llms}

    def apply_delta(self, delta: Mapping[str, Any]) -> None:
        """Add what another replica learned (:meth:`export_delta`) to this router.

        Each LLM named in ``delta`` is rebuilt from ``A + dA`` and ``b + db`` (exact inverses,
        no Sherman-Morrison drift); the others, the waiting times and the prices are kept.
        Feedback given to this router *while* the delta is applied may be lost: serialise
        the two (a replica applies deltas between requests).
        """
        if self.discount < 1.0:
            raise ValueError("deltas cannot be applied to a forgetting router (discount < 1)")
        try:
            if delta["dim"] != self.dim or bool(delta["fit_intercept"]) != self.fit_intercept:
                raise ValueError("the delta has another dimension or intercept setting")
            items = dict(delta["llms"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a mixllm delta ({exc})") from exc
        zdim = self._zdim
        checked = {}
        for name, d in items.items():
            dA = _as_float_array(d["A"], f"delta A of {name!r}")
            db = _as_float_array(d["b"], f"delta b of {name!r}")
            if dA.shape != (zdim, zdim) or db.shape != (2, zdim) or not (
                    np.isfinite(dA).all() and np.isfinite(db).all()):
                raise ValueError(f"delta of {name!r} must be finite with A ({zdim}, {zdim}) "
                                 f"and b (2, {zdim})")
            checked[name] = (dA, db, _count_delta(d["n_obs"]))
        with self._membership:
            unknown = set(checked) - set(self._llms)
            if unknown:
                raise KeyError(f"unknown LLMs in the delta: {sorted(unknown)}")
            old = self._pool
            fresh = self._new_pool()
            for name in old.names():
                s = old.arm(name)
                llm = self._llms[name]
                A, b, n = s["A"], s["b"], int(s["n_obs"])
                if name in checked:
                    dA, db, dn = checked[name]
                    A, b, n = A + dA, b + db, max(0, n + dn)
                fresh.add_arm_state(name, np.ascontiguousarray((A + A.T) / 2), None,
                                    np.ascontiguousarray(b), None, n, 0, llm.input_price,
                                    llm.output_price)
                fresh.set_wait(name, float(s["wait"]))
            self._pool = fresh

    def merge(self, other: "Router", base: "Router | None" = None) -> "Router":
        """Add what ``other`` learned since ``base`` to this router (see :meth:`export_delta`):
        two routers fed disjoint parts of a stream from one start, merged, equal one router
        fed the whole stream. Returns ``self``."""
        if not isinstance(other, Router):
            raise ValueError(f"other must be a Router, got {type(other).__name__}")
        self.apply_delta(other.export_delta(base))
        return self

    # ------------------------------------------------------------------ persistence
    def _config(self) -> dict[str, Any]:
        return {
            "dim": self.dim, "alpha": self.alpha, "beta": self.beta, "tau": _jnum(self.tau),
            "ridge": self.ridge, "lam": _jnum(self.lam), "fit_intercept": self.fit_intercept,
            "cold_ridge": self.cold_ridge, "refactor_every": self.refactor_every,
            "precision": self.precision, "discount": self.discount,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Save the router to one file (``.npz`` arrays + JSON manifest, checksummed).

        The file is written to a temporary name in the same folder, flushed to disk and
        renamed over ``path``, so a crash leaves either the old file or the new one.
        """
        atomic_write(path, self.to_bytes())

    def to_bytes(self) -> bytes:
        """The content of a :meth:`save` file (what pickling a router stores, too)."""
        arrays: dict[str, np.ndarray] = {}
        llms = []
        engine_state: dict[str, Any] = {}
        with self._membership:
            pool = self._pool.copy()  # one consistent state, however long the writing takes
        # Every file holds each LLM's exact statistics A and b (any engine can rebuild from
        # them) and the engine's own state, restored bit for bit by the same engine.
        for k, name in enumerate(pool.names()):
            s = pool.arm(name)
            keys = ("A", "b") if self.engine == "native" else ("A", "Ainv", "b", "theta")
            for key in keys:
                arrays[f"{k}.{key}"] = s[key]
            llms.append({**asdict(self._llms[name]), "n_obs": int(s["n_obs"]),
                         "since_refactor": int(s["since_refactor"]), "wait": float(s["wait"])})
        if self.engine == "native":
            snap = pool.snapshot()
            # Version 3: the reference base and each arm's certified floor and ceiling (the
            # bound-and-refine decisions' derived state, kept so that a restored router reports
            # the same terms; a file without the ceilings has them certified again on load),
            # and each arm's scale (forgetting: A = scale (G + U^T U); 1 without, and in files
            # written before it, which a forgetting native router could not have written).
            engine_state = {"max_rank": int(pool.max_rank), "bases": [], "arms": [],
                            "reference": snap["reference"]}
            for i, b in enumerate(snap["bases"]):
                engine_state["bases"].append({"scalar": float(b["scalar"])})
                arrays[f"native.base{i}.A"] = b["A"]
                arrays[f"native.base{i}.R"] = b["R"]
            for k, a in enumerate(snap["arms"]):
                engine_state["arms"].append({"base": int(a["base"]), "rank": int(a["rank"]),
                                             "floor": float(a["floor"]),
                                             "floor_n": int(a["floor_n"]),
                                             "ceil": float(a["ceil"]),
                                             "ceil_cert": float(a["ceil_cert"]),
                                             "scale": float(a["scale"])})
                for key in _NATIVE_ARM_ARRAYS + ("theta",):
                    arrays[f"native.arm{k}.{key}"] = a[key]
        manifest = {
            "format": FORMAT, "version": FORMAT_VERSION, "config": self._config(),
            "llms": llms, "metadata": self.metadata, "engine": self.engine,
            "engine_state": engine_state,
        }
        return pack_checked(manifest, arrays)

    def __reduce__(self) -> tuple:
        # Pickled through the checked file format: what comes back is what load would give.
        return (_router_from_bytes, (self.to_bytes(), self.engine))

    @classmethod
    def load(cls, path: str | os.PathLike, engine: str = "native") -> "Router":
        """Load a router saved by :meth:`save`; raises :class:`StateError` if the file is bad."""
        raw = Path(path).read_bytes()  # FileNotFoundError passes through as it is
        return cls.from_bytes(raw, engine, source=path)

    @classmethod
    def from_bytes(cls, raw: bytes, engine: str = "native", *, source: Any = "<bytes>") -> "Router":
        """A router from :meth:`to_bytes`'s content; :class:`StateError` naming ``source`` if bad."""
        path = source
        manifest, data = unpack_checked(raw, path, "mixllm router file", error=StateError,
                                        format=FORMAT, versions=_READABLE_VERSIONS)
        version = manifest["version"]
        try:
            # The manifest is not checksummed: what it says must agree with the arrays before
            # anything is allocated from it (a huge dim would exhaust memory).
            cfg = manifest["config"]
            zdim = int(cfg["dim"]) + (1 if cfg["fit_intercept"] is True else 0)
            if "0.A" not in data or data["0.A"].shape != (zdim, zdim):
                raise ValueError(f"dim {cfg['dim']!r} does not match the stored arrays")
            llms = [LLM(**{f: e[f] for f in ("name", "input_price", "output_price", "ttft_s",
                                              "tokens_per_s", "slots")})
                    for e in manifest["llms"]]
            router = cls(llms, cfg["dim"], alpha=cfg["alpha"], beta=cfg["beta"],
                         tau=float(cfg["tau"]), ridge=cfg["ridge"], lam=float(cfg["lam"]),
                         fit_intercept=cfg["fit_intercept"], cold_ridge=cfg["cold_ridge"],
                         refactor_every=cfg["refactor_every"], engine=engine,
                         precision=_loaded_precision(cfg.get("precision", "float64"), engine),
                         discount=cfg.get("discount", 1.0))
            saved_engine = manifest.get("engine", "reference" if version == 1 else None)
            if engine == "native" and saved_engine == "native":
                pool = _native_pool_from(router, manifest, llms, data)
            else:
                # Another engine's file: rebuild from the exact statistics (the reference
                # engine reuses its own saved inverse when it has one).
                pool = router._new_pool()
                for k, (llm, e) in enumerate(zip(llms, manifest["llms"])):
                    own = engine == "reference" and f"{k}.Ainv" in data
                    pool.add_arm_state(llm.name, data[f"{k}.A"], data[f"{k}.Ainv"] if own else None,
                                       data[f"{k}.b"], data[f"{k}.theta"] if own else None,
                                       _count(e["n_obs"]), _count(e["since_refactor"]),
                                       llm.input_price, llm.output_price)
            for llm, e in zip(llms, manifest["llms"]):
                pool.set_wait(llm.name, _check_scalar("wait", e.get("wait", 0.0), low=0.0))
            metadata = manifest.get("metadata", {})
            if not isinstance(metadata, dict):
                raise ValueError("metadata must be an object")
        except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                OverflowError) as exc:
            raise StateError(f"{path}: invalid router state ({exc})") from exc
        if engine == "native":
            pool.float32 = router.precision == "float32"
        router._pool = pool
        router.metadata = dict(metadata)
        return router


_NATIVE_ARM_ARRAYS = ("U", "W", "Cinv", "b", "beta", "omega")


def _router_from_bytes(raw: bytes, engine: str) -> Router:
    return Router.from_bytes(raw, engine, source="<pickled router>")


def _native_pool_from(router: Router, manifest: dict, llms: list[LLM], data: dict):
    """The native engine's state exactly as saved (same bits, so same decisions)."""
    es = manifest["engine_state"]
    max_rank = int(es["max_rank"])
    if not 1 <= max_rank <= max(128, router._zdim):
        raise ValueError(f"max_rank {max_rank} is out of range")
    state = {
        "bases": [{"scalar": float(b["scalar"]), "A": data[f"native.base{i}.A"],
                   "R": data[f"native.base{i}.R"]} for i, b in enumerate(es["bases"])],
        "arms": [],
        "reference": None if es.get("reference") is None else _count(es["reference"]),
        # Forgetting: the discount and its ridge, from the configuration (the arms' scales below).
        "discount": router.discount, "prior": router.ridge,
    }
    for k, (llm, e, a) in enumerate(zip(llms, manifest["llms"], es["arms"])):
        arm = {key: data[f"native.arm{k}.{key}"] for key in _NATIVE_ARM_ARRAYS}
        arm.update(name=llm.name, base=_count(a["base"]), rank=_count(a["rank"]),
                   input_price=llm.input_price, output_price=llm.output_price,
                   wait=_check_scalar("wait", e.get("wait", 0.0), low=0.0),
                   n_obs=_count(e["n_obs"]), since_refactor=_count(e["since_refactor"]))
        if "floor" in a:  # version 3: the decisions' derived state, as it was
            arm.update(floor=_check_scalar("floor", a["floor"], low=0.0),
                       floor_n=_count(a.get("floor_n", 0)),
                       theta=data[f"native.arm{k}.theta"])
        if "ceil" in a:
            arm.update(ceil=_check_scalar("ceil", a["ceil"], low=0.0),
                       ceil_cert=_check_scalar("ceil_cert", a.get("ceil_cert", 0.0), low=0.0))
        if "scale" in a:  # a forgetting LLM's scale (files before it hold none: 1)
            arm.update(scale=_check_scalar("scale", a["scale"], low=0.0, strict=True))
        state["arms"].append(arm)
    if len(state["arms"]) != len(llms):
        raise ValueError("engine state does not match the pool")
    cfg = manifest["config"]
    return _core.Pool.from_snapshot(router._zdim, 2, int(cfg["refactor_every"]),
                                    int(es["max_rank"]), state)


def _count_delta(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"delta n_obs must be an integer, got {v!r}")
    return int(v)


def _check_precision(v: Any, engine: str) -> None:
    if v not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {v!r}")
    if v == "float32" and engine != "native":
        raise ValueError("precision='float32' needs the native engine")


def _check_discount(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not 0.0 < float(v) <= 1.0:
        raise ValueError(f"discount must be a number in (0, 1], got {v!r}")
    return float(v)


def _loaded_precision(v: Any, engine: str) -> str:
    """A saved precision setting (files without one are float64); the reference engine,
    which has no float32 scoring, loads any file as float64."""
    if v not in ("float64", "float32"):
        raise ValueError(f"precision must be 'float64' or 'float32', got {v!r}")
    return v if engine == "native" else "float64"


def _count(v: Any) -> int:
    """A saved counter or index: an int in [0, 2**63) (what the engine's uint64 can hold)."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**63:
        raise ValueError(f"expected an integer >= 0, got {v!r}")
    return v


def _jnum(v: float) -> float | str:
    """JSON has no infinity: store it as a string that float() reads back."""
    return "inf" if math.isinf(v) else v
