"""What a router believes each LLM's waiting time is: one model for the evaluation and the proxy.

Measurements of an LLM's queue come now and then -- from the queue simulator on its refresh
period during an evaluation (:mod:`mixllm.evaluation.latency`), from the proxy's own count of
requests in flight at every dispatch and completion (:mod:`mixllm.serving.proxy`) -- and
between two of them the router still has to route. :class:`WaitTracker` holds the belief in
between: the last measurement, plus the backlog of the requests the router dispatched since,
drained at one second per second. The router's latency penalty reads it through
:meth:`mixllm.router.Router.set_waiting_time`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from .types import LLM

__all__ = ["WaitTracker"]


class WaitTracker:
    """A router's running belief of each LLM's waiting time between two refreshes.

    A refreshed measurement goes stale as soon as the router sends traffic: with 100 queries
    per 10 s, a router that trusts the last refresh sends the whole window to whichever LLM was
    idle at the refresh, and overloads it. The tracker adds what the router itself dispatched:
    in a fluid model of the queue, a request adds ``(ttft_s + tokens / tokens_per_s) / slots``
    seconds of backlog to its LLM, and backlog drains at one second per second::

        wait_k(t) = max(0, measured_k + dispatched_k / slots_k - (t - t_refresh_k))

    (the drain term only applies to backlog, so an idle LLM stays at 0 until it fills).

    Every LLM has its own refresh time, so measurements may come for all LLMs at once (the
    simulator's period) or for one at a time (the proxy's events). Safe to use from several
    threads.
    """

    def __init__(self, llms: Sequence[LLM]) -> None:
        self._lock = threading.Lock()
        self._llms = {llm.name: llm for llm in llms}
        self._base: dict[str, float] = {n: 0.0 for n in self._llms}
        self._added: dict[str, float] = {n: 0.0 for n in self._llms}
        self._t: dict[str, float] = {n: 0.0 for n in self._llms}

    def refresh(self, now: float, waits: Mapping[str, float]) -> None:
        """Replace the belief about the LLMs in ``waits`` with their waits measured at ``now``."""
        with self._lock:
            for name, wait in waits.items():
                if name not in self._llms:
                    raise KeyError(f"unknown LLM: {name!r}")
                self._t[name] = float(now)
                self._base[name] = max(0.0, float(wait))
                self._added[name] = 0.0

    def add_llm(self, llm: LLM) -> None:
        with self._lock:
            self._llms[llm.name] = llm
            self._base[llm.name] = self._added[llm.name] = self._t[llm.name] = 0.0

    def dispatched(self, name: str, output_tokens: float) -> None:
        """Account for one request sent to ``name`` with this (predicted) output length."""
        llm = self._llms[name]
        service = llm.ttft_s + max(float(output_tokens), 0.0) / llm.tokens_per_s
        with self._lock:
            self._added[name] += service / llm.slots

    def estimate(self, name: str, now: float) -> float:
        """The believed waiting time of ``name`` at ``now`` (seconds)."""
        with self._lock:
            backlog = self._base[name] + self._added[name]
            elapsed = max(0.0, float(now) - self._t[name])
        return max(0.0, backlog - elapsed) if backlog > 0 else 0.0

    def estimates(self, now: float) -> dict[str, float]:
        return {n: self.estimate(n, now) for n in list(self._llms)}
