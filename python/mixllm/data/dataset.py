"""RoutingData: per-prompt, per-LLM quality, cost, tokens and latency, and what is derived from it."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..types import LLM, DataError
from ._files import _duplicates
from .pool import PoolLike, _as_pool


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _float_matrix(value: Any, name: str, n: int, k: int, *, allow_vector: bool = False) -> np.ndarray:
    if value is None:
        return _frozen(np.full((n, k), np.nan))
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric: {exc}") from exc
    if allow_vector and arr.shape == (n,):
        arr = np.repeat(arr[:, None], k, axis=1)
    if arr.shape != (n, k):
        want = f"({n}, {k})" + (f" or ({n},)" if allow_vector else "")
        raise DataError(f"{name} must have shape {want}, got {arr.shape}")
    if np.isinf(arr).any():
        raise DataError(f"{name} contains inf (use NaN for unknown)")
    return _frozen(arr)


def _nonnegative(arr: np.ndarray, name: str) -> None:
    if (arr[~np.isnan(arr)] < 0).any():
        raise DataError(f"{name} must be >= 0 where known")


def _str_list(values: Any, name: str, n: int | None = None, *, nonempty: bool = False) -> list[str]:
    if isinstance(values, str):
        raise DataError(f"{name} must be a sequence of str, not one string")
    out = list(values)
    if n is not None and len(out) != n:
        raise DataError(f"{name} must have {n} entries, got {len(out)}")
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise DataError(f"{name}[{i}] must be str, got {type(v).__name__}")
        if nonempty and not v:
            raise DataError(f"{name}[{i}] is empty")
    return out


@dataclass(frozen=True, eq=False, repr=False)
class RoutingData:
    """Prompts answered by a set of LLMs: what a router learns from and is evaluated on.

    Parameters
    ----------
    prompt_ids : sequence of str, shape (n,)
        Unique, non-empty prompt identifiers.
    prompts : sequence of str, shape (n,)
        Prompt texts.
    models : sequence of str, shape (K,)
        Unique LLM names; the column order of every ``(n, K)`` array.
    quality : array (n, K)
        Quality of each LLM's response (NaN = not observed).
    cost_usd : array (n, K), optional
        Cost of each response in USD (NaN = unknown; all NaN when omitted).
    input_tokens : array (n, K) or (n,), optional
        Prompt tokens as each LLM was billed (a vector is the same for every LLM).
    output_tokens : array (n, K), optional
        Response tokens (NaN = unknown).
    latency_s : array (n, K), optional
        Response latency in seconds (NaN = unknown).
    task : sequence of str, shape (n,), optional
        Task (benchmark) of each prompt; ``""`` when omitted.
    tags : sequence of sequence of str, optional
        Free tags per prompt (each a non-empty str), stored as tuples.
    responses : array (n, K) of str or None, optional
        Response texts, ``None`` where absent; ``None`` for no responses at all.
    pool : sequence of LLM, optional
        LLMs (prices, latency profiles) that came with the data; the default pool of
        :meth:`fill_costs` and :meth:`fill_latency`. Need not cover every model.
    meta : mapping str -> str, optional
        Provenance notes (format, where costs and tokens came from, assumptions applied).

    Notes
    -----
    Arrays are stored as float64 (``object`` for texts) and made read-only; ``prompts``,
    ``models`` and ``tags`` are lists: treat them as read-only too. Derived datasets come from
    methods that return a new object (:meth:`subset`, :meth:`select_models`,
    :meth:`fill_costs` ...).
    """

    prompt_ids: np.ndarray
    prompts: list[str]
    models: list[str]
    quality: np.ndarray
    cost_usd: np.ndarray | None = None
    input_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None
    latency_s: np.ndarray | None = None
    task: np.ndarray | None = None
    tags: list[tuple[str, ...]] | None = None
    responses: np.ndarray | None = None
    pool: tuple[LLM, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        ids = _str_list(self.prompt_ids, "prompt_ids", nonempty=True)
        n = len(ids)
        if n == 0:
            raise DataError("a dataset needs at least one prompt")
        dup = _duplicates(ids)
        if dup:
            raise DataError(f"prompt_ids must be unique; repeated: {dup[:5]}"
                            + (f" and {len(dup) - 5} more" if len(dup) > 5 else ""))
        put("prompt_ids", _frozen(np.array(ids, dtype=object)))
        put("prompts", _str_list(self.prompts, "prompts", n))
        models = _str_list(self.models, "models", nonempty=True)
        if not models:
            raise DataError("a dataset needs at least one model")
        if _duplicates(models):
            raise DataError(f"model names must be unique; repeated: {_duplicates(models)}")
        put("models", models)
        k = len(models)
        put("quality", _float_matrix(self.quality, "quality", n, k))
        put("cost_usd", _float_matrix(self.cost_usd, "cost_usd", n, k))
        put("input_tokens", _float_matrix(self.input_tokens, "input_tokens", n, k, allow_vector=True))
        put("output_tokens", _float_matrix(self.output_tokens, "output_tokens", n, k))
        put("latency_s", _float_matrix(self.latency_s, "latency_s", n, k))
        for name in ("cost_usd", "input_tokens", "output_tokens", "latency_s"):
            _nonnegative(getattr(self, name), name)
        task = [""] * n if self.task is None else _str_list(self.task, "task", n)
        put("task", _frozen(np.array(task, dtype=object)))
        if self.tags is None:
            tags = [()] * n
        else:
            tags = list(self.tags)
            if len(tags) != n:
                raise DataError(f"tags must have {n} entries, got {len(tags)}")
            tags = [tuple(_str_list(t, f"tags[{i}]", nonempty=True)) for i, t in enumerate(tags)]
        put("tags", tags)
        if self.responses is not None:
            resp = np.empty((n, k), dtype=object)
            try:
                resp[...] = self.responses
            except (ValueError, TypeError) as exc:
                raise DataError(f"responses must have shape ({n}, {k}): {exc}") from exc
            for (i, j), r in np.ndenumerate(resp):
                if r is not None and not isinstance(r, str):
                    raise DataError(f"responses[{i}, {j}] must be str or None, got {type(r).__name__}")
            put("responses", _frozen(resp))
        pool = tuple(self.pool)
        for llm in pool:
            if not isinstance(llm, LLM):
                raise DataError(f"pool entries must be LLM, got {type(llm).__name__}")
        if _duplicates([llm.name for llm in pool]):
            raise DataError(f"pool names must be unique; repeated: {_duplicates([l.name for l in pool])}")
        put("pool", pool)
        meta = dict(self.meta)
        for key, v in meta.items():
            if not isinstance(key, str) or not isinstance(v, str):
                raise DataError("meta must map str to str")
        put("meta", meta)

    # ------------------------------------------------------------------ basics
    @property
    def n_prompts(self) -> int:
        """Number of prompts ``n``."""
        return len(self.prompts)

    @property
    def n_models(self) -> int:
        """Number of models ``K``."""
        return len(self.models)

    def __len__(self) -> int:
        return self.n_prompts

    def __repr__(self) -> str:
        tasks = sorted(set(self.task.tolist()))
        observed = float(np.mean(~np.isnan(self.quality)))
        return (f"RoutingData(n_prompts={self.n_prompts}, n_models={self.n_models}, "
                f"tasks={tasks}, observed={observed:.1%})")

    @property
    def prompt_tokens(self) -> np.ndarray:
        """Input tokens per prompt, shape (n,): the row mean over LLMs where known, else NaN."""
        known = ~np.isnan(self.input_tokens)
        total = np.where(known, self.input_tokens, 0.0).sum(axis=1)
        count = known.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def equals(self, other: "RoutingData", *, check_pool: bool = False,
               check_meta: bool = False) -> bool:
        """Whether two datasets hold the same prompts, models and values (NaN equals NaN)."""
        if not isinstance(other, RoutingData):
            return False
        if (self.prompt_ids.tolist() != other.prompt_ids.tolist() or self.prompts != other.prompts
                or self.models != other.models or self.task.tolist() != other.task.tolist()
                or self.tags != other.tags):
            return False
        for name in ("quality", "cost_usd", "input_tokens", "output_tokens", "latency_s"):
            if not np.array_equal(getattr(self, name), getattr(other, name), equal_nan=True):
                return False
        if (self.responses is None) != (other.responses is None):
            return False
        if self.responses is not None and self.responses.tolist() != other.responses.tolist():
            return False
        if check_pool and self.pool != other.pool:
            return False
        return not check_meta or self.meta == other.meta

    def _replace(self, **changes: Any) -> "RoutingData":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ selection
    def subset(self, rows: Any) -> "RoutingData":
        """The dataset restricted to some prompts.

        Parameters
        ----------
        rows : int array, boolean mask (n,) or slice
            Which prompts, in the order given (numpy indexing; a prompt may not repeat).
        """
        idx = np.arange(self.n_prompts)[rows]
        idx = np.atleast_1d(idx)
        if idx.size == 0:
            raise DataError("subset selects no prompt")
        if np.unique(idx).size != idx.size:
            raise DataError("subset rows repeat a prompt (prompt_ids must stay unique)")
        return self._replace(
            prompt_ids=self.prompt_ids[idx], prompts=[self.prompts[i] for i in idx],
            quality=self.quality[idx], cost_usd=self.cost_usd[idx],
            input_tokens=self.input_tokens[idx], output_tokens=self.output_tokens[idx],
            latency_s=self.latency_s[idx], task=self.task[idx],
            tags=[self.tags[i] for i in idx],
            responses=None if self.responses is None else self.responses[idx])

    def select_models(self, names: Sequence[str]) -> "RoutingData":
        """The dataset restricted to (and reordered as) the given models; pool entries follow."""
        names = _str_list(names, "names")
        if not names:
            raise DataError("select_models needs at least one name")
        unknown = [m for m in names if m not in self.models]
        if unknown:
            raise KeyError(f"models not in the data: {unknown}; the data has {self.models}")
        cols = [self.models.index(m) for m in names]
        return self._replace(
            models=names, quality=self.quality[:, cols], cost_usd=self.cost_usd[:, cols],
            input_tokens=self.input_tokens[:, cols], output_tokens=self.output_tokens[:, cols],
            latency_s=self.latency_s[:, cols],
            responses=None if self.responses is None else self.responses[:, cols],
            pool=tuple(llm for name in names for llm in self.pool if llm.name == name))

    def complete(self) -> "RoutingData":
        """The prompts on which every model's quality is observed."""
        rows = ~np.isnan(self.quality).any(axis=1)
        if not rows.any():
            raise DataError("no prompt has a quality observed for every model")
        return self.subset(rows)

    # ------------------------------------------------------------------ splits
    def _groups(self, stratify_by_task: bool) -> list[np.ndarray]:
        if not stratify_by_task:
            return [np.arange(self.n_prompts)]
        return [np.flatnonzero(self.task == t) for t in sorted(set(self.task.tolist()))]

    def split_indices(self, test_fraction: float, seed: int, *,
                      stratify_by_task: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of a seeded train/test split (see :meth:`split`); both sorted."""
        f = float(test_fraction)
        if isinstance(test_fraction, bool) or not 0.0 < f < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        n = self.n_prompts
        n_test = int(math.floor(f * n + 0.5))
        if not 1 <= n_test <= n - 1:
            raise ValueError(f"test_fraction {f} of {n} prompts leaves an empty train or test set")
        rng = np.random.default_rng(_seed(seed))
        groups = self._groups(stratify_by_task)
        # Largest-remainder apportionment: every task gets floor(f * size) test prompts, and the
        # leftover seats go to the largest fractional parts, so the total is exactly round(f n).
        sizes = np.array([g.size for g in groups], dtype=np.float64)
        quota = f * sizes
        take = np.floor(quota).astype(np.int64)
        extra = n_test - int(take.sum())
        order = sorted(range(len(groups)), key=lambda j: (-(quota[j] - take[j]), j))
        for j in order[:max(extra, 0)]:
            take[j] += 1
        test = [rng.permutation(g)[:t] for g, t in zip(groups, take)]
        test_idx = np.sort(np.concatenate(test))
        mask = np.ones(n, dtype=bool)
        mask[test_idx] = False
        return np.flatnonzero(mask), test_idx

    def split(self, test_fraction: float, seed: int, stratify_by_task: bool = True
              ) -> tuple["RoutingData", "RoutingData"]:
        """A seeded train/test split.

        Parameters
        ----------
        test_fraction : float
            Share of prompts in the test set, in (0, 1); the test set has exactly
            ``round(test_fraction * n)`` prompts.
        seed : int
            Seed of the shuffle: the same seed gives the same split.
        stratify_by_task : bool
            Split every task in the same proportion (largest-remainder rounding), so each
            task's test share is within one prompt of ``test_fraction``.

        Returns
        -------
        (RoutingData, RoutingData)
            Train and test, each in the original row order.
        """
        train, test = self.split_indices(test_fraction, seed, stratify_by_task=stratify_by_task)
        return self.subset(train), self.subset(test)

    def kfold_indices(self, k: int, seed: int, *, stratify_by_task: bool = True
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Row indices of seeded k-fold cross-validation (see :meth:`kfold`); all sorted."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
            raise ValueError(f"k must be an integer >= 2, got {k!r}")
        n = self.n_prompts
        if k > n:
            raise ValueError(f"k={k} folds need at least {k} prompts, the data has {n}")
        rng = np.random.default_rng(_seed(seed))
        # Deal shuffled prompts to the folds round robin, task after task: fold sizes differ by
        # at most one, and so do each task's counts across folds.
        order = np.concatenate([rng.permutation(g) for g in self._groups(stratify_by_task)])
        fold = np.empty(n, dtype=np.int64)
        fold[order] = np.arange(n) % k
        return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(int(k))]

    def kfold(self, k: int, seed: int, stratify_by_task: bool = True
              ) -> list[tuple["RoutingData", "RoutingData"]]:
        """Seeded k-fold cross-validation: ``k`` (train, test) pairs whose tests partition the data.

        Parameters
        ----------
        k : int
            Number of folds (2 <= k <= n).
        seed : int
            Seed of the shuffle.
        stratify_by_task : bool
            Spread every task evenly over the folds (counts differ by at most one).
        """
        return [(self.subset(tr), self.subset(te))
                for tr, te in self.kfold_indices(k, seed, stratify_by_task=stratify_by_task)]

    # ------------------------------------------------------------------ pools, costs, latency
    def match_pool(self, pool: PoolLike = None) -> list[LLM]:
        """The pool's LLMs in :attr:`models` order.

        Parameters
        ----------
        pool : sequence of LLM, path of a pool file, or None
            ``None`` uses the pool that came with the data. Extra LLMs are ignored.

        Raises
        ------
        DataError
            If a model of the data has no entry in the pool.
        """
        where = "the data's pool" if pool is None else (
            str(pool) if isinstance(pool, (str, os.PathLike)) else "the pool")
        llms = _as_pool(pool, self.pool)
        by_name = {llm.name: llm for llm in llms}
        missing = [m for m in self.models if m not in by_name]
        if missing:
            raise DataError(f"{where} has no entry for models in the data: {missing} "
                            f"(pool: {sorted(by_name)})")
        return [by_name[m] for m in self.models]

    def fill_costs(self, pool: PoolLike = None, *, overwrite: bool = False) -> "RoutingData":
        """Compute missing costs from token counts and the pool's prices.

        ``cost = input_tokens * input_price / 1e6 + output_tokens * output_price / 1e6`` (USD),
        wherever the cost is NaN (everywhere with ``overwrite``) and both token counts are known.

        Parameters
        ----------
        pool : sequence of LLM, path of a pool file, or None
            Prices per model (``None``: the data's own pool). It must price every model.
        overwrite : bool
            Replace recorded costs too.

        Returns
        -------
        RoutingData
            A new dataset carrying the matched pool.
        """
        llms = self.match_pool(pool)
        pin = np.array([llm.input_price for llm in llms])
        pout = np.array([llm.output_price for llm in llms])
        est = (self.input_tokens * pin + self.output_tokens * pout) / 1e6
        cost = est if overwrite else np.where(np.isnan(self.cost_usd), est, self.cost_usd)
        note = "input_tokens*input_price/1e6 + output_tokens*output_price/1e6 from the pool"
        meta = {**self.meta, "cost_usd": note if overwrite or "cost_usd" not in self.meta
                else f"{self.meta['cost_usd']}; missing ones {note}"}
        return self._replace(cost_usd=cost, pool=tuple(llms), meta=meta)

    def fill_latency(self, pool: PoolLike = None, *, overwrite: bool = False) -> "RoutingData":
        """Simulate missing latencies as ``ttft_s + output_tokens / tokens_per_s`` per model.

        This is the MixLLM paper's latency simulation (time to first token plus generation
        time), without queueing; where ``output_tokens`` is unknown the latency stays unknown.
        """
        llms = self.match_pool(pool)
        ttft = np.array([llm.ttft_s for llm in llms])
        speed = np.array([llm.tokens_per_s for llm in llms])
        sim = ttft + self.output_tokens / speed
        lat = sim if overwrite else np.where(np.isnan(self.latency_s), sim, self.latency_s)
        meta = {**self.meta, "latency_s": "simulated: ttft_s + output_tokens / tokens_per_s"}
        return self._replace(latency_s=lat, pool=tuple(llms), meta=meta)

    def without_labels(self) -> "RoutingData":
        """The same data with no task labels and no tags (as a router meets unlabelled
        prompts: domains, where needed, come from clustering)."""
        return self._replace(task=[""] * self.n_prompts, tags=[()] * self.n_prompts,
                             meta={**self.meta, "task": "dropped (without_labels)"})

    def lengths_from_costs(self, pool: PoolLike = None) -> "RoutingData":
        """Fill unknown output token counts from the recorded costs and the pool's prices.

        For data that records what each response cost but not its length:
        ``output_tokens = (cost_usd * 1e6 - input_tokens * input_price) / output_price``,
        clipped at 0, wherever the count is unknown and the cost and input tokens are known.
        Where an LLM's output price is 0 its length does not move its cost, and is set to 0.
        The result is the length the router's cost predictor needs to reproduce the cost (its
        quality of a *length* is that of the prices). Recorded in :attr:`meta`.
        """
        llms = self.match_pool(pool)
        pin = np.array([llm.input_price for llm in llms])
        pout = np.array([llm.output_price for llm in llms])
        with np.errstate(divide="ignore", invalid="ignore"):
            est = np.where(pout > 0, (self.cost_usd * 1e6 - self.input_tokens * pin)
                           / np.where(pout > 0, pout, 1.0), 0.0)
        est = np.where(np.isnan(self.cost_usd) | np.isnan(self.input_tokens), np.nan,
                       np.maximum(est, 0.0))
        out = np.where(np.isnan(self.output_tokens), est, self.output_tokens)
        note = "(cost_usd * 1e6 - input_tokens * input_price) / output_price from the pool"
        meta = {**self.meta, "output_tokens": note if "output_tokens" not in self.meta
                else f"{self.meta['output_tokens']}; missing ones {note}"}
        return self._replace(output_tokens=out, pool=tuple(llms), meta=meta)

    def assume_output_tokens(self, tokens: float | Mapping[str, float]) -> "RoutingData":
        """Fill unknown output token counts with an assumed response length.

        For data without responses (RouterDC): a router's cost and length predictors need some
        length, and this makes the assumption explicit (it is recorded in :attr:`meta`).

        Parameters
        ----------
        tokens : float or mapping task -> float
            Assumed output tokens (>= 0), one number or one per task (every task of the data).
        """
        if isinstance(tokens, Mapping):
            missing = sorted(set(self.task.tolist()) - set(tokens))
            if missing:
                raise DataError(f"assumed output tokens missing for tasks {missing}")
            per_row = np.array([_check_count(tokens[t], f"tokens[{t!r}]") for t in self.task])
            note = "assumed per task: " + ", ".join(f"{t}={float(v):g}" for t, v in sorted(tokens.items()))
        else:
            per_row = np.full(self.n_prompts, _check_count(tokens, "tokens"))
            note = f"assumed: {float(tokens):g} for every response"
        out = np.where(np.isnan(self.output_tokens), per_row[:, None], self.output_tokens)
        return self._replace(output_tokens=out, meta={**self.meta, "output_tokens": note})


def _check_count(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
            or not math.isfinite(v) or v < 0:
        raise DataError(f"{name} must be a finite number >= 0, got {v!r}")
    return float(v)


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def cost_fit(data: RoutingData, pool: PoolLike = None) -> dict[str, dict[str, float]]:
    """How well the token cost model reproduces a dataset's recorded costs.

    For every model, on the prompts with a recorded cost > 0 and known token counts, compares
    the recorded cost with ``input_tokens * input_price / 1e6 + output_tokens * output_price / 1e6``.

    Parameters
    ----------
    data : RoutingData
        Data with recorded costs (meaningless after :meth:`RoutingData.fill_costs`).
    pool : sequence of LLM, path of a pool file, or None
        Prices (``None``: the data's pool).

    Returns
    -------
    dict
        Per model name, and under ``"(all)"`` for all models together: ``n`` (pairs used),
        ``median_ratio``, ``p10_ratio``, ``p90_ratio`` (recorded / estimated cost), and
        ``input_factor``, ``output_factor``: the token scale factors ``a, b`` minimising the
        squared relative error of ``a * input part + b * output part``, with
        ``median_abs_rel_error`` (raw) and ``calibrated_median_abs_rel_error`` (with a, b).
    """
    llms = data.match_pool(pool)
    pin = np.array([llm.input_price for llm in llms]) / 1e6
    pout = np.array([llm.output_price for llm in llms]) / 1e6
    part_in = data.input_tokens * pin
    part_out = data.output_tokens * pout
    real = data.cost_usd
    ok = np.isfinite(part_in) & np.isfinite(part_out) & np.isfinite(real) & (real > 0) \
        & (part_in + part_out > 0)
    result: dict[str, dict[str, float]] = {}
    for name, cols in [(m, [j]) for j, m in enumerate(data.models)] + [("(all)", list(range(data.n_models)))]:
        sel = ok[:, cols]
        r = real[:, cols][sel]
        a_in = part_in[:, cols][sel]
        a_out = part_out[:, cols][sel]
        if r.size == 0:
            result[name] = {"n": 0.0}
            continue
        ratio = r / (a_in + a_out)
        design = np.stack([a_in / r, a_out / r], axis=1)
        coef = np.linalg.lstsq(design, np.ones_like(r), rcond=None)[0]
        rel_raw = np.abs((a_in + a_out) - r) / r
        rel_cal = np.abs(design @ coef - 1.0)
        result[name] = {
            "n": float(r.size), "median_ratio": float(np.median(ratio)),
            "p10_ratio": float(np.percentile(ratio, 10)), "p90_ratio": float(np.percentile(ratio, 90)),
            "input_factor": float(coef[0]), "output_factor": float(coef[1]),
            "median_abs_rel_error": float(np.median(rel_raw)),
            "calibrated_median_abs_rel_error": float(np.median(rel_cal)),
        }
    return result


