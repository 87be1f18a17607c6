"""File reading helpers shared by the data readers: text, CSV and Parquet as columns,
numbers and texts checked cell by cell, every problem a :class:`~mixllm.types.DataError`."""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..types import DataError

PathLike = str | os.PathLike


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


@contextmanager
def _malformed(where: object, what: str, error: type[Exception], *,
               position: bool = True) -> Iterator[None]:
    """A parser's ``error`` as a :class:`DataError`: ``"<where>: malformed <what> (<why>)"``,
    ``why`` with the parser's position (line, column) unless ``position`` is false."""
    try:
        yield
    except error as exc:
        why = exc if position else getattr(exc, "msg", exc)
        raise DataError(f"{where}: malformed {what} ({why})") from exc


def _read_json(path: Path) -> Any:
    """A JSON file's content; malformed JSON is a :class:`DataError` naming the file."""
    with _malformed(path, "JSON", json.JSONDecodeError):
        return json.loads(_read_text(path))


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


def _price(v: Any) -> Any:
    # int prices are fine; anything else reaches LLM's own check unchanged.
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _duplicates(values: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for v in values:
        if v in seen and v not in dup:
            dup.append(v)
        seen.add(v)
    return dup


def _check_observed(quality: np.ndarray, models: Sequence[str], source: Any) -> None:
    observed = ~np.isnan(quality)
    if not observed.any():
        raise DataError(f"{source}: every quality score is missing (NaN everywhere)")
    empty = [m for j, m in enumerate(models) if not observed[:, j].any()]
    if empty:
        raise DataError(f"{source}: models with no quality score at all: {empty}")


def _check_observed_any(quality: np.ndarray, source: Any) -> None:
    if not (~np.isnan(quality)).any():
        raise DataError(f"{source}: every quality score is missing (NaN everywhere)")


