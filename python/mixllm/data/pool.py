"""Pool files: the LLMs with their prices and latency profiles (TOML or JSON; docs/DATA.md)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write
from ..types import LLM, DataError

try:  # Python >= 3.11
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 without the backport
    try:
        import tomli as _toml  # type: ignore[no-redef]
    except ModuleNotFoundError:
        _toml = None  # type: ignore[assignment]

from ._files import PathLike, _duplicates, _malformed, _price, _read_json, _read_text

PoolLike = Sequence[LLM] | str | os.PathLike | None

POOL_VERSION = 1
_POOL_FIELDS = ("name", "input_price", "output_price", "ttft_s", "tokens_per_s", "slots")
#: Optional per-LLM fields read only by ``mixllm serve`` (see docs/SERVING.md).
_SERVE_FIELDS = ("base_url", "api_key_env", "model", "timeout_s")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _endpoint(label: str, name: str, e: Mapping[str, Any]) -> dict[str, Any] | None:
    """The entry's serving fields, checked and completed with their defaults, as the keyword
    arguments of :class:`mixllm.serving.backend.Backend`; ``None`` when it has no ``base_url``."""
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
    return {"name": name, "base_url": url.rstrip("/"), "model": model, "api_key_env": key_env,
            "timeout_s": float(timeout)}


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


def load_endpoints(path: PathLike) -> dict[str, dict[str, Any]]:
    """The serving fields of a pool file, checked: LLM name -> ``{"name", "base_url", "model",
    "api_key_env", "timeout_s"}`` for the entries that give a ``base_url`` (``model`` defaults
    to the name, ``timeout_s`` to 60). :func:`mixllm.serving.backend.load_backends` makes them
    :class:`~mixllm.serving.backend.Backend` objects."""
    return {llm.name: ep for llm, ep in _read_pool(path) if ep is not None}


def load_pool_settings(path: PathLike) -> dict[str, float]:
    """A pool file's top-level settings: ``lam``, the default willingness to pay of
    ``mixllm serve`` (USD per unit of quality, > 0, ``inf`` = quality alone), when given."""
    raw = _read_pool_raw(Path(path))
    out: dict[str, float] = {}
    if "lam" in raw:
        v = raw["lam"]
        if isinstance(v, str) and v.strip().lower() == "inf":
            v = math.inf
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v <= 0:
            raise DataError(f"{path}: lam must be a number > 0 (USD per unit of quality; "
                            f"inf = quality alone), got {raw['lam']!r}")
        out["lam"] = float(v)
    return out


def _read_pool_raw(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pool file")
    if _pool_kind(path) == "json":
        raw = _read_json(path)
    else:
        text = _read_text(path)
        if _toml is None:  # pragma: no cover - Python 3.10 without tomli
            raise ModuleNotFoundError("reading TOML needs Python >= 3.11 or the 'tomli' package")
        with _malformed(path, "TOML", _toml.TOMLDecodeError):
            raw = _toml.loads(text)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a table/object with a list 'llm'")
    unknown = sorted(set(raw) - {"version", "lam", "llm"})
    if unknown:
        raise DataError(f"{path}: unknown top-level keys {unknown} (allowed: version, lam, llm)")
    return raw


def _read_pool(path: PathLike) -> list[tuple[LLM, dict[str, Any] | None]]:
    path = Path(path)
    raw = _read_pool_raw(path)
    kind = _pool_kind(path)
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
        llms.append((llm, _endpoint(label, llm.name, e)))
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
    atomic_write(path, text.encode("utf-8"))


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


