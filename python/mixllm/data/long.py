"""mixllm's own long format (JSONL, CSV, Parquet): one row per (prompt, LLM) observation."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write, atomic_write_with
from ..text.tokens import count_tokens, count_tokens_or_nan
from ..types import DataError
from ._files import (PathLike, _check_observed_any, _floats, _is_missing, _malformed, _pandas,
                     _read_csv_strings, _read_parquet, _read_text, _text_or_none)
from .dataset import RoutingData


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
        with _malformed(f"{path}: line {lineno}", "JSON", json.JSONDecodeError, position=False):
            rec = json.loads(line)
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
                counted = count_tokens_or_nan(np.where(unknown, resp, None))
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
        atomic_write(path, buf.getvalue().encode("utf-8"))
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
        atomic_write(path, text.encode("utf-8"))
    else:
        try:
            import pyarrow  # noqa: F401
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError("writing Parquet needs pyarrow: pip install 'mixllm[parquet]'") from exc
        atomic_write_with(path, lambda tmp: df.to_parquet(tmp, index=False))


