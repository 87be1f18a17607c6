"""Static text encoder: a token-embedding table distilled from the ONNX transformer.

The fast option beside :class:`mixllm.text.onnx.OnnxEncoder` (the accurate one). A text's tokens
``t_1 .. t_L`` (the transformer's own WordPiece tokenizer, no special tokens, the first
``max_length`` kept) give::

    s = sum_i w[t_i] T[t_i]                 weighted sum of table rows (float32, C++ core)
    e = s / max(||s||_2, 1e-12)             L2 normalisation (a text with no tokens: zeros)

computed by the ``embed_pool`` kernel of the native core (scalar / AVX2 / AVX-512, held to the
float64 NumPy reference :func:`mixllm._reference.embed_pool`). Routing a 50-token query costs
one tokenisation and one kernel call, tens of microseconds instead of milliseconds.

The table (:class:`StaticTable`, built by :func:`build_table`):

* ``T0[t]``: the transformer's token outputs for the one-token text ``[CLS] t [SEP]``,
  mean-pooled over the three positions and *not* normalised (a token's length is part of
  what it contributes to a sum), for
  every vocabulary token (30,522 for MiniLM: about 40 s on 2 cores, once);
* ``T = (T0 - mean) V_k``: PCA to ``dim`` components (default 256), each component's sign
  fixed so that its largest loading is positive (SVD signs are otherwise arbitrary);
* ``w[t] = a / (a + p_t)``: SIF weights (Arora et al. 2017, ``a = 1e-3``) with Zipf
  probabilities ``p_t = 1 / (r_t H)`` by rank, ``H = ln V + 0.5772``. WordPiece vocabularies
  list whole words by decreasing frequency after their special, unused and single-character
  entries: the rank is ``t - t_the + 1`` from the id of ``"the"``, and the entries before it
  get rank 1000 (weight 0.92, a mid-frequency token) since their frequency is unknown.

Tables are files: ``.npz`` holding ``table`` (float16), ``weights`` (float32), the
``tokenizer`` (the tokenizer.json bytes, so a table file is a whole encoder) and a JSON
``meta`` with the build specification and the sha256 of each array, checked on load; written to
a temporary file and renamed, never pickled. The default table is built at first use into
``~/.cache/mixllm/static/`` (``$XDG_CACHE_HOME`` respected), or explicitly with
``mixllm static-table``.

The encoder's :attr:`StaticEncoder.identity` hashes the build *specification* (source model
and tokenizer sha256, ``dim``, weighting) and ``max_length``, not the table's bytes, so a
router saved on one machine loads on another that rebuilt the same table; the table's own
sha256 is :attr:`StaticEncoder.model_sha256`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from .. import _core
from .._io import atomic_write, pack_checked, unpack_checked
from .encoder import ReadOnly, check_text, check_texts
from .tokens import counts_add_at_line_breaks

__all__ = ["DEFAULT_DIM", "DEFAULT_MAX_LENGTH", "StaticEncoder", "StaticTable", "build_table",
           "default_table_path"]

#: PCA components kept by the default table.
DEFAULT_DIM = 256
#: Tokens pooled per text (a static table has no position limit; long prompts are cut here).
DEFAULT_MAX_LENGTH = 512
_TABLE_FORMAT = "mixllm-static-table"
_TABLE_VERSION = 1
_ENCODER_FORMAT = "mixllm-static-encoder/1"
_SIF_A = 1e-3
_UNRANKED = 1000.0
_ARRAYS = ("table", "weights", "tokenizer")


def default_table_path(dim: int = DEFAULT_DIM, cache_dir: str | os.PathLike | None = None
                       ) -> Path:
    """Where the default (MiniLM) table of ``dim`` components is cached."""
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache_dir = Path(base) / "mixllm"
    return Path(cache_dir) / "static" / f"minilm-int8-static-d{int(dim)}-v{_TABLE_VERSION}.npz"


def zipf_sif_weights(tokenizer: Tokenizer, a: float = _SIF_A) -> np.ndarray:
    """SIF weights ``a / (a + p)`` from Zipf probabilities by vocabulary rank (module doc)."""
    V = tokenizer.get_vocab_size()
    first = tokenizer.token_to_id("the")
    first = 0 if first is None else int(first)
    rank = np.full(V, _UNRANKED)
    rank[first:] = np.arange(1, V - first + 1)
    p = 1.0 / (rank * (np.log(V) + 0.5772))
    return (a / (a + p)).astype(np.float32)


@dataclass(frozen=True)
class StaticTable:
    """A token-embedding table with its weights and tokenizer.

    Attributes
    ----------
    table : ndarray of float32, shape (vocab, dim)
    weights : ndarray of float32, shape (vocab,), non-negative
    tokenizer_json : bytes
        The tokenizer.json the ids come from.
    spec : dict
        How the table was made (JSON-ready); it determines the encoder identity.
    """

    table: np.ndarray
    weights: np.ndarray
    tokenizer_json: bytes
    spec: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = np.ascontiguousarray(self.table, dtype=np.float32)
        w = np.ascontiguousarray(self.weights, dtype=np.float32)
        if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
            raise ValueError(f"table must be 2-d (vocab, dim), got shape {t.shape}")
        if w.shape != (t.shape[0],):
            raise ValueError(f"weights must have shape ({t.shape[0]},), got {w.shape}")
        if not (np.isfinite(t).all() and np.isfinite(w).all()) or (w < 0).any():
            raise ValueError("table and weights must be finite and weights non-negative")
        t.flags.writeable = False
        w.flags.writeable = False
        object.__setattr__(self, "table", t)
        object.__setattr__(self, "weights", w)
        if not self.spec:
            # A table made from arrays: its identity is its content.
            object.__setattr__(self, "spec", {"custom_sha256": hashlib.sha256(
                t.astype("<f2").tobytes() + w.tobytes() + self.tokenizer_json).hexdigest()})

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def to_bytes(self) -> bytes:
        """The ``.npz`` file content (table stored as float16)."""
        arrays = {"table": self.table.astype("<f2"), "weights": self.weights.astype("<f4"),
                  "tokenizer": np.frombuffer(self.tokenizer_json, dtype=np.uint8)}
        meta = {"format": _TABLE_FORMAT, "version": _TABLE_VERSION, "spec": self.spec}
        return pack_checked(meta, arrays, manifest_key="meta", text=True)

    def save(self, path: str | os.PathLike) -> None:
        """Write the table file atomically (temporary file, fsync, rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "StaticTable":
        """Read and check a table file; ``ValueError`` naming the problem if it is damaged."""
        path = Path(path)
        meta, arrays = unpack_checked(path.read_bytes(), path, "static table", manifest_key="meta",
                                      format=_TABLE_FORMAT, versions=(_TABLE_VERSION,))
        if sorted(arrays) != sorted(_ARRAYS):
            raise ValueError(f"{path}: arrays {sorted(arrays)}, expected {sorted(_ARRAYS)}")
        if arrays["table"].dtype != np.dtype("<f2") or arrays["weights"].dtype != np.dtype("<f4") \
                or arrays["tokenizer"].dtype != np.uint8:
            raise ValueError(f"{path}: unexpected array types")
        return cls(arrays["table"], arrays["weights"], arrays["tokenizer"].tobytes(),
                   dict(meta.get("spec") or {}))


def build_table(encoder: Any = None, *, dim: int = DEFAULT_DIM,
                token_ids: Sequence[int] | None = None, batch_size: int = 512,
                progress: bool = False) -> StaticTable:
    """Distil a table from a transformer :class:`~mixllm.text.onnx.OnnxEncoder` (default MiniLM).

    Parameters
    ----------
    encoder : OnnxEncoder, optional
        The transformer; its tokenizer becomes the table's.
    dim : int
        PCA components kept (at most the hidden size and the number of tokens distilled).
    token_ids : sequence of int, optional
        Distil only these tokens (e.g. those of a corpus); the others get zero rows and zero
        weight, so they are ignored when pooling. Default: the whole vocabulary.
    batch_size : int
        One-token texts per model run.
    progress : bool
        A tqdm bar over the tokens.
    """
    from tqdm import tqdm

    if encoder is None:
        from .onnx import OnnxEncoder

        encoder = OnnxEncoder(cache_size=0)
    tok_json = Path(encoder.tokenizer_path).read_bytes()
    tok = Tokenizer.from_str(tok_json.decode("utf-8"))
    V = tok.get_vocab_size()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        raise ValueError("build_table needs a WordPiece tokenizer with [CLS] and [SEP]")
    ids = np.arange(V) if token_ids is None else np.unique(np.asarray(token_ids, dtype=np.int64))
    if len(ids) == 0 or ids[0] < 0 or ids[-1] >= V:
        raise ValueError(f"token_ids must be non-empty ids in [0, {V})")
    raw = np.zeros((len(ids), encoder.dim), dtype=np.float64)
    with tqdm(total=len(ids), disable=not progress, desc="distilling token table",
              unit="token", dynamic_ncols=True) as bar:
        for s in range(0, len(ids), batch_size):
            b = ids[s:s + batch_size]
            # Each token as a one-token text, pooled exactly as the encoder pools a sentence.
            # Not normalised: a token's vector length is part of what it contributes to a sum.
            inp = np.stack([np.full(len(b), cls_id), b, np.full(len(b), sep_id)], axis=1)
            hidden = encoder.token_states(inp)
            raw[s:s + len(b)] = hidden.astype(np.float64).mean(axis=1)
            bar.update(len(b))
    k = int(min(dim, raw.shape[0], raw.shape[1]))
    mean = raw.mean(axis=0)
    _, sv, vt = np.linalg.svd(raw - mean, full_matrices=False)
    comps = vt[:k]
    flip = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps *= flip[:, None]
    table = np.zeros((V, k), dtype=np.float32)
    table[ids] = (raw - mean) @ comps.T
    weights = np.zeros(V, dtype=np.float32)
    weights[ids] = zipf_sif_weights(tok)[ids]
    spec = {"source_model_sha256": encoder.model_sha256,
            "tokenizer_sha256": hashlib.sha256(tok_json).hexdigest(),
            "rows": "mean pooling of [CLS] t [SEP]", "dim": k,
            "pca": "centred; component sign: largest loading positive",
            "explained_variance": float((sv[:k] ** 2).sum() / (sv ** 2).sum()),
            "weights": {"kind": "zipf-sif", "a": _SIF_A, "unranked_rank": _UNRANKED},
            "tokens": "all" if token_ids is None else hashlib.sha256(ids.tobytes()).hexdigest()}
    # explained_variance depends on floating-point detail; it is kept out of the identity.
    return StaticTable(table, weights, tok_json, spec)


class StaticEncoder:
    """Sentence embeddings from a static token table, pooled in the C++ core.

    An :class:`~mixllm.text.encoder.Encoder`, like the transformer it is distilled from; its
    :meth:`encode_with_counts` embeds and counts from one tokenisation.

    Parameters
    ----------
    table : StaticTable or path, optional
        The table, or a table file. Default: the MiniLM table of ``dim`` components cached
        at :func:`default_table_path`, built there (about 40 s on 2 cores) when missing and
        ``build`` is true.
    dim : int
        Components of the default table.
    max_length : int
        Tokens pooled per text (the first ones); longer texts are truncated.
    cache_dir : path, optional
        Cache folder of the default table (default ``~/.cache/mixllm``).
    build : bool
        Build a missing default table (else ``FileNotFoundError``).
    progress : bool
        A progress bar while building.
    """

    def __init__(self, table: StaticTable | str | os.PathLike | None = None, *,
                 dim: int = DEFAULT_DIM, max_length: int = DEFAULT_MAX_LENGTH,
                 cache_dir: str | os.PathLike | None = None, build: bool = True,
                 progress: bool = False) -> None:
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) \
                or max_length < 1:
            raise ValueError(f"max_length must be an integer >= 1, got {max_length!r}")
        self._path: Path | None = None
        if table is None:
            self._path = default_table_path(dim, cache_dir)
            if not self._path.is_file():
                if not build:
                    raise FileNotFoundError(f"static table not found: {self._path} (build it "
                                            "with 'mixllm static-table')")
                build_table(dim=dim, progress=progress).save(self._path)
            table = StaticTable.load(self._path)
        elif not isinstance(table, StaticTable):
            self._path = Path(table)
            table = StaticTable.load(self._path)
        self._table = table
        try:
            self._tok = Tokenizer.from_str(table.tokenizer_json.decode("utf-8"))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"static table: unloadable tokenizer ({exc})") from exc
        self._tok.no_padding()
        self._tok.no_truncation()
        if self._tok.get_vocab_size() > table.table.shape[0]:
            raise ValueError(f"the tokenizer has {self._tok.get_vocab_size()} tokens but the "
                             f"table only {table.table.shape[0]} rows")
        post = self._tok.post_processor
        self._n_special = 0 if post is None else int(post.num_special_tokens_to_add(False))
        self._additive = counts_add_at_line_breaks(self._tok)
        self._max_length = int(max_length)
        ident = json.dumps({"format": _ENCODER_FORMAT, "max_length": self._max_length,
                            "spec": {k: v for k, v in table.spec.items()
                                     if k != "explained_variance"}}, sort_keys=True)
        self._identity = hashlib.sha256(ident.encode()).hexdigest()[:16]
        self._table_sha = hashlib.sha256(table.table.astype("<f2").tobytes()
                                         + table.weights.tobytes()).hexdigest()

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return self._table.dim

    max_length = ReadOnly[int]("_max_length", "Tokens embedded per text.")
    additive_counts = ReadOnly[bool]("_additive", "Counts add over a text's blank-line-"
                                     "separated blocks (:func:`~mixllm.text.tokens."
                                     "counts_add_at_line_breaks`; MiniLM's tokenizer: true).")
    identity = ReadOnly[str]("_identity", "16 hex digits hashing the table's build "
                                          "specification and ``max_length``.")
    model_sha256 = ReadOnly[str]("_table_sha", "sha256 of the table and weights as stored "
                                               "(float16 table).")
    table_path = ReadOnly[Path | None]("_path", "The table file the encoder was loaded from "
                                                "(None for one built in memory).")

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self._table.spec)

    def __repr__(self) -> str:
        return (f"StaticEncoder(dim={self.dim}, max_length={self._max_length}, "
                f"identity='{self._identity}')")

    # ------------------------------------------------------------------ encoding
    def _pool(self, ids: list[list[int]]) -> np.ndarray:
        cut = [r[:self._max_length] for r in ids]
        offsets = np.zeros(len(cut) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in cut], out=offsets[1:])
        flat = np.fromiter((t for r in cut for t in r), dtype=np.int32, count=int(offsets[-1]))
        return _core.embed_pool(self._table.table, self._table.weights, flat, offsets)

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if len(texts) == 1:  # the serving path: no thread-pool hand-off
            return [self._tok.encode(texts[0], add_special_tokens=False).ids]
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Unit-norm float32 embeddings ``(n, dim)`` in input order (``progress`` is accepted
        for interface compatibility; encoding is fast enough not to need a bar)."""
        return self._pool(self._ids(check_texts(texts, "encode")))

    def encode_with_counts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode` and :meth:`count_tokens` from one tokenisation."""
        ids = self._ids(check_texts(texts, "encode"))
        return self._pool(ids), np.array([len(r) for r in ids], dtype=np.int64)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([check_text(text)])[0]

    def count_tokens(self, texts: Sequence[str], *, special_tokens: bool = False) -> np.ndarray:
        """Token counts without truncation (the same counts as the transformer encoder's)."""
        ids = self._ids(check_texts(texts, "count_tokens"))
        extra = self._n_special if special_tokens else 0
        return np.array([len(r) + extra for r in ids], dtype=np.int64)
