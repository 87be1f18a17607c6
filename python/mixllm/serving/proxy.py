"""``mixllm serve``: an OpenAI-compatible routing proxy (FastAPI + uvicorn).

Clients point their OpenAI SDK at the proxy. ``POST /v1/chat/completions`` with ``model`` set
to ``"mixllm"`` (or ``"mixllm:lam=0.5"`` for a per-request willingness to pay) is routed by the
router; a pool LLM's name is passed through to that LLM. Every response names the LLM that
answered and the score terms in ``x-mixllm-*`` headers. A backend that fails (connection error,
timeout, HTTP 429 or 5xx) is skipped for the next-best LLM; a stream falls back only before its
first byte. ``POST /v1/feedback`` learns from a response's quality (or a thumb) together with the
output tokens the proxy observed; ``GET /metrics`` is Prometheus text. See docs/SERVING.md.

Needs the ``serve`` extra: ``pip install 'mixllm[serve]'``.
"""

# No "from __future__ import annotations": FastAPI reads the handlers' annotations at run time
# and fastapi is imported inside create_app (an optional extra).

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write, load_npz, pack_checked, unpack_checked
from ..decision_log import DecisionLogger, DecisionRecorder
from ..drift import DriftCollector
from ..exploration import Explorer
from ..router import DEFAULT_LAM, Router
from ..text.encoder import Encoder
from ..text.pipeline import PipelineConfig, TextDecision, TextRouter, prompt_view
from ..types import LLM, Decision
from ..waiting import WaitTracker
from .backend import Backend

__all__ = ["COLD_ALPHA", "FeedbackConflict", "Proxy", "ServeConfig", "create_app",
           "create_proxy", "require_serve_extra", "run"]

#: LinUCB exploration weight of a cold start (no state): with zero priors every LLM scores the
#: same predicted quality, so price decides; the bonus of an LLM shrinks as it gets feedback,
#: so the next cheapest ones are tried in turn (the online experiments' ``--explore``).
COLD_ALPHA = 0.05

log = logging.getLogger("mixllm.serving.proxy")

_MODEL_RE = re.compile(r"mixllm(?::lam=([^\s]+))?")
_RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def require_serve_extra() -> None:
    """Raise a clear error when the ``serve`` extra's packages are missing."""
    missing = []
    for mod in ("fastapi", "uvicorn", "aiohttp", "prometheus_client"):
        try:
            __import__(mod)
        except ModuleNotFoundError:
            missing.append(mod)
    if missing:
        raise ModuleNotFoundError(
            f"mixllm serve needs {', '.join(missing)}: pip install 'mixllm[serve]'")


@dataclass(frozen=True)
class ServeConfig:
    """Limits and periods of the proxy.

    Parameters
    ----------
    max_body_bytes : int
        Largest accepted request body (HTTP 413 above).
    max_pending : int
        Responses remembered for ``/v1/feedback`` (oldest forgotten first).
    pending_ttl_s : float
        Seconds a response id takes feedback (default one day); kept across restarts in the
        state folder, and an answered id is refused (409) for as long.
    save_every_s : float
        Period of saving the learned state to ``--state`` when it changed (also on shutdown).
    latency_halflife : int
        Responses over which a backend's observed latency is averaged (exponentially).
    feedback_weight_thumbs : float
        Weight of a thumb in the ridge regression (a refined quality has weight 1).
    quality_range : (float, float)
        Accepted ``quality`` feedback, used unless the router records the range of the data it
        was fitted on (``mixllm fit`` does).
    breaker_failures : int
        Consecutive failures (error, timeout, 429/5xx) after which a backend is skipped.
    breaker_cooldown_s : float
        Seconds a failing backend is skipped before one request probes it again.
    save_state : bool
        Save to ``state_dir`` (``False``: load it only, e.g. one of several replicas).
    decision_log : str, optional
        JSONL file that every routed decision and its observed cost, tokens and quality are
        appended to (:mod:`mixllm.decision_log`; the input of ``mixllm ope``).
    log_features : bool
        Put the router's features of each query in the decision log.
    explore_temperature, explore_epsilon, explore_seed :
        Stochastic routing (:class:`mixllm.exploration.Explorer`): the LLM is sampled from
        the scores and its propensity logged. Both 0 (default): the router's own choice.
    drift_window : int
        Window of the per-LLM change detector behind ``mixllm_drift_*`` in ``/metrics``
        (:mod:`mixllm.drift`); 0 turns it off.
    encode_inline : bool, optional
        Featurise a routed request on the event loop (``True``) or in a worker thread
        (``False``). ``None`` (default): on the event loop for the static encoder (~0.1-0.2 ms
        a prompt, cheaper than the hand-off to a thread), in a thread for any other encoder
        (a transformer's milliseconds would hold up every other request). Set it for an
        encoder of your own.
    blas_threads : int, optional
        Threads the process's BLAS may use (set when the proxy is created, for the whole
        process). Default 1: the per-request products (the neighbour lookup over the stored
        prompts, the tag transform) are one row each, and a BLAS that splits one row over
        threads makes the request wait for every thread: on the 2-core machine with other
        work running, the router's own p99 went from ~0.5 ms to ~16 ms with the default
        threading. ``None`` leaves the process's setting alone.
    """

    max_body_bytes: int = 1 << 20
    max_pending: int = 100_000
    pending_ttl_s: float = 86_400.0
    save_every_s: float = 60.0
    latency_halflife: int = 20
    feedback_weight_thumbs: float = 0.5
    quality_range: tuple[float, float] = (0.0, 1.0)
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0
    save_state: bool = True
    decision_log: str | None = None
    log_features: bool = True
    explore_temperature: float = 0.0
    explore_epsilon: float = 0.0
    explore_seed: int | None = None
    drift_window: int = 200
    encode_inline: bool | None = None
    blas_threads: int | None = 1

    def __post_init__(self) -> None:
        v = self.blas_threads
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"blas_threads must be an int >= 1 or None, got {v!r}")
        if self.encode_inline is not None and not isinstance(self.encode_inline, bool):
            raise ValueError(f"encode_inline must be True, False or None, got "
                             f"{self.encode_inline!r}")
        for name in ("max_body_bytes", "max_pending", "latency_halflife", "breaker_failures"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        for name in ("pending_ttl_s", "save_every_s", "feedback_weight_thumbs",
                     "breaker_cooldown_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 \
                    or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        lo_hi = self.quality_range
        if not (isinstance(lo_hi, tuple) and len(lo_hi) == 2 and all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in lo_hi)
                and lo_hi[0] < lo_hi[1]):
            raise ValueError(f"quality_range must be (low, high) with low < high, got {lo_hi!r}")


def limit_blas_threads(n: int) -> None:
    """Let the process's BLAS libraries use at most ``n`` threads (``ServeConfig.blas_threads``),
    logged."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")
    log.info("BLAS limited to %d thread%s (per-request products are one row)", n,
             "" if n == 1 else "s")


class _Live:
    """Per backend: requests in flight and the observed latency, the proxy's measurement of
    its waiting time.

    The measured wait of a new request is zero while a slot is free, else the mean observed
    latency times the number of queued rounds ahead of it (``in_flight // slots``). Each
    measurement refreshes the router's belief (:class:`mixllm.waiting.WaitTracker`, the model
    the evaluation tests), which drains it between measurements.
    """

    def __init__(self, llms: Sequence[LLM], halflife: int) -> None:
        self._lock = threading.Lock()
        self.slots = {m.name: m.slots for m in llms}
        self.in_flight = {m.name: 0 for m in llms}
        self.latency = {m.name: m.ttft_s for m in llms}
        self._decay = 0.5 ** (1.0 / max(1, halflife))

    def start(self, name: str) -> float:
        with self._lock:
            self.in_flight[name] += 1
            return self._wait(name)

    def finish(self, name: str, seconds: float | None) -> float:
        with self._lock:
            self.in_flight[name] -= 1
            if seconds is not None:
                self.latency[name] = self._decay * self.latency[name] + (1 - self._decay) * seconds
            return self._wait(name)

    def _wait(self, name: str) -> float:
        return self.latency[name] * (self.in_flight[name] // self.slots[name])


class _Breaker:
    """Circuit breaking per backend (used from the event loop only, so no lock).

    ``failures`` consecutive failures open a backend's circuit: it is skipped for
    ``cooldown_s``; after that one request at a time may probe it (half-open). A success
    closes the circuit, a failed probe opens it for another cool-down.
    """

    def __init__(self, names: Sequence[str], failures: int, cooldown_s: float,
                 on_change: Any = None) -> None:
        self.failures, self.cooldown_s = failures, cooldown_s
        self.fails = dict.fromkeys(names, 0)
        self.open_until = dict.fromkeys(names, 0.0)  # 0: closed
        self.probing: set[str] = set()
        self.on_change = on_change or (lambda name, is_open: None)

    def is_open(self, name: str) -> bool:
        return self.open_until.get(name, 0.0) != 0.0

    def allow(self, name: str, now: float) -> bool:
        until = self.open_until.get(name, 0.0)
        if until == 0.0:
            return True
        if now < until or name in self.probing:
            return False
        self.probing.add(name)  # half-open: this request is the probe
        return True

    def abandon(self, name: str) -> None:
        """A request ended without an outcome (cancelled): a probe it was may be sent again."""
        self.probing.discard(name)

    def success(self, name: str) -> None:
        self.fails[name] = 0
        self.probing.discard(name)
        if self.open_until.get(name, 0.0) != 0.0:
            self.open_until[name] = 0.0
            log.info("backend %s answered again: circuit closed", name)
            self.on_change(name, False)

    def failure(self, name: str, now: float) -> None:
        self.fails[name] = self.fails.get(name, 0) + 1
        probe = name in self.probing
        self.probing.discard(name)
        if probe or (self.open_until.get(name, 0.0) == 0.0
                     and self.fails[name] >= self.failures):
            self.open_until[name] = now + self.cooldown_s
            log.warning("backend %s failed %d times in a row: skipped for %.0f s (circuit "
                        "open)", name, self.fails[name], self.cooldown_s)
            self.on_change(name, True)


@dataclass
class _Pending:
    """A response awaiting feedback: the router's features (``x``) and, for a router with an
    outcome memory, the view's embedding (``e``); or for a passthrough the view of its prompt
    (``text``), embedded only when feedback comes."""

    x: np.ndarray | None
    e: np.ndarray | None
    text: str | None
    llm: str
    output_tokens: float
    created: float  # time.time()


class FeedbackConflict(Exception):
    """Feedback for a response id that was already answered (HTTP 409)."""


_PENDING_FILE = "pending.npz"
# Version 2: the checked format of mixllm._io (a sha256 per array in the manifest) and the
# embeddings ``e`` the outcome memory learns at. Version 1 ("mixllm-pending/1"): unchecked, no
# embeddings; still read.
_PENDING_FORMAT, _PENDING_VERSION = "mixllm-pending", 2
_PENDING_V1 = "mixllm-pending/1"


class _State:
    """The router, the backends and what the proxy observed (shared by the handlers)."""

    def __init__(self, pool: Sequence[LLM], backends: Mapping[str, Backend],
                 state_dir: Path | None, encoder: Encoder | None, config: ServeConfig,
                 pipeline: PipelineConfig | None, lam: float | None) -> None:
        self.config = config
        self.state_dir = state_dir
        self.backends = dict(backends)
        self.tr = self._load_or_new(list(pool), encoder, pipeline, lam)
        self.names = [m.name for m in pool]  # the LLMs routed among (the pool file's)
        self.active = frozenset(self.names)
        self._active_for: tuple[tuple[str, ...], np.ndarray] = ((), np.zeros(0, np.intp))
        self.llms = {m.name: m for m in self.tr.router.llms}
        self.live = _Live(self.tr.router.llms, config.latency_halflife)
        self.waits = WaitTracker(self.tr.router.llms)
        self._waits_of: Router | None = None  # the router the waits below were set on
        self._waits_set: dict[str, float] = {}
        self.pending: collections.OrderedDict[str, _Pending] = collections.OrderedDict()
        self.answered: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.lock = threading.Lock()  # pending and answered tables, the dirty flags
        # Held by learning and by anything that replaces the router (a replica's sync), so
        # that no feedback lands on a router being replaced.
        self.sync_lock = threading.Lock()
        self.dirty = False  # the router learned since the last save
        self.pending_dirty = False  # ids were added or answered since the last save
        meta = self.tr.router.metadata.get("quality_range")
        self.quality_range = (float(meta[0]), float(meta[1])) if isinstance(meta, list) \
            and len(meta) == 2 else tuple(map(float, config.quality_range))
        from ..text.static import StaticEncoder

        self.inline = isinstance(self.tr.encoder, StaticEncoder) \
            if config.encode_inline is None else config.encode_inline
        self._load_pending()

    def _load_or_new(self, pool: list[LLM], encoder: Encoder | None,
                     pipeline: PipelineConfig | None, lam: float | None) -> TextRouter:
        wanted = {m.name: m for m in pool}
        if self.state_dir is not None and (self.state_dir / "manifest.json").is_file():
            tr = TextRouter.load(self.state_dir, encoder=encoder)
            router = tr.router
            stats = router.n_observations()
            log.info("loaded router state from %s: %d LLMs (%s), encoder %s, lam %s",
                     self.state_dir, len(stats),
                     ", ".join(f"{n}: {c} obs" for n, c in stats.items()),
                     _encoder_name(tr.encoder), router.lam)
            for name in router.names:
                if name in wanted and wanted[name] != router.llm(name):
                    was = router.llm(name)
                    router.update_llm(wanted[name])  # the pool file's prices and profile
                    log.info("%s: the pool file's prices and latency profile replace the "
                             "state's (input %g -> %g, output %g -> %g USD per 1M tokens)",
                             name, was.input_price, wanted[name].input_price,
                             was.output_price, wanted[name].output_price)
            for llm in pool:
                if llm.name not in router.names:
                    router.add_llm(llm)
                    log.info("added %s from the pool file with a cold prior", llm.name)
            inactive = [n for n in router.names if n not in wanted]
            if inactive:
                log.warning("kept %d LLMs of the state that the pool file does not name, "
                            "inactive (not routed to, saved back unchanged): %s",
                            len(inactive), ", ".join(inactive))
            if lam is not None:
                router.lam = lam
            elif math.isinf(router.lam):
                log.warning("the state routes with lam = inf (predicted quality alone, cost "
                            "ignored); set 'lam' in the pool file to make cost count")
            tr.pool = router.llms
        else:
            # Cold start: raw embeddings, zero priors. Every predicted quality is 0, so price
            # decides (lam finite); the LinUCB bonus (alpha) shrinks for an LLM as it gets
            # feedback, so the others are tried in turn.
            cfg = pipeline or PipelineConfig(tags=False, lam=DEFAULT_LAM, alpha=COLD_ALPHA)
            if lam is not None:
                cfg = dataclasses.replace(cfg, lam=lam)
            if encoder is None:  # TextRouter's default: MiniLM with the user's embedding cache
                from ..text.onnx import OnnxEncoder, default_cache_dir

                encoder = OnnxEncoder(cache_dir=default_cache_dir())
            router = Router(pool, int(encoder.dim), alpha=cfg.alpha, beta=cfg.beta,
                            tau=cfg.tau, ridge=10.0 if cfg.ridge is None else cfg.ridge,
                            lam=cfg.lam, cold_ridge=cfg.cold_ridge)
            tr = TextRouter(pool, cfg, encoder, router=router, feature_map="embedding")
            log.info("cold start%s: %d LLMs, encoder %s, lam %s, alpha %s",
                     "" if self.state_dir is None else f" (no state in {self.state_dir} yet)",
                     len(pool), _encoder_name(encoder), cfg.lam, cfg.alpha)
        # The first encoding builds what encoders build lazily (the ONNX session's buffers,
        # the tokenizer's caches): paid here rather than by the first request.
        tr.featurize("warm-up")
        log.info("routing among %d LLMs: %s", len(pool), ", ".join(m.name for m in pool))
        return tr

    # ------------------------------------------------------------------ routing
    def measured(self, name: str, wait: float) -> None:
        """A measurement of ``name``'s waiting time (at a dispatch or a completion)."""
        self.waits.refresh(time.monotonic(), {name: wait})

    def decide(self, prompt: str, lam: float | None) -> TextDecision:
        """Route a prompt on the believed waiting times of now."""
        router = self.tr.router
        if self._waits_of is not router:  # a new router (a replica's sync): set every wait
            self._waits_of, self._waits_set = router, {}
        last = self._waits_set
        for name, wait in self.waits.estimates(time.monotonic()).items():
            if last.get(name) != wait:  # mostly 0 while slots are free: set only changes
                router.set_waiting_time(name, wait)
                last[name] = wait
        return self.tr.decide(prompt, lam)

    def replace_router(self, step: Callable[[Router], Router | None]) -> None:
        """Run ``step(router)`` with learning held off; a router it returns replaces the
        current one, with the proxy's present waiting times (a replica adopting the merged
        state of its peers)."""
        with self.sync_lock:
            fresh = step(self.tr.router)
            if fresh is not None:
                for name, wait in self.waits.estimates(time.monotonic()).items():
                    fresh.set_waiting_time(name, wait)
                fresh.drift_monitor = self.tr.router.drift_monitor  # the running statistics
                self.tr.set_router(fresh)

    def active_decision(self, d: Decision) -> Decision:
        """``d`` restricted to the active LLMs (the pool file's): itself when the state holds
        no inactive ones, else a decision over the active columns, its choice the best of them
        (ties: pool order, as the router breaks them)."""
        names, idx = self._active_for
        if names != d.names:
            idx = np.array([k for k, n in enumerate(d.names) if n in self.active], np.intp)
            self._active_for = (d.names, idx)
        if len(idx) == len(d.names):
            return d
        terms = d.terms[:, idx]
        best = int(np.argmax(terms[5]))
        sub = tuple(d.names[k] for k in idx)
        return Decision(sub[best], best, sub, terms)

    @staticmethod
    def order(d: Decision, first: str) -> list[str]:
        """``first``, then the decision's other LLMs by decreasing score."""
        ranked = np.argsort(-d.score, kind="stable")
        return [first] + [d.names[k] for k in ranked if d.names[k] != first]

    # ------------------------------------------------------------------ feedback
    def remember(self, rid: str, routed: TextDecision | None, text: str | None, llm: str,
                 output_tokens: float) -> None:
        """Keep what a feedback on ``rid`` learns on: the decision's features (and embedding,
        where the outcome memory needs it), or a passthrough's ``text``."""
        x = e = None
        if routed is not None:
            x = routed.features
            e = routed.embedding if self.tr.memory is not None else None
        with self.lock:
            self.pending[rid] = _Pending(x, e, text, llm, output_tokens, time.time())
            self.pending_dirty = True
            while len(self.pending) > self.config.max_pending:
                self.pending.popitem(last=False)

    def check_quality(self, q: float) -> None:
        lo, hi = self.quality_range
        if not lo <= q <= hi:
            raise ValueError(f"'quality' must be in [{lo:g}, {hi:g}], got {q!r}")

    def feedback(self, rid: str, quality: float | None, up: bool | None) -> str:
        """Learn one answer for a response id: ``KeyError`` when unknown or expired,
        :class:`FeedbackConflict` when already answered, ``ValueError`` for a quality out of
        range (nothing learned then)."""
        if quality is not None:
            self.check_quality(quality)
        now = time.time()
        with self.lock:
            if rid in self.answered:
                raise FeedbackConflict(rid)
            p = self.pending.pop(rid, None)
            if p is None or now - p.created > self.config.pending_ttl_s:
                raise KeyError(rid)
            self.answered[rid] = now  # claimed: a concurrent repeat gets 409
            while len(self.answered) > self.config.max_pending:
                self.answered.popitem(last=False)
        try:
            x, e = p.x, p.e
            if x is None:  # a passthrough: embedded now
                E = self.tr.embed([p.text])
                x, e = self.tr.features(E)[0], E[0]
            with self.sync_lock:  # the router and the outcome memory, as TextRouter.learn does
                if quality is not None:
                    self.tr.learn(x, p.llm, quality, p.output_tokens, embedding=e)
                else:
                    self.tr.learn(x, p.llm, 1.0 if up else 0.0, p.output_tokens, embedding=e,
                                  weight=self.config.feedback_weight_thumbs)
        except BaseException:
            with self.lock:  # not learned: the id may be answered again
                self.answered.pop(rid, None)
                self.pending[rid] = p
            raise
        with self.lock:
            self.dirty = self.pending_dirty = True
        return p.llm

    # ------------------------------------------------------------------ persistence
    def save(self) -> bool:
        """Save the router when it learned (or was never saved) and the pending ids when they
        changed; ``True`` when anything was written."""
        if self.state_dir is None or not self.config.save_state:
            return False
        with self.lock:
            router = self.dirty or not (self.state_dir / "manifest.json").is_file()
            pending = self.pending_dirty or router
            self.dirty = self.pending_dirty = False
        if not pending:
            return False
        try:
            if router:
                self.tr.save(self.state_dir)
            n_pending = self._save_pending()
        except BaseException:
            with self.lock:  # not saved: try again at the next period
                self.dirty |= router
                self.pending_dirty = True
            raise
        r = self.tr.router
        if router:
            log.info("saved router state to %s: %d LLMs, %d observations, %d pending "
                     "response ids", self.state_dir, len(r.names),
                     sum(r.n_observations().values()), n_pending)
        else:
            log.info("saved %d pending response ids to %s", n_pending, self.state_dir)
        return True

    def _save_pending(self) -> int:
        """Write the pending and answered ids that have not expired (``pending.npz``)."""
        now = time.time()
        ttl = self.config.pending_ttl_s
        with self.lock:
            items = [(k, p) for k, p in self.pending.items() if now - p.created <= ttl]
            answered = [(k, t) for k, t in self.answered.items() if now - t <= ttl]
        texts = [i for i, (_, p) in enumerate(items) if p.x is None]
        dim = self.tr.router.dim
        X = np.zeros((len(items), dim))
        # the embeddings, where the outcome memory learns at them (NaN: not kept)
        Em = np.full((len(items), int(self.tr.encoder.dim) if self.tr.memory is not None
                      else 0), np.nan, np.float32)
        if texts:  # passthroughs: embedded now, off the request path
            E = self.tr.embed([items[i][1].text for i in texts])
            X[texts] = self.tr.features(E)
            if Em.shape[1]:
                Em[texts] = E
        for i, (_, p) in enumerate(items):
            if p.x is not None:
                X[i] = p.x
                if Em.shape[1] and p.e is not None:
                    Em[i] = p.e
        arrays = {"ids": np.array([k for k, _ in items], dtype=str).reshape(-1),
                  "llms": np.array([p.llm for _, p in items], dtype=str).reshape(-1),
                  "x": X, "e": Em,
                  "output_tokens": np.array([p.output_tokens for _, p in items], float),
                  "created": np.array([p.created for _, p in items], float),
                  "answered": np.array([k for k, _ in answered], dtype=str).reshape(-1),
                  "answered_at": np.array([t for _, t in answered], float)}
        meta = {"format": _PENDING_FORMAT, "version": _PENDING_VERSION, "dim": dim}
        atomic_write(self.state_dir / _PENDING_FILE,
                     pack_checked(meta, arrays, manifest_key="meta"))
        return len(items)

    def _load_pending(self) -> None:
        path = None if self.state_dir is None else self.state_dir / _PENDING_FILE
        if path is None or not path.is_file():
            return
        try:
            raw = path.read_bytes()
            z = load_npz(raw)
            if json.loads(bytes(z["meta"]).decode()).get("format") == _PENDING_V1:
                # unchecked, and no embeddings: its ids teach the router only
                z["e"] = np.zeros((len(z["ids"]), 0), np.float32)
            else:
                _, z = unpack_checked(raw, path, "pending-ids file", manifest_key="meta",
                                      format=_PENDING_FORMAT, versions=(_PENDING_VERSION,))
            ids, llms, X, Em = z["ids"], z["llms"], z["x"], z["e"]
            out, created = z["output_tokens"], z["created"]
            answered, answered_at = z["answered"], z["answered_at"]
            if X.shape != (len(ids), self.tr.router.dim) or not (
                    len(ids) == len(llms) == len(out) == len(created)) \
                    or len(answered) != len(answered_at) or Em.ndim != 2 \
                    or len(Em) != len(ids) or Em.shape[1] not in (0, int(self.tr.encoder.dim)):
                raise ValueError("array shapes do not match the router")
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignored %s: unreadable (%s); earlier response ids take no feedback",
                        path, exc)
            return
        now, ttl = time.time(), self.config.pending_ttl_s
        known = set(self.tr.router.names)
        for i in np.argsort(created, kind="stable"):
            if now - created[i] <= ttl and str(llms[i]) in known:
                e = np.array(Em[i]) if Em.shape[1] and np.isfinite(Em[i]).all() else None
                self.pending[str(ids[i])] = _Pending(np.array(X[i]), e, None, str(llms[i]),
                                                     float(out[i]), float(created[i]))
        for i in np.argsort(answered_at, kind="stable"):
            if now - answered_at[i] <= ttl:
                self.answered[str(answered[i])] = float(answered_at[i])
        log.info("loaded %d pending response ids from %s (time-to-live %.0f s)",
                 len(self.pending), path, ttl)


def _encoder_name(enc: Encoder) -> str:
    return f"{type(enc).__name__} (dim {enc.dim}, identity {enc.identity})"


def _prompt_text(messages: Any) -> str:
    """The messages' text, one block per message (the router's view picks the last block)."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    parts = []
    for m in messages:
        if not isinstance(m, dict):
            raise ValueError("each message must be an object")
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts.extend(p.get("text", "") for p in c if isinstance(p, dict)
                         and isinstance(p.get("text"), str))
        elif c is not None:
            raise ValueError("message content must be a string or a list of parts")
    return "\n\n".join(p for p in parts if p.strip()) or " "


def _error(status: int, message: str, kind: str = "invalid_request_error",
           headers: Mapping[str, str] | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": kind, "code": status}},
                        status_code=status, headers=dict(headers or {}))


def _terms_header(d: Decision, k: int) -> str:
    return json.dumps({t: round(float(getattr(d, t)[k]), 8) for t in
                       ("quality", "output_tokens", "cost", "bonus", "penalty", "score")},
                      separators=(",", ":"))


class _SSE:
    """Rewrites an OpenAI SSE stream event by event (the proxy's response id and the pool
    LLM's name in every chunk) and counts the output tokens on the way."""

    def __init__(self, rid: str, name: str) -> None:
        self.rid, self.name = rid, name
        self.buf = b""
        self.usage: float | None = None
        self.chunks = 0

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = []
        while True:
            cut = self.buf.find(b"\n\n")
            if cut < 0:
                return b"".join(out)
            event, self.buf = self.buf[:cut], self.buf[cut + 2:]
            out.append(self._event(event) + b"\n\n")

    def flush(self) -> bytes:
        rest, self.buf = self.buf, b""
        return self._event(rest) if rest.strip() else rest

    def _event(self, event: bytes) -> bytes:
        lines = event.replace(b"\r\n", b"\n").split(b"\n")
        for i, line in enumerate(lines):
            if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                continue
            try:
                obj = json.loads(line[5:])
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            u = obj.get("usage")
            if isinstance(u, dict) and isinstance(u.get("completion_tokens"), (int, float)):
                self.usage = float(u["completion_tokens"])
            for ch in obj.get("choices") or []:
                delta = ch.get("delta") if isinstance(ch, dict) else None
                if isinstance(delta, dict) and delta.get("content"):
                    self.chunks += 1  # one token per content chunk when no usage is sent
            obj["id"], obj["model"] = self.rid, self.name
            lines[i] = b"data: " + json.dumps(obj).encode()
        return b"\n".join(lines)

    @property
    def output_tokens(self) -> float:
        return self.usage if self.usage is not None else float(self.chunks)


class Proxy:
    """A running proxy: its ASGI :attr:`app` and what a deployment around it does to it.

    Made by :func:`create_proxy`. Requests reach the router through the app only (each routed
    one by :meth:`TextRouter.decide <mixllm.text.pipeline.TextRouter.decide>`); a deployment
    of several replicas (:mod:`mixllm.serving.ray_serve`) hands feedback that reached another
    replica to :meth:`feedback`, the path ``POST /v1/feedback`` takes, and installs merged
    router state with :meth:`replace_router`.
    """

    def __init__(self, app: Any, state: _State) -> None:
        self.app = app
        self._state = state

    @property
    def router(self) -> Router:
        """The router deciding now (replaced by :meth:`replace_router`)."""
        return self._state.tr.router

    def feedback(self, rid: str, quality: float | None = None, up: bool | None = None) -> str:
        """Learn a quality (or a thumb, ``up``) for a response id, as ``POST /v1/feedback``
        does; returns the LLM that answered. ``KeyError``: unknown or expired id;
        :class:`FeedbackConflict`: already answered; ``ValueError``: quality out of range."""
        if (quality is None) == (up is None):
            raise ValueError("feedback takes a quality or a thumb (up), not both")
        return self._state.feedback(rid, quality, up)

    def replace_router(self, step: Callable[[Router], Router | None]) -> None:
        """Run ``step(router)`` with learning held off; a router it returns (taking the same
        features) replaces the current one, with the proxy's present waiting times."""
        self._state.replace_router(step)


def create_app(pool: Sequence[LLM], backends: Mapping[str, Backend], *,
               state_dir: str | Path | None = None, encoder: Encoder | None = None,
               config: ServeConfig | None = None, pipeline: PipelineConfig | None = None,
               lam: float | None = None, id_prefix: str = "", forward_feedback: Any = None):
    """The proxy as an ASGI app: ``create_proxy(...).app`` (the arguments are its)."""
    return create_proxy(pool, backends, state_dir=state_dir, encoder=encoder, config=config,
                        pipeline=pipeline, lam=lam, id_prefix=id_prefix,
                        forward_feedback=forward_feedback).app


def create_proxy(pool: Sequence[LLM], backends: Mapping[str, Backend], *,
                 state_dir: str | Path | None = None, encoder: Encoder | None = None,
                 config: ServeConfig | None = None, pipeline: PipelineConfig | None = None,
                 lam: float | None = None, id_prefix: str = "",
                 forward_feedback: Any = None) -> Proxy:
    """The proxy: its ASGI app and the handle a deployment keeps (:class:`Proxy`).

    Parameters
    ----------
    pool : sequence of LLM
        The LLMs to route among (prices, latency profiles).
    backends : mapping name -> Backend
        Where each LLM is served; every pool LLM needs one.
    state_dir : path, optional
        Folder of a :class:`~mixllm.text.pipeline.TextRouter` (``mixllm fit`` writes one): loaded at
        start when present, saved periodically and at shutdown. LLMs of the state that
        ``pool`` does not name are kept, inactive (never routed to, saved back unchanged).
    encoder : optional
        The prompt encoder (default: the one the state names, else MiniLM).
    config : ServeConfig, optional
    pipeline : PipelineConfig, optional
        Router settings for a cold start (default: raw embeddings, no tags,
        ``lam = DEFAULT_LAM``, ``alpha = COLD_ALPHA``).
    lam : float, optional
        Default willingness to pay (USD per unit of quality) for ``model="mixllm"``; overrides
        the state's (a pool file's top-level ``lam``).
    id_prefix : str
        Put into every response id (a replica's tag, so feedback can find its replica).
    forward_feedback : callable (id, quality, up) -> bool, optional
        Called for feedback on an id this process does not know; ``True`` means it was
        handed on (HTTP 202), ``False`` that it is unknown (404).
    """
    require_serve_extra()
    import aiohttp
    import prometheus_client as prom
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    missing = [m.name for m in pool if m.name not in backends]
    if missing:
        raise ValueError(f"no base_url for {missing}: every pool LLM needs a backend")
    cfg = config or ServeConfig()
    if cfg.blas_threads is not None:
        limit_blas_threads(cfg.blas_threads)
    for m in pool:
        env = backends[m.name].api_key_env
        if env and not os.environ.get(env):
            log.warning("%s: api_key_env %s is not set: its requests go without an "
                        "Authorization header", m.name, env)
    st = _State(pool, backends, None if state_dir is None else Path(state_dir), encoder, cfg,
                pipeline, lam)
    rec = _recorder(cfg)
    if cfg.drift_window:
        st.tr.router.monitor_drift(window=cfg.drift_window)
    reg = prom.CollectorRegistry()
    reg.register(DriftCollector(lambda: st.tr.router))
    m_req = prom.Counter("mixllm_requests", "Chat completions by answering LLM and outcome",
                         ["llm", "outcome"], registry=reg)
    m_routed = prom.Counter("mixllm_routed", "Routing decisions by chosen LLM", ["llm"],
                            registry=reg)
    m_fallback = prom.Counter("mixllm_fallbacks", "Backend failures that moved to the next LLM",
                              ["llm", "reason"], registry=reg)
    m_spend = prom.Counter("mixllm_spend_usd", "Spend from the backends' token usage", ["llm"],
                           registry=reg)
    m_tokens = prom.Counter("mixllm_output_tokens", "Output tokens observed", ["llm"],
                            registry=reg)
    m_feedback = prom.Counter("mixllm_feedback", "Feedback learned", ["llm", "kind"],
                              registry=reg)
    m_overhead = prom.Histogram("mixllm_router_overhead_seconds",
                                "Featurise + route time per routed request", registry=reg,
                                buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
                                         2.5e-2, 5e-2, 0.1, 0.25, 1.0))
    m_inflight = prom.Gauge("mixllm_in_flight", "Requests in flight per LLM", ["llm"],
                            registry=reg)
    m_latency = prom.Histogram("mixllm_backend_latency_seconds", "Backend response time",
                               ["llm"], registry=reg)
    m_open = prom.Gauge("mixllm_backend_circuit_open",
                        "1 while a failing backend is skipped (cool-down), else 0", ["llm"],
                        registry=reg)
    m_opened = prom.Counter("mixllm_backend_circuit_opened",
                            "Times a backend's circuit opened", ["llm"], registry=reg)
    for name in st.names:
        m_open.labels(name).set(0)

    def on_breaker(name: str, is_open: bool) -> None:
        m_open.labels(name).set(1 if is_open else 0)
        if is_open:
            m_opened.labels(name).inc()

    breaker = _Breaker(st.names, cfg.breaker_failures, cfg.breaker_cooldown_s, on_breaker)
    # Per backend, what does not change between requests: the URL, the headers without the
    # key (read at request time, so a rotated key is picked up), the timeout.
    targets = {n: (backends[n].base_url + "/chat/completions",
                   aiohttp.ClientTimeout(total=None, sock_connect=backends[n].timeout_s,
                                         sock_read=backends[n].timeout_s))
               for n in st.names}

    async def saver() -> None:
        while True:
            await asyncio.sleep(cfg.save_every_s)
            try:
                await run_in_threadpool(st.save)
            except Exception:
                log.exception("saving the router state failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # aiohttp's pooled client: on loopback at 50 concurrent it forwarded ~4x the requests
        # per second of httpx's (benchmarks/proxy_overhead.py); keep-alive per backend host.
        app.state.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, ttl_dns_cache=300),
            skip_auto_headers=("user-agent",))
        task = asyncio.create_task(saver()) if st.state_dir is not None and cfg.save_state \
            else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await app.state.http.close()
            st.save()
            rec.close()

    app = FastAPI(title="mixllm", lifespan=lifespan)
    app.state.mixllm = st
    app.state.breaker = breaker

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        ids = ["mixllm", *st.names]
        return {"object": "list",
                "data": [{"id": i, "object": "model", "created": 0, "owned_by": "mixllm"}
                         for i in ids]}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(prom.generate_latest(reg), media_type=prom.CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "llms": st.names,
                "circuit_open": [n for n in st.names if breaker.is_open(n)]}

    async def read_json(request: Request) -> Any:
        size = request.headers.get("content-length")
        if size is not None:
            if not size.isdigit() or int(size) > cfg.max_body_bytes:
                raise _TooLarge()
            return json.loads(await request.body())
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cfg.max_body_bytes:
                raise _TooLarge()
        return json.loads(body)

    async def json_object(request: Request) -> Any:
        """The request's JSON object, or the error response to send (413, 400)."""
        try:
            body = await read_json(request)
        except _TooLarge:
            return _error(413, f"request body over {cfg.max_body_bytes} bytes")
        except ValueError:
            return _error(400, "body must be JSON")
        return body if isinstance(body, dict) else _error(400, "body must be a JSON object")

    @app.post("/v1/feedback")
    async def feedback(request: Request):
        body = await json_object(request)
        if isinstance(body, Response):
            return body
        if not isinstance(body.get("id"), str):
            return _error(400, "feedback needs 'id' (a response id) and 'quality' or 'thumbs'")
        q, thumbs = body.get("quality"), body.get("thumbs")
        if (q is None) == (thumbs is None):
            return _error(400, "give exactly one of 'quality' (a number) or 'thumbs'")
        up = None
        if q is not None:
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not math.isfinite(q):
                return _error(400, "'quality' must be a finite number")
            q = float(q)
            try:
                st.check_quality(q)
            except ValueError as exc:
                return _error(400, str(exc))
        else:
            if thumbs in ("up", True, 1):
                up = True
            elif thumbs in ("down", False, 0):
                up = False
            else:
                return _error(400, "'thumbs' must be 'up' or 'down'")
        try:
            llm = await run_in_threadpool(st.feedback, body["id"], q, up)
        except FeedbackConflict:
            return _error(409, f"response id {body['id']!r} already has feedback (one answer "
                               "per id)", "conflict")
        except KeyError:
            if forward_feedback is not None and await run_in_threadpool(
                    forward_feedback, body["id"], q, up):
                return JSONResponse({"ok": True, "queued": True}, status_code=202)
            return _error(404, f"unknown or expired response id {body['id']!r} (ids take "
                               f"feedback for {cfg.pending_ttl_s:g} s)")
        m_feedback.labels(llm, "quality" if q is not None else "thumbs").inc()
        rec.feedback(body["id"], llm, q if q is not None else (1.0 if up else 0.0))
        return {"ok": True, "llm": llm}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await json_object(request)
        if isinstance(body, Response):
            return body
        model = body.get("model")
        try:
            prompt = _prompt_text(body.get("messages"))
        except ValueError as exc:
            return _error(400, str(exc))
        headers: dict[str, str] = {}
        rid = f"chatcmpl-mixllm-{id_prefix}{secrets.token_hex(12)}"
        routed: TextDecision | None = None
        text: str | None = None
        n_in: float | None = None
        if isinstance(model, str) and model in st.active:
            # Passthrough: no embedding on the request path; the prompt's view is kept and
            # embedded only if feedback comes.
            order = [model]
            text = prompt_view(prompt, st.tr.config.view)
            headers["x-mixllm-route"] = "passthrough"
        else:
            match = _MODEL_RE.fullmatch(model) if isinstance(model, str) else None
            if match is None:
                return _error(404, f"unknown model {model!r}: use 'mixllm', 'mixllm:lam=<USD "
                                   f"per unit quality>' or one of {st.names}",
                              "model_not_found")
            lam = None
            if match.group(1) is not None:
                try:
                    lam = float(match.group(1))
                    if not lam > 0:
                        raise ValueError
                except ValueError:
                    return _error(400, f"lam must be a number > 0 (or inf), got "
                                       f"{match.group(1)!r}")
            t0 = time.perf_counter()
            try:
                if st.inline:
                    routed = st.decide(prompt, lam)
                else:
                    routed = await run_in_threadpool(st.decide, prompt, lam)
            except ValueError as exc:  # e.g. text the tokenizer refuses (lone surrogates)
                return _error(400, f"cannot read the prompt: {exc}")
            d, x, n_in = routed.decision, routed.features, routed.input_tokens
            d = st.active_decision(d)
            router = st.tr.router
            chosen = rec.choose(rid, d, lam=router.lam if lam is None else lam,
                                alpha=router.alpha, beta=router.beta, input_tokens=n_in, x=x)
            order = st.order(d, chosen)
            overhead = time.perf_counter() - t0
            m_overhead.observe(overhead)
            headers["x-mixllm-route"] = "routed"
            headers["x-mixllm-terms"] = _terms_header(d, d.names.index(chosen))
            headers["x-mixllm-ranking"] = ",".join(order)
            headers["x-mixllm-router-ms"] = f"{overhead * 1e3:.3f}"
            m_routed.labels(chosen).inc()
        headers["x-mixllm-response-id"] = rid
        stream = bool(body.get("stream"))
        failures: list[str] = []
        http = request.app.state.http

        def answered(name: str, model: str) -> None:
            """Headers: the LLM that answered and the backends that failed before it."""
            headers.update({"x-mixllm-llm": name, "x-mixllm-backend-model": model})
            if failures:
                headers["x-mixllm-fallbacks"] = ",".join(failures)

        for name in order:
            if not breaker.allow(name, time.monotonic()):
                failures.append(f"{name}:circuit-open")
                continue
            be = st.backends[name]
            url, timeout = targets[name]
            body["model"] = be.model
            req_headers = {"content-type": "application/json"}
            key = be.api_key()
            if key:
                req_headers["authorization"] = f"Bearer {key}"
            st.measured(name, st.live.start(name))
            m_inflight.labels(name).inc()
            started = time.perf_counter()
            done = False

            def finish(ok: bool, name: str = name, started: float = started) -> None:
                seconds = time.perf_counter() - started if ok else None
                st.measured(name, st.live.finish(name, seconds))
                m_inflight.labels(name).dec()
                if seconds is not None:
                    m_latency.labels(name).observe(seconds)

            resp = None
            try:
                resp = await http.post(url, data=json.dumps(body).encode(),
                                       headers=req_headers, timeout=timeout)
                if resp.status in _RETRYABLE:
                    raise _BackendFailed(f"HTTP {resp.status}")
                if not stream or resp.status != 200:
                    raw = await resp.read()
                    resp.release()
                    obj = None
                    if resp.status == 200:
                        try:
                            obj = json.loads(raw)
                            if not isinstance(obj, dict):
                                raise ValueError
                        except ValueError:
                            raise _BackendFailed("invalid JSON") from None
                    done = True
                    finish(True)
                    breaker.success(name)
                    answered(name, be.model)
                    if obj is None:
                        # The backend refused the request itself (4xx): not a reason to retry.
                        m_req.labels(name, "client_error").inc()
                        return Response(raw, status_code=resp.status, headers=headers,
                                        media_type=resp.headers.get("content-type"))
                    usage = obj.get("usage")
                    usage = usage if isinstance(usage, dict) else {}
                    n_out = _num(usage.get("completion_tokens"), 0.0)
                    n_prompt = _num(usage.get("prompt_tokens"), -1.0)
                    if n_prompt < 0:  # no usage from the backend: mixllm's own count
                        n_prompt = n_in if n_in is not None else st.tr.input_tokens(prompt)
                    _account(name, n_prompt, n_out, rid)
                    st.remember(rid, routed, text, name, n_out)
                    obj["id"] = rid
                    obj["model"] = name
                    return Response(json.dumps(obj).encode(), headers=headers,
                                    media_type="application/json")
                answered(name, be.model)
                done = True
                return StreamingResponse(
                    _relay(resp, name, rid, routed, text, n_in, prompt, finish), headers=headers,
                    media_type=resp.headers.get("content-type", "text/event-stream"))
            except (aiohttp.ClientError, asyncio.TimeoutError, _BackendFailed) as exc:
                if resp is not None:
                    resp.release()
                if not done:
                    finish(False)
                    done = True
                breaker.failure(name, time.monotonic())
                timeout_hit = isinstance(exc, asyncio.TimeoutError)
                reason = "timeout" if timeout_hit else (
                    str(exc) if isinstance(exc, _BackendFailed) else type(exc).__name__)
                m_fallback.labels(name, "timeout" if timeout_hit else "error").inc()
                m_req.labels(name, "failed").inc()
                log.warning("backend %s failed (%s); trying the next LLM", name, reason)
                failures.append(f"{name}:{reason}")
            finally:
                if not done:  # cancelled mid-request: keep the in-flight count right
                    finish(False)
                    breaker.abandon(name)
                    if resp is not None:
                        resp.release()
        if failures and all(f.endswith(":circuit-open") for f in failures):
            return _error(503, "every candidate backend is cooling down after repeated "
                               "failures: " + "; ".join(failures), "backend_unavailable",
                          {"x-mixllm-fallbacks": ",".join(failures),
                           "x-mixllm-response-id": rid,
                           "retry-after": str(int(math.ceil(cfg.breaker_cooldown_s)))})
        return _error(502, "every backend failed: " + "; ".join(failures), "backend_error",
                      {"x-mixllm-fallbacks": ",".join(failures),
                       "x-mixllm-response-id": rid})

    def _account(name: str, n_prompt: float, n_out: float, rid: str) -> None:
        llm = st.llms[name]
        cost = (n_prompt * llm.input_price + n_out * llm.output_price) / 1e6
        m_req.labels(name, "ok").inc()
        m_tokens.labels(name).inc(n_out)
        m_spend.labels(name).inc(cost)
        rec.outcome(rid, name, cost, n_out)

    async def _relay(resp, name: str, rid: str, routed: TextDecision | None, text: str | None,
                     n_in: float | None, prompt: str, finish) -> AsyncIterator[bytes]:
        sse = _SSE(rid, name)
        ok = False
        try:
            async for chunk in resp.content.iter_any():
                out = sse.feed(chunk)
                if out:
                    yield out
            tail = sse.flush()
            if tail:
                yield tail
            ok = True
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass  # the client sees a cut stream; counted below
        finally:
            resp.release()
            finish(ok)
            if ok:
                breaker.success(name)
                if n_in is None:  # a passthrough: counted now, after the stream
                    n_in = st.tr.input_tokens(prompt)
                _account(name, n_in, sse.output_tokens, rid)
                st.remember(rid, routed, text, name, sse.output_tokens)
            else:
                breaker.failure(name, time.monotonic())
                m_req.labels(name, "stream_broken").inc()

    return Proxy(app, st)


def _recorder(cfg: ServeConfig) -> DecisionRecorder:
    """The proxy's exploration and decision log, as configured."""
    explorer = None
    if cfg.explore_temperature or cfg.explore_epsilon:
        explorer = Explorer(cfg.explore_temperature, cfg.explore_epsilon, cfg.explore_seed)
    logger = None if cfg.decision_log is None else DecisionLogger(cfg.decision_log,
                                                                  cfg.log_features)
    return DecisionRecorder(logger, explorer)


def _num(v: Any, default: float) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
        and math.isfinite(v) and v >= 0 else float(default)


class _TooLarge(Exception):
    pass


class _BackendFailed(Exception):
    pass


def run(pool_path: str | Path, state_dir: str | Path | None = None, host: str = "127.0.0.1",
        port: int = 8000, encoder: Encoder | None = None, config: ServeConfig | None = None,
        pipeline: PipelineConfig | None = None) -> None:
    """Serve the pool file's LLMs until interrupted (saves the state on shutdown)."""
    require_serve_extra()
    import uvicorn

    mlog = logging.getLogger("mixllm")
    if not mlog.handlers:  # uvicorn configures only its own loggers
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        mlog.addHandler(handler)
        mlog.setLevel(logging.INFO)
    from ..data import load_pool, load_pool_settings
    from .backend import load_backends

    app = create_app(load_pool(pool_path), load_backends(pool_path), state_dir=state_dir,
                     encoder=encoder, config=config, pipeline=pipeline,
                     lam=load_pool_settings(pool_path).get("lam"))
    # uvloop and httptools when installed (the serve extra installs them): the hop measured
    # in benchmarks/proxy_overhead.py answered at about half the p50 of asyncio + h11.
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10,
                access_log=False)
