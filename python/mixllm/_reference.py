"""Float64 NumPy implementation of every native kernel and of the routing pool.

This module is the executable specification of :mod:`mixllm._core`: the tests hold every SIMD
backend and the whole route/feedback cycle to it. It is written for clarity, not speed, and is
also selectable as a routing engine (``Router(..., engine="reference")``).

Per LLM ``k`` (formulas shared with ``cpp/include/mixllm/pool.hpp``)::

    A_k     = ridge * I + sum x x^T
    Ainv_k  = A_k^{-1}                      (Sherman-Morrison between refactorisations)
    b_k     = ridge * theta0_k + sum x y^T  (T x d)
    theta_k = Ainv_k b_k                    (T x d)

and the score of LLM ``k`` for a query ``x`` with ``n_in`` input tokens::

    q_k     = theta_k[0] . x
    len_k   = expm1(clip(theta_k[1] . x, 0, MAX_LOG_TOKENS))
    cost_k  = (n_in * input_price_k + len_k * output_price_k) * 1e-6
    bonus_k = sqrt(x^T Ainv_k x)
    pen_k   = expm1(wait_k / tau)
    score_k = q_k - cost_k / lam + alpha * bonus_k - beta * pen_k
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

QUALITY = 0
LOG_TOKENS = 1
N_TERMS = 6
MAX_LOG_TOKENS = 20.0


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum_i a_i b_i``."""
    return float(np.dot(np.asarray(a, np.float64), np.asarray(b, np.float64)))


def gemv(M: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``M x``."""
    return np.asarray(M, np.float64) @ np.asarray(x, np.float64)


def quad(M: np.ndarray, x: np.ndarray) -> float:
    """``x^T M x``."""
    x = np.asarray(x, np.float64)
    return float(x @ (np.asarray(M, np.float64) @ x))


def syr(M: np.ndarray, u: np.ndarray, c: float) -> np.ndarray:
    """``M + c u u^T`` (a new array)."""
    u = np.asarray(u, np.float64)
    return np.asarray(M, np.float64) + c * np.outer(u, u)


def quad_batch(M: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``out_b = x_b^T M x_b`` for every row of ``X``."""
    X = np.asarray(X, np.float64)
    return np.einsum("bi,ij,bj->b", X, np.asarray(M, np.float64), X)


def spd_inverse(A: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix through its Cholesky factor."""
    L = np.linalg.cholesky(np.asarray(A, np.float64))
    Linv = np.linalg.solve(L, np.eye(A.shape[0]))
    return Linv.T @ Linv


@dataclass
class _Arm:
    name: str
    A: np.ndarray
    Ainv: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    input_price: float
    output_price: float
    wait: float = 0.0
    n_obs: int = 0
    since_refactor: int = 0

    def refactor(self) -> None:
        try:
            Ainv = spd_inverse(self.A)
        except np.linalg.LinAlgError as exc:
            raise ValueError(
                f"design matrix of '{self.name}' is not positive definite; increase ridge"
            ) from exc
        self.Ainv = Ainv
        self.theta = self.b @ Ainv.T
        self.since_refactor = 0


@dataclass
class RefPool:
    """Pure-NumPy twin of :class:`mixllm._core.Pool` (same methods, same results)."""

    dim: int
    n_targets: int = 2
    refactor_every: int = 4096
    _arms: list[_Arm] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        if self.dim <= 0:
            raise ValueError("dim must be positive")
        if self.n_targets < 2:
            raise ValueError("n_targets must be >= 2 (quality, log tokens)")
        if self.refactor_every <= 0:
            raise ValueError("refactor_every must be positive")

    def __len__(self) -> int:
        return len(self._arms)

    def names(self) -> list[str]:
        with self._lock:
            return [a.name for a in self._arms]

    def _index(self, name: str) -> int:
        for k, a in enumerate(self._arms):
            if a.name == name:
                return k
        raise KeyError(f"unknown LLM: '{name}'")

    def _push(self, arm: _Arm) -> None:
        with self._lock:
            if any(a.name == arm.name for a in self._arms):
                raise ValueError(f"LLM already in the pool: '{arm.name}'")
            self._arms.append(arm)

    def add_arm(self, name, ridge, theta0, input_price, output_price) -> None:
        if not (ridge > 0 and math.isfinite(ridge)):
            raise ValueError("ridge must be > 0")
        d, T = self.dim, self.n_targets
        theta = np.array(theta0, dtype=np.float64).reshape(T, d)
        self._push(
            _Arm(name, ridge * np.eye(d), np.eye(d) / ridge, ridge * theta, theta,
                 float(input_price), float(output_price))
        )

    def add_arm_state(self, name, A, Ainv, b, theta, n_obs, since_refactor, input_price,
                      output_price) -> None:
        if (Ainv is None) != (theta is None):
            raise ValueError("give both Ainv and theta, or neither")
        arm = _Arm(name, np.array(A, np.float64), None, np.array(b, np.float64), None,
                   float(input_price), float(output_price), 0.0, int(n_obs), 0)
        if Ainv is None:
            arm.refactor()
        else:
            arm.Ainv = np.array(Ainv, np.float64)
            arm.theta = np.array(theta, np.float64)
            arm.since_refactor = int(since_refactor)
        self._push(arm)

    def remove_arm(self, name: str) -> None:
        with self._lock:
            del self._arms[self._index(name)]

    def set_prices(self, name, input_price, output_price) -> None:
        with self._lock:
            a = self._arms[self._index(name)]
            a.input_price, a.output_price = float(input_price), float(output_price)

    def set_wait(self, name, seconds) -> None:
        with self._lock:
            self._arms[self._index(name)].wait = float(seconds)

    def update(self, name, x, y) -> None:
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        with self._lock:
            a = self._arms[self._index(name)]
            a.A = a.A + np.outer(x, x)
            a.b = a.b + np.outer(y, x)
            u = a.Ainv @ x
            denom = 1.0 + x @ u
            a.Ainv = a.Ainv - np.outer(u, u) / denom
            err = (y - a.theta @ x) / denom
            a.theta = a.theta + np.outer(err, u)
            a.n_obs += 1
            a.since_refactor += 1
            if a.since_refactor >= self.refactor_every:
                a.refactor()

    def update_batch(self, name, X, Y) -> None:
        X = np.asarray(X, np.float64)
        Y = np.asarray(Y, np.float64)
        with self._lock:
            a = self._arms[self._index(name)]
            nxt = _Arm(a.name, a.A + X.T @ X, a.Ainv, a.b + Y.T @ X, a.theta, a.input_price,
                       a.output_price, a.wait, a.n_obs + len(X), a.since_refactor)
            nxt.refactor()
            self._arms[self._index(name)] = nxt

    def refactor(self, name: str | None = None) -> None:
        with self._lock:
            for a in self._arms if name is None else [self._arms[self._index(name)]]:
                a.refactor()

    def predict(self, X):
        X = np.asarray(X, np.float64)
        with self._lock:
            means = np.stack([X @ a.theta.T for a in self._arms], axis=1)
            bonus = np.stack(
                [np.sqrt(np.maximum(quad_batch(a.Ainv, X), 0.0)) for a in self._arms], axis=1
            )
            return means, bonus, [a.name for a in self._arms]

    def score(self, X, input_tokens, inv_lam, alpha, beta, tau, with_terms=False):
        X = np.asarray(X, np.float64)
        n_in = np.asarray(input_tokens, np.float64)
        with self._lock:
            if not self._arms:
                raise ValueError("the pool is empty")
            means, bonus, names = self.predict(X)
            q = means[:, :, QUALITY]
            out_tok = np.expm1(np.clip(means[:, :, LOG_TOKENS], 0.0, MAX_LOG_TOKENS))
            pin = np.array([a.input_price for a in self._arms])
            pout = np.array([a.output_price for a in self._arms])
            cost = (n_in[:, None] * pin[None, :] + out_tok * pout[None, :]) * 1e-6
            if tau > 0 and math.isfinite(tau):
                pen = np.expm1(np.array([max(a.wait, 0.0) for a in self._arms]) / tau)
            else:
                pen = np.zeros(len(self._arms))
            pen = np.broadcast_to(pen, q.shape)
            with np.errstate(invalid="ignore"):
                score = q - cost * inv_lam + alpha * bonus - (beta * pen if beta != 0 else 0.0)
            choice = np.argmax(np.where(np.isnan(score), -np.inf, score), axis=1).astype(np.int64)
            terms = np.stack([q, out_tok, cost, bonus, pen, score], axis=2) if with_terms else None
            return choice, terms, names

    def arm(self, name: str) -> dict:
        with self._lock:
            a = self._arms[self._index(name)]
            return {
                "name": a.name, "A": a.A.copy(), "Ainv": a.Ainv.copy(), "b": a.b.copy(),
                "theta": a.theta.copy(), "input_price": a.input_price,
                "output_price": a.output_price, "wait": a.wait, "n_obs": a.n_obs,
                "since_refactor": a.since_refactor,
            }
