"""Persistence helpers shared by everything that saves state.

Every file mixllm writes is made whole or not at all (:func:`atomic_write`: a temporary file in
the same folder, fsynced, renamed over the target, the folder fsynced), and every array file is
one checked format (:func:`pack_checked` / :func:`unpack_checked`): an ``.npz`` of the arrays
beside a JSON manifest that holds the sha256 of each array, read back without pickle. The
router, the tag transform, the static encoder's table and (by file name) the encoder's cache
shards use them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["array_sha256", "atomic_write", "atomic_write_with", "fsync_dir", "load_npz",
           "pack_checked", "unpack_checked"]


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make the entries of ``folder`` (a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_with(path: str | os.PathLike, write: Callable[[Path], None], *,
                      durable: bool = True) -> None:
    """Create ``path`` through ``write(tmp)`` so that a crash leaves the old file or the new.

    ``write`` fills a temporary file in the same folder, which is then renamed over ``path``.
    With ``durable`` (the default) the file is fsynced before the rename and the folder after
    it, so that the new content survives a power loss too; a cache that can afford to lose its
    newest file passes ``durable=False`` and is still never torn.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(folder)


def atomic_write(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write_with`)."""
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data), durable=durable)


def array_sha256(a: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (what the manifests record)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def load_npz(raw: bytes, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` held in memory, never unpickled; with ``names``, exactly those.

    Raises ``ValueError`` for anything unreadable (reading from memory also means a damaged
    zip cannot leave a file open).
    """
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            if names is not None and sorted(z.files) != sorted(names):
                raise ValueError(f"arrays {sorted(z.files)}, expected {sorted(names)}")
            return {k: z[k] for k in z.files}
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile, OSError, EOFError ...: all unreadable
        raise ValueError(str(exc) or type(exc).__name__) from exc


def pack_checked(manifest: Mapping[str, Any], arrays: Mapping[str, np.ndarray], *,
                 manifest_key: str = "manifest", text: bool = False) -> bytes:
    """An ``.npz`` of ``arrays`` and the JSON ``manifest`` with a ``sha256`` entry added (the
    digest of each array). The manifest is stored under ``manifest_key`` as UTF-8 bytes, or as
    a NumPy string with ``text`` (the static table's layout)."""
    doc = {**manifest, "sha256": {k: array_sha256(v) for k, v in arrays.items()}}
    if text:
        stored = np.array(json.dumps(doc, sort_keys=True))
    else:
        stored = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **{manifest_key: stored}, **arrays)
    return buf.getvalue()


def unpack_checked(raw: bytes, source: Any, what: str, *, manifest_key: str = "manifest",
                   error: type[Exception] = ValueError, format: str | None = None,
                   versions: Collection[int] = ()
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read :func:`pack_checked`'s bytes: ``(manifest, arrays)`` once every array matches its
    sha256 in the manifest (and, with ``format``, the manifest names that format and one of
    ``versions``), else ``error`` naming ``source`` and what is wrong.

    The manifest itself is not checksummed: whatever it says about the arrays is for the
    caller to check before use.
    """
    try:
        data = load_npz(raw)
    except ValueError as exc:
        raise error(f"{source}: not a readable {what} ({exc})") from exc
    try:
        stored = data.pop(manifest_key)
        text = stored.tobytes().decode() if stored.dtype == np.uint8 else str(stored)
        manifest = json.loads(text)
    except Exception as exc:  # noqa: BLE001
        raise error(f"{source}: missing or unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict):
        raise error(f"{source}: not a {what} (its manifest is not an object)")
    sums = manifest.get("sha256")
    if not isinstance(sums, dict) or set(sums) != set(data):
        raise error(f"{source}: the arrays do not match the manifest (file damaged or not a {what})")
    for key, arr in data.items():
        if array_sha256(arr) != sums[key]:
            raise error(f"{source}: checksum mismatch in array '{key}' (file corrupted)")
    if format is not None and manifest.get("format") != format:
        raise error(f"{source}: not a {what} (format {manifest.get('format')!r}, expected "
                    f"{format!r})")
    if format is not None and manifest.get("version") not in versions:
        raise error(f"{source}: {what} version {manifest.get('version')!r} is not supported "
                    f"(this mixllm reads versions {list(versions)})")
    return manifest, data
