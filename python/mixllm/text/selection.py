"""Settings chosen inside ``fit``: the feature map and the ridge strength, by cross-validation
on the training rows only.

The router's per-LLM predictors are ridge regressions on one feature vector; which features and
how much shrinkage suit a dataset depends on it (RouterBench's three tasks are routed mostly by
task identity, a multi-task set without labels needs the prompt's neighbourhood). So
:class:`~mixllm.text.pipeline.TextRouter` tries every candidate on held-out folds of its
training rows and keeps the one whose quality predictions are best (lowest mean squared error
over the observed (prompt, LLM) pairs), with exactly the router's ridge (intercept appended and
penalised like every coefficient), solved in closed form for all ridge strengths at once from
one eigendecomposition per fold and feature map.

This module solves its own ridge in NumPy because it is model selection, not the router: it
fits throwaway models on folds and keeps only the winning settings. Its conventions are the
core's (``cpp/include/mixllm/model.hpp``, ``_reference.RefPool``): the intercept is a trailing
column of ones, penalised like every coefficient (``A = ridge * I + Z^T Z`` over the rows an LLM
observed), and the length target is ``log1p(output_tokens)``, NaN where not observed (the
caller, ``TextRouter.fit``, takes that log for the candidates' length columns; the router it
then fits takes the raw tokens and the engine takes the log itself).

Feature maps (blocks in this order when combined):

``"tags"``            the tag-enhanced transform (:class:`~mixllm.text.tags.TagTransform`);
``"embedding"``       the embedding itself;
``"neighbours"``      the embedding and each LLM's mean quality over the nearest stored
                      prompts (:class:`~mixllm.text.neighbours.OutcomeMemory`);
``"tags+neighbours"`` the tag-enhanced transform and the neighbour means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["FEATURE_MAPS", "RIDGES", "ridge_path", "choose"]

FEATURE_MAPS = ("tags", "embedding", "neighbours", "tags+neighbours")
RIDGES = (1.0, 3.0, 10.0, 30.0, 100.0)


def blocks_of(kind: str) -> tuple[str, ...]:
    """The blocks a feature map concatenates, in order: of ``"embedding"``, ``"tags"``,
    ``"neighbours"`` (the neighbour means)."""
    if kind not in FEATURE_MAPS:
        raise ValueError(f"feature map must be one of {FEATURE_MAPS}, got {kind!r}")
    return {"tags": ("tags",), "embedding": ("embedding",),
            "neighbours": ("embedding", "neighbours"),
            "tags+neighbours": ("tags", "neighbours")}[kind]


def ridge_path(F: np.ndarray, Y: np.ndarray, ridges: Sequence[float]) -> dict[float, np.ndarray]:
    """Ridge coefficients ``(d + 1, T)`` of each column of ``Y`` (NaN = not observed) on ``F``
    with a trailing intercept, for every ridge strength: ``(Z^T Z + r I)^{-1} Z^T y`` over the
    rows where the column is observed (columns observed on the same rows share one
    eigendecomposition)."""
    Z = np.hstack([F, np.ones((len(F), 1))])
    seen = ~np.isnan(Y)
    out = {float(r): np.zeros((Z.shape[1], Y.shape[1])) for r in ridges}
    groups: dict[bytes, list[int]] = {}
    for t in range(Y.shape[1]):
        groups.setdefault(np.packbits(seen[:, t]).tobytes(), []).append(t)
    for cols in groups.values():
        rows = seen[:, cols[0]]
        if not rows.any():
            continue
        Zr = Z[rows]
        s, V = np.linalg.eigh(Zr.T @ Zr)
        proj = V.T @ (Zr.T @ Y[rows][:, cols])
        for r in out:
            out[r][:, cols] = V @ (proj / (np.maximum(s, 0.0) + r)[:, None])
    return out


def choose(E: np.ndarray, quality: np.ndarray, log_tokens: np.ndarray,
           make_blocks: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                                 dict[str, tuple[np.ndarray, np.ndarray]]],
           kinds: Sequence[str], ridges: Sequence[float], *, folds: int = 5,
           max_rows: int = 3000, seed: int = 0,
           on_fold: Callable[[int, int], None] | None = None) -> tuple[str, float, dict[str, Any]]:
    """The feature map and ridge with the lowest cross-validated quality error.

    Parameters
    ----------
    E : (n, d) embeddings; quality, log_tokens : (n, K), NaN = not observed.
    make_blocks : callable
        ``make_blocks(train_rows, held_rows, ...)``: see :meth:`TextRouter._cv_blocks`; returns
        each block's ``(train features, held-out features)``, fitted on the training rows only.
    kinds, ridges : the candidates.
    folds : int
        Cross-validation folds (>= 2).
    max_rows : int
        At most this many training rows (a seeded sample) take part in the choice.
    on_fold : callable, optional
        ``on_fold(done, total)`` after each fold (progress reporting).

    Returns
    -------
    (kind, ridge, table)
        ``table`` holds every candidate's mean squared error (``"mse"``: ``{kind: {ridge: e}}``),
        the rows and folds used.
    """
    n = len(E)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.permutation(n)[:max_rows]) if n > max_rows else np.arange(n)
    folds = max(2, min(folds, len(rows) // 2))
    parts = np.array_split(rng.permutation(rows), folds)
    K = quality.shape[1]
    err = {k: {float(r): [0.0, 0] for r in ridges} for k in kinds}
    need = sorted({b for k in kinds for b in blocks_of(k)})
    for i, held in enumerate(parts):
        train = np.setdiff1d(rows, held)
        blocks = make_blocks(train, held, np.array(need))
        Y = np.hstack([quality[train], log_tokens[train]])
        truth = quality[held]
        seen = ~np.isnan(truth)
        for k in kinds:
            Ftr = np.hstack([blocks[b][0] for b in blocks_of(k)])
            Fte = np.hstack([blocks[b][1] for b in blocks_of(k)])
            for r, W in ridge_path(Ftr, Y, ridges).items():
                pred = np.hstack([Fte, np.ones((len(Fte), 1))]) @ W[:, :K]
                e = err[k][r]
                e[0] += float(((pred - np.nan_to_num(truth)) ** 2)[seen].sum())
                e[1] += int(seen.sum())
        if on_fold is not None:
            on_fold(i + 1, folds)
    mse = {k: {r: (s / c if c else np.inf) for r, (s, c) in v.items()} for k, v in err.items()}
    # the first candidate (in the given order) among equals: kinds first, then ridges
    best = min(((k, r) for k in kinds for r in (float(x) for x in ridges)),
               key=lambda kr: mse[kr[0]][kr[1]])
    table = {"criterion": "cross-validated mean squared error of the quality predictions",
             "rows": int(len(rows)), "folds": int(folds),
             "mse": {k: {f"{r:g}": v for r, v in m.items()} for k, m in mse.items()}}
    return best[0], best[1], table
