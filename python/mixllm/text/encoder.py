"""What a text encoder is to mixllm: the :class:`Encoder` protocol, and the input checks and
read-only attributes every encoder shares.

Two encoders implement it: :class:`mixllm.text.onnx.OnnxEncoder` (a transformer on ONNX
Runtime, MiniLM by default) and :class:`mixllm.text.static.StaticEncoder` (a token table
distilled from it). :class:`~mixllm.text.pipeline.TextRouter`, the evaluation and the proxy
take any object with these members; ``isinstance(obj, Encoder)`` checks that they are there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar, overload, runtime_checkable

import numpy as np

__all__ = ["Encoder", "ReadOnly", "check_texts", "utf8_texts"]

T = TypeVar("T")


@runtime_checkable
class Encoder(Protocol):
    """A frozen text encoder: texts to unit-norm float32 embeddings, and token counts.

    Attributes
    ----------
    dim : int
        Embedding dimension.
    identity : str
        A short hash of everything that determines an embedding; a router trained on one
        encoder's embeddings is loaded only with an encoder of the same identity.
    max_length : int
        Tokens embedded per text (longer texts are truncated).
    model_sha256 : str
        sha256 of the model (or table) in use.

    Notes
    -----
    An encoder may also declare ``additive_counts = True`` (both encoders here do, for
    MiniLM's tokenizer): :meth:`count_tokens` of a text is then the sum of the counts of its
    blank-line-separated blocks (:func:`mixllm.text.tokens.counts_add_at_line_breaks`), and
    :meth:`~mixllm.text.pipeline.TextRouter.featurize` tokenises a prompt once when it
    embeds a part of it. Without it (it is not a member of the protocol, so older encoders
    still qualify) the whole prompt is counted apart from the part embedded.
    """

    @property
    def dim(self) -> int: ...

    @property
    def identity(self) -> str: ...

    @property
    def max_length(self) -> int: ...

    @property
    def model_sha256(self) -> str: ...

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embeddings ``(n, dim)`` float32 of the texts, in input order."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> np.ndarray:
        """Token counts ``(n,)`` int64 of the texts, without truncation or special tokens."""
        ...

    def encode_with_counts(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode` and :meth:`count_tokens` together, from one tokenisation where the
        encoder can (the static encoder; the transformer truncates what it embeds, so it
        counts separately)."""
        ...


class ReadOnly(Generic[T]):
    """A public read-only attribute over a private one, as a property that returns it:
    ``max_length = ReadOnly[int]("_max_length", "Tokens embedded per text.")``."""

    def __init__(self, attr: str, doc: str | None = None) -> None:
        self._attr = attr
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> ReadOnly[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> T | ReadOnly[T]:
        return self if obj is None else getattr(obj, self._attr)

    def __set__(self, obj: object, value: object) -> None:
        raise AttributeError(f"property {self._name!r} of {type(obj).__name__!r} object has "
                             f"no setter")


def check_texts(texts: Any, method: str) -> list[str]:
    """``texts`` as a list of valid Unicode ``str``, or a ``ValueError`` naming the bad one.

    A bare ``str`` is refused rather than read as a sequence of characters; so are bytes and
    anything that is not a list, tuple or 1-D array.
    """
    if isinstance(texts, str):
        raise ValueError(f"{method} takes a sequence of texts, got a single str "
                         "(wrap it in a list, or use encode_one)")
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1:
            raise ValueError(f"texts must be one-dimensional, got shape {texts.shape}")
    elif not isinstance(texts, Sequence) or isinstance(texts, (bytes, bytearray)):
        raise ValueError(f"texts must be a list or tuple of str, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            hint = " (decode bytes to str first)" if isinstance(t, (bytes, bytearray)) else ""
            raise ValueError(f"texts[{i}] must be str, got {type(t).__name__}{hint}")
    utf8_texts(out)
    return out


def utf8_texts(texts: list[str]) -> list[bytes]:
    """The texts' UTF-8 bytes; a lone surrogate raises ``ValueError`` naming the text (the
    Rust tokenizer would raise an opaque ``TypeError``)."""
    raw = []
    for i, t in enumerate(texts):
        try:
            raw.append(t.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise ValueError(f"texts[{i}] is not valid Unicode ({exc.reason} at "
                             f"position {exc.start})") from None
    return raw


def check_text(text: Any) -> str:
    """One text for ``encode_one``: a ``str``, else ``ValueError``."""
    if not isinstance(text, str):
        hint = " (decode bytes to str first)" if isinstance(text, (bytes, bytearray)) else ""
        raise ValueError(f"text must be str, got {type(text).__name__}{hint}")
    return text
