"""Float64 NumPy implementation of every native kernel and of the routing pool.

This module is the executable specification of :mod:`mixllm._core`: the tests hold every SIMD
backend and the whole route/feedback cycle to it. It is written for clarity, not speed, and is
also selectable as a routing engine (``Router(..., engine="reference")``).

Per LLM ``k`` (formulas shared with ``cpp/include/mixllm/pool.hpp``)::

    A_k     = ridge * I + sum x x^T
    Ainv_k  = A_k^{-1}                      (Sherman-Morrison between refactorisations)
    b_k     = ridge * theta0_k + sum x y^T  (T x d)
    theta_k = Ainv_k b_k                    (T x d)

With forgetting (:meth:`RefPool.set_discount`, ``gamma < 1``; see :mod:`mixllm.router`), an
online observation of LLM ``k`` is, with ``j = n_obs mod d`` and ``rho = (1 - gamma) ridge d``::

    A_k <- gamma A_k + w x x^T + rho e_j e_j^T,   b_k <- gamma b_k + w x y^T

(``Ainv`` scaled by ``1 / gamma``, then two Sherman-Morrison steps; ``theta`` is unchanged by
the common scaling of ``A`` and ``b``.)

and the score of LLM ``k`` for a query ``x`` with ``n_in`` input tokens::

    q_k     = theta_k[0] . x
    len_k   = expm1(clip(theta_k[1] . x, 0, MAX_LOG_TOKENS))
    cost_k  = (n_in * input_price_k + len_k * output_price_k) * 1e-6
    bonus_k = sqrt(x^T Ainv_k x)
    pen_k   = expm1(wait_k / tau)
    score_k = q_k - cost_k / lam + alpha * bonus_k - beta * pen_k

The Router's calls take the raw query ``x`` (``z`` above is ``x`` with a trailing 1 when
``intercept`` is set) and the raw observations, exactly as the core's ``model.hpp`` defines
them: :meth:`RefPool.fit_observed`, :meth:`RefPool.observe_many`, :meth:`RefPool.observe`,
:meth:`RefPool.predict_many`, :meth:`RefPool.route_one` and :meth:`RefPool.route_many` append
the intercept, take the target ``log1p(output_tokens)`` (NaN = not observed) and turn the
predicted length back into tokens (:func:`predicted_tokens`) here, with the core's checks and
messages; ``fit``, ``update``, ``update_batch``, ``predict`` and ``score`` work on ``z`` and
``y`` directly.

The native core computes the same quantities from a different representation (a shared
inverse Cholesky factor plus low-rank Woodbury corrections per LLM, see
``cpp/include/mixllm/pool.hpp``); this module keeps the plain dense one on purpose, so that
the two meet only in the maths. Packed lower-triangular matrices (``R`` below) are stored by
rows: row ``i`` holds ``R[i, :i+1]`` at offset ``i (i + 1) / 2``.
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass, field

import numpy as np

QUALITY = 0
LOG_TOKENS = 1
N_TERMS = 6
MAX_LOG_TOKENS = 20.0
# The largest weighted squared norm w |z|^2 of an observed row: past it the entries of A, or
# their squares in a factorisation, come close to overflowing (the core refuses the same rows).
MAX_ROW_NORM2 = 1e150
_VERSIONS = itertools.count(1)  # membership versions, unique across pools


def predicted_tokens(log_tokens: np.ndarray) -> np.ndarray:
    """The output tokens a predicted ``log1p`` length stands for: ``expm1(clip(., 0, 20))``."""
    return np.expm1(np.clip(log_tokens, 0.0, MAX_LOG_TOKENS))


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum_i a_i b_i``."""
    return float(np.dot(np.asarray(a, np.float64), np.asarray(b, np.float64)))


def syr(M: np.ndarray, u: np.ndarray, c: float) -> np.ndarray:
    """``M + c u u^T`` (a new array)."""
    u = np.asarray(u, np.float64)
    return np.asarray(M, np.float64) + c * np.outer(u, u)


def gemv_rect(M: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``M x`` for a rectangular ``M`` (m, n)."""
    return np.asarray(M, np.float64) @ np.asarray(x, np.float64)


def pack_lower(L: np.ndarray) -> np.ndarray:
    """The lower triangle of a square matrix, packed by rows."""
    L = np.asarray(L, np.float64)
    return L[np.tril_indices(L.shape[0])]


def unpack_lower(Rp: np.ndarray, n: int) -> np.ndarray:
    """The dense lower-triangular (n, n) matrix of a packed one."""
    R = np.zeros((n, n))
    R[np.tril_indices(n)] = np.asarray(Rp, np.float64)
    return R


PANEL = 8


def pack_panels(Rp: np.ndarray, n: int) -> np.ndarray:
    """A packed lower triangle in the panel layout of the native hot path: panels of ``PANEL``
    rows; panel ``p`` stores its first ``min(PANEL (p + 1), n)`` columns, column-interleaved
    (``PANEL`` consecutive values per column), zero above the diagonal and past row ``n``."""
    R = unpack_lower(Rp, n)
    out = []
    for p in range(-(-n // PANEL)):
        rows = np.zeros((PANEL, min(PANEL * (p + 1), n)))
        block = R[PANEL * p:PANEL * (p + 1), :rows.shape[1]]
        rows[:block.shape[0]] = block
        out.append(rows.T.ravel())
    return np.concatenate(out) if out else np.zeros(0)


def _panels(P: np.ndarray, n: int, dtype: type | None = None):
    """The panels of an ``n x n`` ``R`` in the panel layout, in order: for panel ``p``, its
    first row ``PANEL p``, the rows of ``R`` it holds (``PANEL``, fewer in the last) and its
    block ``(PANEL, c)``, ``R[PANEL p:PANEL (p + 1), :c]`` zero-padded past row ``n``."""
    off = 0
    for p in range(-(-n // PANEL)):
        c = min(PANEL * (p + 1), n)
        block = np.asarray(P[off:off + PANEL * c], dtype).reshape(c, PANEL).T
        yield PANEL * p, min(PANEL, n - PANEL * p), block
        off += PANEL * c


def panel_mv(P: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``R x`` for ``R`` in the panel layout (see :func:`pack_panels`)."""
    x = np.asarray(x, np.float64)
    y = np.zeros(x.shape[0])
    for r0, rows, block in _panels(P, x.shape[0]):
        y[r0:r0 + rows] = (block @ x[:block.shape[1]])[:rows]
    return y


def panel_tmv(P: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``R^T x`` for ``R`` in the panel layout (an update's step of theta)."""
    x = np.asarray(x, np.float64)
    y = np.zeros(x.shape[0])
    for r0, rows, block in _panels(P, x.shape[0]):
        y[:block.shape[1]] += block[:rows].T @ x[r0:r0 + rows]
    return y


def panel_mm(P: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``R x_b`` for every row of ``X``, ``R`` in the panel layout."""
    return np.array([panel_mv(P, x) for x in np.asarray(X, np.float64)]).reshape(np.shape(X))


def panels_to_f32(P: np.ndarray) -> np.ndarray:
    """The panels rounded to nearest float32: the triangle a ``precision="float32"`` pool's
    scoring reads."""
    return np.asarray(P, np.float64).astype(np.float32)


def panel_mv_f32(P32: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``R x`` on float32 panels, in the float32 decision's arithmetic (every native backend
    computes exactly this; the error bound is in ``kernels.hpp``): ``x`` rounded to float32,
    float32 products, each block of 8 columns ``j .. j+7`` summed in float32 as
    ``((p0+p4)+(p2+p6)) + ((p1+p5)+(p3+p7))`` (zeros past the last column), the block sums
    widened and added in float64 in column order."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    if n == 0:
        return np.zeros(0)
    npan = -(-n // PANEL)
    R = np.zeros((PANEL * npan, PANEL * npan), np.float32)  # dense, zero-padded to whole blocks
    for r0, _, block in _panels(P32, n, np.float32):
        R[r0:r0 + PANEL, :block.shape[1]] = block
    x32 = np.zeros(PANEL * npan, np.float32)
    x32[:n] = x.astype(np.float32)
    q = (R * x32).reshape(PANEL * npan, npan, PANEL)  # float32 products, by block of columns
    s = (((q[..., 0] + q[..., 4]) + (q[..., 2] + q[..., 6]))
         + ((q[..., 1] + q[..., 5]) + (q[..., 3] + q[..., 7])))
    # cumsum adds left to right, as the kernels do; blocks past a panel's columns add zeros
    return np.cumsum(s.astype(np.float64), axis=1)[:n, -1]


def panel_mm_f32(P32: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``R x_b`` for every row of ``X`` on float32 panels, each entry widened exactly to float64
    with float64 sums (the native batch kernel's blocks of queries; the ones it leaves over go
    through :func:`panel_mv_f32`, within that function's bound of this)."""
    return panel_mm(np.asarray(P32, np.float32).astype(np.float64), X)


def embed_pool(T: np.ndarray, w: np.ndarray, ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Static text embeddings: text ``b`` owns ``ids[offsets[b]:offsets[b + 1]]``; its vector is

    ``s_b = sum_i w[ids_i] T[ids_i]`` divided by ``max(||s_b||, 1e-12)`` (float64 here; the
    native kernel accumulates in float32). A text with no tokens gets the zero vector.
    """
    T = np.asarray(T, np.float64)
    w = np.asarray(w, np.float64)
    out = np.zeros((len(offsets) - 1, T.shape[1]))
    for b in range(len(offsets) - 1):
        rows = np.asarray(ids[offsets[b]:offsets[b + 1]], dtype=np.int64)
        s = (w[rows, None] * T[rows]).sum(axis=0)
        out[b] = s / max(float(np.linalg.norm(s)), 1e-12)
    return out


def inverse_cholesky_factor(A: np.ndarray) -> np.ndarray:
    """Packed ``R = L^{-1}`` for ``A = L L^T``, so that ``A^{-1} = R^T R``."""
    L = np.linalg.cholesky(np.asarray(A, np.float64))
    return pack_lower(np.linalg.solve(L, np.eye(A.shape[0])))


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

    _version: int = 0
    discount: float = 1.0
    prior: float = 1.0

    def set_discount(self, gamma: float, ridge: float) -> None:
        """Forgetting factor of online updates (1: none) and the ridge its prior keeps."""
        if not (0.0 < gamma <= 1.0) or not (ridge > 0 and math.isfinite(ridge)):
            raise ValueError("discount must be in (0, 1] and ridge > 0")
        with self._lock:
            self.discount, self.prior = float(gamma), float(ridge)

    def __len__(self) -> int:
        return len(self._arms)

    def version(self) -> int:
        """Membership version: changes whenever an LLM is added or removed."""
        return self._version

    def n_obs(self) -> list[int]:
        with self._lock:
            return [a.n_obs for a in self._arms]

    def theta(self, name: str) -> np.ndarray:
        with self._lock:
            return self._arms[self._index(name)].theta.copy()

    def copy(self) -> "RefPool":
        with self._lock:
            other = RefPool(self.dim, self.n_targets, self.refactor_every)
            other._arms = [_Arm(a.name, a.A.copy(), a.Ainv.copy(), a.b.copy(), a.theta.copy(),
                                a.input_price, a.output_price, a.wait, a.n_obs, a.since_refactor)
                           for a in self._arms]
            other._version = self._version
            other.discount, other.prior = self.discount, self.prior
            return other

    def fit(self, names, input_prices, output_prices, ridge, Z, Y) -> None:
        """Offline training of an empty pool: ``Y`` (n, K, T), NaN where not observed."""
        Z = np.asarray(Z, np.float64)
        Y = np.asarray(Y, np.float64)
        if self._arms:
            raise ValueError("fit needs an empty pool")
        eye = ridge * np.eye(self.dim)
        for k, name in enumerate(names):
            seen = np.isfinite(Y[:, k, :]).all(axis=1)
            Zk, Yk = Z[seen], Y[seen, k, :]
            self.add_arm_state(name, eye + Zk.T @ Zk, None, Yk.T @ Zk, None, int(seen.sum()), 0,
                               input_prices[k], output_prices[k])

    def _query(self, x, intercept, name="x"):
        """The native seam's checks: x (dim - intercept,), finite; z with a trailing 1."""
        want = self.dim - 1 if intercept else self.dim
        x = np.asarray(x, np.float64)
        if x.shape != (want,):
            raise ValueError(f"{name} must have shape ({want},), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf")
        with np.errstate(over="ignore"):
            if not math.isfinite(float(x @ x)):
                raise ValueError(f"{name} is too large: its squared norm overflows")
        return np.append(x, 1.0) if intercept else x.copy()

    def _queries(self, X, intercept, name="X"):
        """The native seam's checks of a batch: X (n, dim - intercept), finite rows whose
        squared norms do not overflow; Z with a trailing column of ones."""
        want = self.dim - 1 if intercept else self.dim
        X = np.asarray(X, np.float64)
        if X.ndim != 2 or X.shape[1] != want:
            raise ValueError(f"{name} must have shape (n, {want}), got {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or inf")
        with np.errstate(over="ignore"):
            if not np.isfinite(np.einsum("ij,ij->i", X, X)).all():
                raise ValueError(f"{name} is too large: a row's squared norm overflows")
        return np.hstack([X, np.ones((X.shape[0], 1))]) if intercept else X

    @staticmethod
    def _targets(quality, output_tokens, n, K):
        """The targets of (n, K) observations, NaN = not observed: (n, K, 2) quality and
        ``log1p(output_tokens)`` (model.hpp's targets_rows)."""
        q = np.asarray(quality, np.float64)
        t = np.asarray(output_tokens, np.float64)
        for label, a in (("quality", q), ("output_tokens", t)):
            if a.shape != (n, K):
                raise ValueError(f"{label} must have shape ({n}, {K}), got {a.shape}")
        if np.isinf(q).any() or np.isinf(t).any():
            raise ValueError("quality and output_tokens must not contain inf (NaN = not observed)")
        if (t[np.isfinite(t)] < 0).any():
            raise ValueError("output_tokens must be >= 0")
        return np.stack([q, np.log1p(t)], axis=2)

    def fit_observed(self, names, input_prices, output_prices, ridge, X, quality,
                     output_tokens, intercept) -> None:
        """The Router's fit: raw queries and (n, K) observations, NaN = not observed; the
        intercept and ``log1p(output_tokens)`` here, then :meth:`fit`."""
        Z = self._queries(X, intercept)
        Y = self._targets(quality, output_tokens, len(Z), len(names))
        self.fit(names, input_prices, output_prices, ridge, Z, Y)

    def observe_many(self, names, X, quality, output_tokens, intercept) -> None:
        """The Router's partial_fit: as :meth:`fit_observed`, each LLM's observed rows added
        by one :meth:`update_batch`."""
        Z = self._queries(X, intercept)
        Y = self._targets(quality, output_tokens, len(Z), len(names))
        for k, name in enumerate(names):
            seen = np.isfinite(Y[:, k, :]).all(axis=1)
            if seen.any():
                self.update_batch(name, Z[seen], Y[seen, k, :])

    def predict_many(self, X, intercept):
        """The Router's predict: ``(quality, output_tokens, bonus)``, each (n, K), and the
        names."""
        means, bonus, names = self.predict(self._queries(X, intercept))
        return means[:, :, QUALITY], predicted_tokens(means[:, :, LOG_TOKENS]), bonus, names

    def route_many(self, X, input_tokens, inv_lam, alpha, beta, tau, intercept):
        """The Router's batch decision: the native seam's checks, then ``score``'s choices."""
        Z = self._queries(X, intercept)
        n_in = np.asarray(input_tokens, np.float64)
        if n_in.shape not in ((), (Z.shape[0],)):
            raise ValueError(f"input_tokens must be a number or have shape ({Z.shape[0]},), "
                             f"got {n_in.shape}")
        if not np.isfinite(n_in).all() or (n_in < 0).any():
            raise ValueError("input_tokens must be finite and >= 0")
        choice, _, _ = self.score(Z, np.broadcast_to(n_in, (Z.shape[0],)), inv_lam, alpha, beta,
                                  tau)
        return choice

    def route_one(self, x, input_tokens, inv_lam, alpha, beta, tau, intercept):
        """One decision: the Decision's tuple ``(llm, index, names, terms (6, K) read-only)``."""
        z = self._query(x, intercept)
        if not (math.isfinite(input_tokens) and input_tokens >= 0):
            raise ValueError("input_tokens must be finite and >= 0")
        with self._lock:
            choice, terms, names = self.score(z[None, :], np.array([float(input_tokens)]),
                                              inv_lam, alpha, beta, tau, True)
        names = tuple(names)
        out = np.ascontiguousarray(terms[0].T)
        out.flags.writeable = False
        k = int(choice[0])
        return names[k], k, names, out

    def observe(self, name, x, quality, output_tokens, weight, intercept) -> None:
        """The Router's feedback: checks, intercept and ``log1p(output_tokens)``, then update."""
        z = self._query(x, intercept)
        for label, v in (("quality", quality), ("output_tokens", output_tokens),
                         ("weight", weight)):
            if not math.isfinite(v):
                raise ValueError(f"{label} must be finite, got {v}")
        if output_tokens < 0:
            raise ValueError(f"output_tokens must be >= 0.0, got {output_tokens}")
        if not weight > 0:
            raise ValueError(f"weight must be > 0.0, got {weight}")
        self.update(name, z, np.array([quality, math.log1p(output_tokens)]), weight)

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
            self._version = next(_VERSIONS)

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
            self._version = next(_VERSIONS)

    def set_prices(self, name, input_price, output_price) -> None:
        with self._lock:
            a = self._arms[self._index(name)]
            a.input_price, a.output_price = float(input_price), float(output_price)

    def set_wait(self, name, seconds) -> None:
        with self._lock:
            self._arms[self._index(name)].wait = float(seconds)

    def update(self, name, x, y, weight=1.0) -> None:
        if not (weight > 0 and math.isfinite(weight)):
            raise ValueError("weight must be finite and > 0")
        # A weighted rank-1 update is the plain one on sqrt(w) x and sqrt(w) y.
        s = math.sqrt(weight)
        x = s * np.asarray(x, np.float64)
        y = s * np.asarray(y, np.float64)
        if not float(x @ x) <= MAX_ROW_NORM2:
            raise ValueError(f"update of '{name}' is too large: its weighted squared norm "
                             f"exceeds {MAX_ROW_NORM2:g} (rescale the embedding or the weight)")
        with self._lock:
            a = self._arms[self._index(name)]
            g = self.discount
            if g < 1.0:
                a.A = g * a.A
                a.b = g * a.b
                a.Ainv = a.Ainv / g
            self._rank1(a, x, y)
            if g < 1.0:
                e = np.zeros(self.dim)
                e[a.n_obs % self.dim] = math.sqrt((1.0 - g) * self.prior * self.dim)
                self._rank1(a, e, np.zeros_like(y))
            a.n_obs += 1
            a.since_refactor += 1
            if a.since_refactor >= self.refactor_every:
                a.refactor()

    @staticmethod
    def _rank1(a: _Arm, x: np.ndarray, y: np.ndarray) -> None:
        """A += x x^T, b += y x^T, with Ainv and theta by Sherman-Morrison."""
        a.A = a.A + np.outer(x, x)
        a.b = a.b + np.outer(y, x)
        u = a.Ainv @ x
        denom = 1.0 + x @ u
        a.Ainv = a.Ainv - np.outer(u, u) / denom
        err = (y - a.theta @ x) / denom
        a.theta = a.theta + np.outer(err, u)

    def update_batch(self, name, X, Y) -> None:
        X = np.asarray(X, np.float64)
        Y = np.asarray(Y, np.float64)
        if self.discount < 1.0:  # forgetting is defined observation by observation
            with self._lock:
                for x, y in zip(X, Y):
                    self.update(name, x, y)
                self.refactor(name)
            return
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
                [np.sqrt(np.maximum(np.einsum("bi,ij,bj->b", X, a.Ainv, X), 0.0))
                 for a in self._arms], axis=1
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
            out_tok = predicted_tokens(means[:, :, LOG_TOKENS])
            pin = np.array([a.input_price for a in self._arms])
            pout = np.array([a.output_price for a in self._arms])
            cost = (n_in[:, None] * pin[None, :] + out_tok * pout[None, :]) * 1e-6
            if tau > 0 and math.isfinite(tau):
                pen = np.expm1(np.array([max(a.wait, 0.0) for a in self._arms]) / tau)
            else:
                pen = np.zeros(len(self._arms))
            pen = np.broadcast_to(pen, q.shape)
            with np.errstate(invalid="ignore"):
                # lam = inf ignores the cost even when it overflows (inf * 0 would be NaN).
                score = q - (cost * inv_lam if inv_lam != 0 else 0.0) + alpha * bonus \
                    - (beta * pen if beta != 0 else 0.0)
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
