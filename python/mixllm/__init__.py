"""mixllm: dynamic routing among mixed LLMs (MixLLM, arXiv 2502.18482) with a native core.

The names most users need are here; the submodules hold the rest:
:mod:`mixllm.data` (loaders), :mod:`mixllm.encoder`, :mod:`mixllm.tags`,
:mod:`mixllm.pipeline`, :mod:`mixllm.evaluate`, :mod:`mixllm.latency`.
"""

from ._core import available_backends, set_simd_backend, simd_backend
from .data import DataError, RoutingData, load, load_pool, save_pool
from .encoder import CacheInfo, Encoder, EncoderError
from .pipeline import PipelineConfig, TextRouter
from .router import LLM, Decision, Router, StateError
from .tags import TagTransform

__all__ = [
    "LLM",
    "CacheInfo",
    "DataError",
    "Decision",
    "Encoder",
    "EncoderError",
    "PipelineConfig",
    "Router",
    "RoutingData",
    "StateError",
    "TagTransform",
    "TextRouter",
    "available_backends",
    "load",
    "load_pool",
    "save_pool",
    "set_simd_backend",
    "simd_backend",
]
__version__ = "0.1.0"
