"""RouterBench's wide layout (CSV, Parquet, or its pandas pickle behind ``allow_pickle``)."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..text.tokens import count_tokens, count_tokens_or_nan
from ..types import LLM, DataError
from ._files import (PathLike, _check_observed, _floats, _is_missing, _pandas, _price,
                     _read_csv_strings, _read_json, _read_parquet, _text_or_none)
from .dataset import RoutingData


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
    raw = _read_json(path)
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
        output_tokens = count_tokens_or_nan(responses)
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


