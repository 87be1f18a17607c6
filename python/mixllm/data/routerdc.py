"""RouterDC's JSON: lists of ``{"question", "scores"}`` records."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..text.tokens import count_tokens
from ..types import DataError
from ._files import PathLike, _check_observed, _is_missing, _read_json
from .dataset import RoutingData
from .pool import PoolLike


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
        records = _read_json(f)
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
