"""mixllm: dynamic routing among mixed LLMs (MixLLM, arXiv 2502.18482) with a native core.

The names most users need are here; the subpackages hold the rest, one part each
(docs/ARCHITECTURE.md draws them):

* :mod:`mixllm.types` -- :class:`LLM`, :class:`Decision` and the errors (no native code);
* :mod:`mixllm.router` -- :class:`Router`, over the C++ core :mod:`mixllm._core` (or the NumPy
  specification :mod:`mixllm._reference`);
* :mod:`mixllm.drift`, :mod:`mixllm.exploration`, :mod:`mixllm.decision_log` -- per-LLM change
  detection, stochastic decisions with propensities, the JSONL decision log (what
  :mod:`mixllm.evaluation.ope` judges a new policy from);
* :mod:`mixllm.data` -- :class:`RoutingData` and one reader per file format, pool files;
* :mod:`mixllm.text` -- text to features: tokens, encoders, the tag transform, and
  :class:`TextRouter`, the path from prompt text to a decision;
* :mod:`mixllm.evaluation` -- replaying data through routers, experiments, the latency
  simulation, budgets, plots and off-policy evaluation;
* :mod:`mixllm.serving` -- the OpenAI-compatible proxy and its Ray Serve replicas.

The top-level names load their module on first use, so ``import mixllm`` stays light: no ONNX
Runtime, tokenizers or tqdm until an encoder is used, and no native core until a router is.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module (relative to mixllm) that defines it
_EXPORTS = {
    "LLM": "types",
    "Decision": "types",
    "DataError": "types",
    "EncoderError": "types",
    "StateError": "types",
    "Router": "router",
    "DriftMonitor": "drift",
    "Explorer": "exploration",
    "DecisionLogger": "decision_log",
    "read_log": "decision_log",
    "available_backends": "_core",
    "set_simd_backend": "_core",
    "simd_backend": "_core",
    "RoutingData": "data",
    "load_data": "data",
    "load_pool": "data",
    "save_pool": "data",
    "Encoder": "text.encoder",
    "CacheInfo": "text.onnx",
    "OnnxEncoder": "text.onnx",
    "StaticEncoder": "text.static",
    "TagTransform": "text.tags",
    "PipelineConfig": "text.pipeline",
    "TextDecision": "text.pipeline",
    "TextRouter": "text.pipeline",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what static tools see; at run time __getattr__ imports on first use
    from ._core import available_backends, set_simd_backend, simd_backend
    from .data import RoutingData, load_data, load_pool, save_pool
    from .decision_log import DecisionLogger, read_log
    from .drift import DriftMonitor
    from .exploration import Explorer
    from .router import Router
    from .text.encoder import Encoder
    from .text.onnx import CacheInfo, OnnxEncoder
    from .text.pipeline import PipelineConfig, TextDecision, TextRouter
    from .text.static import StaticEncoder
    from .text.tags import TagTransform
    from .types import LLM, DataError, Decision, EncoderError, StateError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mixllm' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
