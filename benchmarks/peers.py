"""Adapters that put peer contextual-bandit libraries beside mixllm in ``mixllm bench``.

Each adapter wraps one optional library (the ``bench`` extra: ``pip install ".[bench]"``)
behind the same small protocol, so that :func:`mixllm.bench.run` can fit it on the data
mixllm is fitted on and time it on the same queries:

``name``, ``version``, ``setup``
    JSON key, library version, and a one-line account of the configuration.
``fit(Z, rewards)``
    Full-information warm start: ``Z`` is ``(n, d)`` *with* the intercept column already in
    it; ``rewards`` is ``(n, K)``, every arm's reward on every row.
``decide(z) -> int``
    The library's decision for one query (with its own exploration).
``update(z, arm, reward)``
    Learn one observation: the reward of ``arm`` on ``z``.
``decide_batch(Z) -> ndarray`` or ``None`` when the library has no batch call.
``greedy(Z) -> ndarray``
    The arm each row would get from the library's deterministic rule (its UCB, or the argmax
    of its probabilities), for the agreement figure.
``close()``
    Free native resources.

None of them runs mixllm's algorithm, and the figures compare libraries, not identical maths:

- **What is learned.** mixllm keeps, per LLM, a ridge regression with *two* targets over one
  design matrix (quality and ``log1p`` output tokens) and combines them with the prices and
  ``lam`` at decision time, so ``lam`` and prices can change per query. The peers are
  single-reward bandits: they learn the scalar reward ``quality - cost_usd / lam`` with
  ``lam`` fixed when the rewards are computed (here the benchmark's ``lam = 0.01`` and
  ``n_in = 100`` input tokens). Their work per call is for one target, mixllm's for two.
- **State.** mixllm holds a shared factorised base plus low-rank per-LLM corrections; the
  LinUCB peers hold a dense ``d x d`` inverse per arm; Vowpal Wabbit holds hashed weights
  and no covariance at all.
- **Input.** The peers take NumPy rows (Vowpal Wabbit: text lines formatted from them, which
  is part of its measured time, as it would be for a user).
"""

from __future__ import annotations

import importlib
import warnings
from importlib import metadata
from typing import Any, Callable

import numpy as np

__all__ = ["PEER_NAMES", "ContextualBanditsPeer", "MABWiserPeer", "VowpalWabbitPeer",
           "load_peers"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # imported from a source tree without metadata
        return "unknown"


def _quiet_import(module: str) -> Any:
    """``module`` imported with its import-time warnings silenced (ImportError when absent)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(module)


class VowpalWabbitPeer:
    """Vowpal Wabbit, ``--cb_explore_adf --squarecb``: a contextual bandit by reduction to
    online regression (SquareCB, Foster & Rakhlin 2020).

    Setup: one multi-line ADF example per query, ``shared |s 0:z_0 ... (d-1):z_{d-1}`` and one
    action line ``|a a<j>`` per arm, with ``-q sa`` so every arm gets its own linear model of
    the context (plus per-arm bias); ``-b 20`` hash bits (``K d`` interaction weights fit
    without collisions at the sizes benchmarked). VW minimises cost, so the label is ``-reward``
    with probability ``1/K`` (a uniform logging policy: the full-information warm start feeds
    every arm of every row). Differences from mixllm: the regressor is VW's online SGD
    (adaptive, normalised updates), not an exact ridge solution; exploration is SquareCB's
    probability mass function over the predicted rewards, not a confidence bonus, and
    ``decide`` samples from it (``greedy`` takes its argmax); there is no covariance, so an
    update costs ``O(K d)``. VW's Python API takes text, so the time of formatting the query
    into lines is included, as for any user of it. No batch call: ``decide_batch`` is
    ``None``.
    """

    name = "vowpalwabbit"
    decide_batch: Callable[[np.ndarray], np.ndarray] | None = None

    def __init__(self, d: int, k: int, *, alpha: float = 0.1, ridge: float = 1.0,
                 seed: int = 0) -> None:
        vowpalwabbit = _quiet_import("vowpalwabbit")
        self.version = _version("vowpalwabbit")
        self.k = k
        self.setup = ("--cb_explore_adf --squarecb -q sa -b 20 (SGD on cost = -reward; "
                      "decision sampled from the SquareCB pmf)")
        self._vw = vowpalwabbit.Workspace(f"--cb_explore_adf --squarecb -q sa -b 20 --quiet "
                                          f"--random_seed {seed}")
        self._actions = [f"|a a{j}" for j in range(k)]
        self._rng = np.random.default_rng(seed)

    def _lines(self, z: np.ndarray, label: tuple[int, float] | None = None) -> list[str]:
        lines = ["shared |s " + " ".join(f"{j}:{v:.9g}" for j, v in enumerate(z.tolist()))]
        lines += self._actions
        if label is not None:
            arm, reward = label
            lines[1 + arm] = f"0:{-reward:.9g}:{1.0 / self.k:.9g} |a a{arm}"
        return lines

    def fit(self, Z: np.ndarray, rewards: np.ndarray) -> None:
        for z, r in zip(Z, rewards):
            for arm in range(self.k):
                self._vw.learn(self._lines(z, (arm, float(r[arm]))))

    def decide(self, z: np.ndarray) -> int:
        pmf = self._vw.predict(self._lines(z))
        arm = int(np.searchsorted(np.cumsum(pmf), self._rng.random() * sum(pmf), side="right"))
        return min(arm, self.k - 1)

    def update(self, z: np.ndarray, arm: int, reward: float) -> None:
        self._vw.learn(self._lines(z, (arm, reward)))

    def greedy(self, Z: np.ndarray) -> np.ndarray:
        return np.array([int(np.argmax(self._vw.predict(self._lines(z)))) for z in Z])

    def close(self) -> None:
        self._vw.finish()


class _LinUCBPeer:
    """What the two disjoint-LinUCB adapters share: a model ``_model`` whose ``predict`` takes
    a ``(B, d)`` batch and whose decision is its deterministic rule; nothing to free."""

    def __init__(self, dist: str, k: int) -> None:
        self.version = _version(dist)
        self.k = k
        self._model: Any = None

    def decide_batch(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(self._model.predict(Z), dtype=np.int64).reshape(len(Z))

    def greedy(self, Z: np.ndarray) -> np.ndarray:
        return self.decide_batch(Z)

    def close(self) -> None:
        pass


class MABWiserPeer(_LinUCBPeer):
    """MABWiser, ``LearningPolicy.LinUCB``: disjoint LinUCB, one ridge regression per arm.

    Setup: ``MAB(arms=range(K), LinUCB(alpha, l2_lambda=ridge), seed, n_jobs=1)`` on the rows
    with the intercept column (no scaling). Score per arm: ``beta_k . z + alpha * sqrt(z^T
    A_k^-1 z)``, ``A_k = ridge * I + sum z z^T`` -- mixllm's bonus and prior, but on the single
    combined reward (see the module docstring). Each ``partial_fit`` re-inverts the updated
    arm's ``A`` with ``numpy.linalg.inv`` (``O(d^3)``) and copies every arm's model, so updates
    are the slow part by design of the library, not of this adapter. Batch: ``predict`` on a
    ``(B, d)`` array.
    """

    name = "mabwiser"

    def __init__(self, d: int, k: int, *, alpha: float = 0.1, ridge: float = 1.0,
                 seed: int = 0) -> None:
        mab = _quiet_import("mabwiser.mab")
        super().__init__("mabwiser", k)
        self.setup = f"MAB(LinUCB(alpha={alpha:g}, l2_lambda={ridge:g}), n_jobs=1)"
        self._model = mab.MAB(list(range(k)),
                              mab.LearningPolicy.LinUCB(alpha=alpha, l2_lambda=ridge),
                              seed=seed, n_jobs=1)

    def fit(self, Z: np.ndarray, rewards: np.ndarray) -> None:
        n = len(Z)
        self._model.fit(np.tile(np.arange(self.k), n), rewards.reshape(-1),
                        np.repeat(Z, self.k, axis=0))

    def decide(self, z: np.ndarray) -> int:
        return int(self._model.predict(z[None, :]))

    def update(self, z: np.ndarray, arm: int, reward: float) -> None:
        self._model.partial_fit(np.array([arm]), np.array([reward]), z[None, :])


class ContextualBanditsPeer(_LinUCBPeer):
    """contextualbandits, ``online.LinUCB``: disjoint LinUCB with Sherman-Morrison updates.

    Setup: ``LinUCB(K, alpha, lambda_=ridge, fit_intercept=False, use_float=False,
    method="sm", ucb_from_empty=False, beta_prior=None, njobs=1)`` on the rows with the
    intercept column: float64 like mixllm, ``A_k^-1`` kept up to date by Sherman-Morrison
    (``O(d^2)`` per update), the same UCB score and prior as mixllm's but on the single
    combined reward (see the module docstring); no beta prior or smoothing, which the library
    offers for arms with few observations. Batch: ``predict`` on a ``(B, d)`` array.
    """

    name = "contextualbandits"

    def __init__(self, d: int, k: int, *, alpha: float = 0.1, ridge: float = 1.0,
                 seed: int = 0) -> None:
        online = _quiet_import("contextualbandits.online")
        super().__init__("contextualbandits", k)
        self.setup = (f"online.LinUCB(alpha={alpha:g}, lambda_={ridge:g}, method='sm', "
                      f"use_float=False, njobs=1)")
        # The library asserts a positive seed.
        self._model = online.LinUCB(k, alpha=alpha, lambda_=ridge, fit_intercept=False,
                                    use_float=False, method="sm", ucb_from_empty=False,
                                    beta_prior=None, random_state=seed + 1, njobs=1)

    def fit(self, Z: np.ndarray, rewards: np.ndarray) -> None:
        n = len(Z)
        self._model.fit(np.repeat(Z, self.k, axis=0), np.tile(np.arange(self.k), n),
                        rewards.reshape(-1))

    def decide(self, z: np.ndarray) -> int:
        return int(self._model.predict(z[None, :])[0])

    def update(self, z: np.ndarray, arm: int, reward: float) -> None:
        self._model.partial_fit(z[None, :], np.array([arm]), np.array([reward]))


#: The peers ``mixllm bench`` tries, in this order (JSON key, adapter class).
PEER_NAMES: tuple[str, ...] = ("vowpalwabbit", "mabwiser", "contextualbandits")
_ADAPTERS: dict[str, Any] = {"vowpalwabbit": VowpalWabbitPeer, "mabwiser": MABWiserPeer,
                             "contextualbandits": ContextualBanditsPeer}


def load_peers(d: int, k: int, *, alpha: float = 0.1, ridge: float = 1.0, seed: int = 0,
               names: tuple[str, ...] = PEER_NAMES) -> tuple[list[Any], list[str]]:
    """Build an adapter for every peer library that imports.

    Returns ``(adapters, missing)``: ``missing`` names the libraries that are not installed
    (their import raised ``ImportError``); any other error propagates.
    """
    peers, missing = [], []
    for name in names:
        try:
            peers.append(_ADAPTERS[name](d, k, alpha=alpha, ridge=ridge, seed=seed))
        except ImportError:
            missing.append(name)
    return peers, missing
