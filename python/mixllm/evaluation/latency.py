"""Queueing model of LLM latency, for the latency-aware score and for evaluation.

Each LLM serves ``slots`` requests at once; a request holds its slot for
``ttft_s + output_tokens / tokens_per_s`` seconds (time to first token plus generation, as the
MixLLM paper simulates it). A request that finds every slot busy waits for the earliest one to
free. The router does not see the live queue: as in the paper, each LLM's expected waiting
time is refreshed on a period (10 s there) and held in between, so routing decisions act on
slightly stale information, as they would in a service; :class:`mixllm.waiting.WaitTracker`
(the same belief the proxy keeps) adds the router's own dispatches to each refresh.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from ..types import LLM

__all__ = ["QueueSimulator", "arrival_times"]


def arrival_times(n: int, per_window: int = 100, window_s: float = 10.0, seed: int = 0,
                  poisson: bool = True) -> np.ndarray:
    """Arrival times (seconds, sorted) of ``n`` queries at ``per_window`` per ``window_s``.

    ``poisson=True`` draws exponential gaps at that rate (seeded); otherwise arrivals are
    evenly spaced (the paper's "100 queries per 10 s").
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    if isinstance(per_window, bool) or not isinstance(per_window, (int, np.integer)) \
            or per_window < 1:
        raise ValueError(f"per_window must be an int >= 1, got {per_window!r}")
    if not (isinstance(window_s, (int, float)) and math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be finite and > 0, got {window_s!r}")
    gap = window_s / per_window
    if not poisson:
        return np.arange(n) * gap
    t = np.cumsum(np.random.default_rng(seed).exponential(gap, size=n))
    return t - t[0] if n else t  # the stream starts at 0


class QueueSimulator:
    """Per-LLM slot queues with periodically refreshed waiting-time estimates.

    Parameters
    ----------
    llms : sequence of LLM
        The pool, with latency profiles (``ttft_s``, ``tokens_per_s``, ``slots``).
    refresh_s : float
        Period of the waiting-time estimates (> 0; ``inf`` = never refreshed after start).
    """

    def __init__(self, llms: Sequence[LLM], refresh_s: float = 10.0) -> None:
        if not (isinstance(refresh_s, (int, float)) and refresh_s > 0 and not math.isnan(refresh_s)):
            raise ValueError(f"refresh_s must be > 0, got {refresh_s!r}")
        self.refresh_s = float(refresh_s)
        self._llms: dict[str, LLM] = {}
        self._free: dict[str, list[float]] = {}
        self._estimate: dict[str, float] = {}
        self._next_refresh = 0.0
        self.last_refresh = -math.inf
        for llm in llms:
            self.add_llm(llm)

    @property
    def names(self) -> list[str]:
        return list(self._llms)

    def add_llm(self, llm: LLM, now: float = 0.0) -> None:
        """Add an LLM with all slots free at ``now``."""
        if not isinstance(llm, LLM):
            raise ValueError(f"llm must be an LLM, got {type(llm).__name__}")
        if llm.name in self._llms:
            raise ValueError(f"LLM already simulated: '{llm.name}'")
        self._llms[llm.name] = llm
        self._free[llm.name] = [float(now)] * llm.slots  # a min-heap of slot free times
        self._estimate[llm.name] = 0.0

    def remove_llm(self, name: str) -> None:
        if name not in self._llms:
            raise KeyError(f"unknown LLM: '{name}'")
        for d in (self._llms, self._free, self._estimate):
            del d[name]

    def wait_now(self, name: str, now: float) -> float:
        """The exact wait a request arriving at ``now`` would have at ``name``."""
        if name not in self._free:
            raise KeyError(f"unknown LLM: '{name}'")
        return max(0.0, self._free[name][0] - now)

    def estimates(self, now: float) -> dict[str, float]:
        """Waiting-time estimates as of the last refresh, refreshing first if one is due."""
        if now >= self._next_refresh:
            for name in self._llms:
                self._estimate[name] = self.wait_now(name, now)
            self.last_refresh = now
            step = self.refresh_s
            if math.isinf(step):
                self._next_refresh = math.inf
            else:
                self._next_refresh = (math.floor(now / step) + 1) * step
        return dict(self._estimate)

    def service_time(self, name: str, output_tokens: float) -> float:
        llm = self._llms[name]
        return llm.ttft_s + max(float(output_tokens), 0.0) / llm.tokens_per_s

    def submit(self, name: str, arrival_s: float, output_tokens: float) -> tuple[float, float]:
        """Queue a request; returns ``(wait_s, latency_s)`` (latency includes the wait)."""
        if name not in self._free:
            raise KeyError(f"unknown LLM: '{name}'")
        if not math.isfinite(arrival_s) or not math.isfinite(output_tokens) or output_tokens < 0:
            raise ValueError("arrival_s and output_tokens must be finite (tokens >= 0)")
        heap = self._free[name]
        start = max(arrival_s, heapq.heappop(heap))
        finish = start + self.service_time(name, output_tokens)
        heapq.heappush(heap, finish)
        return start - arrival_s, finish - arrival_s

    def reset(self, now: float = 0.0) -> None:
        for name, llm in self._llms.items():
            self._free[name] = [float(now)] * llm.slots
            self._estimate[name] = 0.0
        self._next_refresh = 0.0
        self.last_refresh = -math.inf
