"""The OpenAI-compatible endpoint behind each pool LLM, read from the pool file's serving fields."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..data.pool import PathLike, load_endpoints

__all__ = ["Backend", "load_backends"]


@dataclass(frozen=True)
class Backend:
    """Where ``mixllm serve`` sends an LLM's requests: an OpenAI-compatible endpoint, named
    by the pool file's serving fields (:func:`load_backends`).

    Parameters
    ----------
    name : str
        The pool LLM this backend serves.
    base_url : str
        ``http(s)://host[:port]/path`` up to and excluding ``/chat/completions``.
    model : str
        The backend's own model id (defaults to ``name``).
    api_key_env : str or None
        Name of the environment variable holding the API key; the key itself is never stored.
    timeout_s : float
        Seconds to wait for the backend before falling back to the next LLM (> 0).
    """

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    timeout_s: float = 60.0

    def api_key(self) -> str | None:
        """The key, read from the environment at call time (``None`` when unset)."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


def load_backends(path: PathLike) -> dict[str, Backend]:
    """The serving endpoints of a pool file: LLM name -> :class:`Backend`, for the entries
    that give a ``base_url`` (optional fields ``model``, ``api_key_env``, ``timeout_s``)."""
    return {name: Backend(**ep) for name, ep in load_endpoints(path).items()}
