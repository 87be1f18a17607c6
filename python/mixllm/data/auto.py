"""Routing data in any supported format, the format chosen from the path."""

from __future__ import annotations

from pathlib import Path

from ..types import DataError
from ._files import PathLike, _pandas, _read_text
from .dataset import RoutingData
from .long import load_long
from .routerbench import load_routerbench
from .routerdc import load_routerdc


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


def load_data(path: PathLike, format: str = "auto", *, allow_pickle: bool = False) -> RoutingData:
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
