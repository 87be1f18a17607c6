"""mixllm: dynamic routing among mixed LLMs (MixLLM, arXiv 2502.18482) with a native core."""

from ._core import available_backends, set_simd_backend, simd_backend
from .router import LLM, Decision, Router, StateError

__all__ = [
    "LLM",
    "Decision",
    "Router",
    "StateError",
    "available_backends",
    "set_simd_backend",
    "simd_backend",
]
__version__ = "0.1.0"
