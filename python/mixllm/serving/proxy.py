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
import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..decision_log import DecisionLogger, DecisionRecorder
from ..drift import DriftCollector
from ..exploration import Explorer
from ..router import Router
from ..text.encoder import Encoder
from ..text.pipeline import PipelineConfig, TextDecision, TextRouter
from ..types import LLM, Decision
from ..waiting import WaitTracker
from .backend import Backend

__all__ = ["ServeConfig", "create_app", "require_serve_extra", "run"]

log = logging.getLogger("mixllm.serving.proxy")

_MODEL_RE = re.compile(r"mixllm(?::lam=([^\s]+))?")
_RETRYABLE = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def require_serve_extra() -> None:
    """Raise a clear error when the ``serve`` extra's packages are missing."""
    missing = []
    for mod in ("fastapi", "uvicorn", "httpx", "prometheus_client"):
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
    save_every_s : float
        Period of saving the learned state to ``--state`` when it changed (also on shutdown).
    latency_halflife : int
        Responses over which a backend's observed latency is averaged (exponentially).
    feedback_weight_thumbs : float
        Weight of a thumb in the ridge regression (a refined quality has weight 1).
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
    """

    max_body_bytes: int = 1 << 20
    max_pending: int = 100_000
    save_every_s: float = 60.0
    latency_halflife: int = 20
    feedback_weight_thumbs: float = 0.5
    save_state: bool = True
    decision_log: str | None = None
    log_features: bool = True
    explore_temperature: float = 0.0
    explore_epsilon: float = 0.0
    explore_seed: int | None = None
    drift_window: int = 200


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


@dataclass
class _Pending:
    x: np.ndarray
    llm: str
    output_tokens: float


class _State:
    """The router, the backends and what the proxy observed (shared by the handlers)."""

    def __init__(self, pool: Sequence[LLM], backends: Mapping[str, Backend],
                 state_dir: Path | None, encoder: Encoder | None, config: ServeConfig,
                 pipeline: PipelineConfig | None) -> None:
        self.config = config
        self.state_dir = state_dir
        self.backends = dict(backends)
        self.tr = self._load_or_new(list(pool), encoder, pipeline)
        self.names = self.tr.router.names
        self.llms = {m.name: m for m in self.tr.router.llms}
        self.live = _Live(self.tr.router.llms, config.latency_halflife)
        self.waits = WaitTracker(self.tr.router.llms)
        self.pending: collections.OrderedDict[str, _Pending] = collections.OrderedDict()
        self.lock = threading.Lock()  # pending table and the dirty flag
        # Held by learning and by anything that replaces the router (a replica's sync), so
        # that no feedback lands on a router being replaced.
        self.sync_lock = threading.Lock()
        self.dirty = False

    def _load_or_new(self, pool: list[LLM], encoder: Encoder | None, pipeline: PipelineConfig | None
                     ) -> TextRouter:
        if self.state_dir is not None and (self.state_dir / "manifest.json").is_file():
            tr = TextRouter.load(self.state_dir, encoder=encoder)
            router = tr.router
            wanted = {m.name for m in pool}
            for name in [n for n in router.names if n not in wanted]:
                router.remove_llm(name)
            for llm in pool:
                if llm.name not in router.names:
                    router.add_llm(llm)
            tr.pool = router.llms
            log.info("loaded router state from %s", self.state_dir)
            return tr
        # Cold start: raw embeddings, zero priors, so cost decides until feedback arrives
        # (alpha > 0 adds an exploration bonus).
        cfg = pipeline or PipelineConfig(tags=False)
        tr = TextRouter(pool, cfg, encoder, feature_map="embedding")
        dim = int(tr._encoder().encode(["dim"]).shape[1])
        tr.router = Router(pool, dim, alpha=cfg.alpha, beta=cfg.beta, tau=cfg.tau,
                           ridge=10.0 if cfg.ridge is None else cfg.ridge, lam=cfg.lam,
                           cold_ridge=cfg.cold_ridge)
        return tr

    # ------------------------------------------------------------------ routing
    def measured(self, name: str, wait: float) -> None:
        """A measurement of ``name``'s waiting time (at a dispatch or a completion)."""
        self.waits.refresh(time.monotonic(), {name: wait})

    def decide(self, prompt: str, lam: float | None) -> TextDecision:
        """Route a prompt on the believed waiting times of now."""
        router = self.tr.router
        for name, wait in self.waits.estimates(time.monotonic()).items():
            router.set_waiting_time(name, wait)
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

    def remember(self, rid: str, x: np.ndarray, llm: str, output_tokens: float) -> None:
        with self.lock:
            self.pending[rid] = _Pending(x, llm, output_tokens)
            while len(self.pending) > self.config.max_pending:
                self.pending.popitem(last=False)

    def feedback(self, rid: str, quality: float | None, up: bool | None) -> str:
        with self.lock:
            p = self.pending.get(rid)
        if p is None:
            raise KeyError(rid)
        with self.sync_lock:
            r = self.tr.router
            if quality is not None:
                r.feedback(p.x, p.llm, quality, p.output_tokens)
            else:
                r.feedback_thumbs(p.x, p.llm, bool(up), p.output_tokens,
                                  weight=self.config.feedback_weight_thumbs)
        with self.lock:
            self.dirty = True
        return p.llm

    def save(self) -> bool:
        if self.state_dir is None or not self.config.save_state:
            return False
        with self.lock:
            if not self.dirty and (self.state_dir / "manifest.json").is_file():
                return False
            self.dirty = False
        self.tr.save(self.state_dir)
        return True


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


def create_app(pool: Sequence[LLM], backends: Mapping[str, Backend], *,
               state_dir: str | Path | None = None, encoder: Encoder | None = None,
               config: ServeConfig | None = None, pipeline: PipelineConfig | None = None,
               id_prefix: str = "", forward_feedback: Any = None):
    """The proxy as an ASGI app.

    Parameters
    ----------
    pool : sequence of LLM
        The LLMs to route among (prices, latency profiles).
    backends : mapping name -> Backend
        Where each LLM is served; every pool LLM needs one.
    state_dir : path, optional
        Folder of a :class:`~mixllm.text.pipeline.TextRouter` (``mixllm fit`` writes one): loaded at
        start when present, saved periodically and at shutdown.
    encoder : optional
        The prompt encoder (default: the one the state names, else MiniLM).
    config : ServeConfig, optional
    pipeline : PipelineConfig, optional
        Router settings for a cold start (default: raw embeddings, no tags).
    id_prefix : str
        Put into every response id (a replica's tag, so feedback can find its replica).
    forward_feedback : callable (id, quality, up) -> bool, optional
        Called for feedback on an id this process does not know; ``True`` means it was
        handed on (HTTP 202), ``False`` that it is unknown (404).
    """
    require_serve_extra()
    import httpx
    import prometheus_client as prom
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool

    missing = [m.name for m in pool if m.name not in backends]
    if missing:
        raise ValueError(f"no base_url for {missing}: every pool LLM needs a backend")
    cfg = config or ServeConfig()
    st = _State(pool, backends, None if state_dir is None else Path(state_dir), encoder, cfg,
                pipeline)
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
                                "Embedding + routing time per request", registry=reg,
                                buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
                                         5e-2, 0.1, 0.25, 1.0))
    m_inflight = prom.Gauge("mixllm_in_flight", "Requests in flight per LLM", ["llm"],
                            registry=reg)
    m_latency = prom.Histogram("mixllm_backend_latency_seconds", "Backend response time",
                               ["llm"], registry=reg)

    async def saver() -> None:
        while True:
            await asyncio.sleep(cfg.save_every_s)
            try:
                await run_in_threadpool(st.save)
            except Exception:
                log.exception("saving the router state failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.http = httpx.AsyncClient(limits=httpx.Limits(max_connections=1000))
        task = asyncio.create_task(saver()) if st.state_dir is not None and cfg.save_state \
            else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await app.state.http.aclose()
            st.save()
            rec.close()

    app = FastAPI(title="mixllm", lifespan=lifespan)
    app.state.mixllm = st

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
        return {"ok": True, "llms": st.names}

    async def read_json(request: Request) -> tuple[Any, Any]:
        """``(body, None)``, or ``(None, the error response)`` for a body too large or not JSON."""
        size = request.headers.get("content-length")
        too_large = size is not None and (not size.isdigit() or int(size) > cfg.max_body_bytes)
        body = bytearray()
        if not too_large:
            async for chunk in request.stream():
                body += chunk
                if len(body) > cfg.max_body_bytes:
                    too_large = True
                    break
        if too_large:
            return None, _error(413, f"request body over {cfg.max_body_bytes} bytes")
        try:
            return json.loads(body), None
        except ValueError:
            return None, _error(400, "body must be JSON")

    @app.post("/v1/feedback")
    async def feedback(request: Request):
        body, error = await read_json(request)
        if error is not None:
            return error
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            return _error(400, "feedback needs 'id' (a response id) and 'quality' or 'thumbs'")
        q, thumbs = body.get("quality"), body.get("thumbs")
        if (q is None) == (thumbs is None):
            return _error(400, "give exactly one of 'quality' (a number) or 'thumbs'")
        up = None
        if q is not None:
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not math.isfinite(q):
                return _error(400, "'quality' must be a finite number")
            q = float(q)
        else:
            if thumbs in ("up", True, 1):
                up = True
            elif thumbs in ("down", False, 0):
                up = False
            else:
                return _error(400, "'thumbs' must be 'up' or 'down'")
        try:
            llm = await run_in_threadpool(st.feedback, body["id"], q, up)
        except KeyError:
            if forward_feedback is not None and await run_in_threadpool(
                    forward_feedback, body["id"], q, up):
                return JSONResponse({"ok": True, "queued": True}, status_code=202)
            return _error(404, f"unknown or expired response id {body['id']!r}")
        m_feedback.labels(llm, "quality" if q is not None else "thumbs").inc()
        rec.feedback(body["id"], llm, q if q is not None else (1.0 if up else 0.0))
        return {"ok": True, "llm": llm}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body, error = await read_json(request)
        if error is not None:
            return error
        if not isinstance(body, dict):
            return _error(400, "body must be a JSON object")
        model = body.get("model")
        try:
            prompt = _prompt_text(body.get("messages"))
        except ValueError as exc:
            return _error(400, str(exc))
        t0 = time.perf_counter()
        headers: dict[str, str] = {}
        rid = f"chatcmpl-mixllm-{id_prefix}{secrets.token_hex(12)}"
        if isinstance(model, str) and model in st.llms:
            # Not routed, but featurised all the same: a feedback on the answer teaches it.
            x, n_in = await run_in_threadpool(st.tr.featurize, prompt)
            order = [model]
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
            routed = await run_in_threadpool(st.decide, prompt, lam)
            d, x, n_in = routed.decision, routed.features, routed.input_tokens
            router = st.tr.router
            chosen = rec.choose(rid, d, lam=router.lam if lam is None else lam,
                                alpha=router.alpha, beta=router.beta, input_tokens=n_in, x=x)
            ranked = np.argsort(-d.score, kind="stable")
            order = [chosen] + [d.names[k] for k in ranked if d.names[k] != chosen]
            headers["x-mixllm-route"] = "routed"
            headers["x-mixllm-terms"] = _terms_header(d, d.names.index(chosen))
            headers["x-mixllm-ranking"] = ",".join(order)
            m_routed.labels(chosen).inc()
        overhead = time.perf_counter() - t0
        m_overhead.observe(overhead)
        headers["x-mixllm-router-ms"] = f"{overhead * 1e3:.3f}"
        headers["x-mixllm-response-id"] = rid
        stream = bool(body.get("stream"))
        failures: list[str] = []
        for name in order:
            be = st.backends[name]
            out = dict(body, model=be.model)
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

            try:
                req = request.app.state.http.build_request(
                    "POST", be.base_url + "/chat/completions", json=out, headers=req_headers,
                    timeout=httpx.Timeout(be.timeout_s))
                resp = await request.app.state.http.send(req, stream=stream)
                if resp.status_code in _RETRYABLE:
                    await resp.aclose()
                    raise _BackendFailed(f"HTTP {resp.status_code}")
                if not stream or resp.status_code != 200:
                    raw = await resp.aread() if stream else resp.content
                    await resp.aclose()
                    done = True
                    finish(True)
                    headers.update({"x-mixllm-llm": name, "x-mixllm-backend-model": be.model})
                    if failures:
                        headers["x-mixllm-fallbacks"] = ",".join(failures)
                    if resp.status_code != 200:
                        # The backend refused the request itself (4xx): not a reason to retry.
                        m_req.labels(name, "client_error").inc()
                        return Response(raw, status_code=resp.status_code, headers=headers,
                                        media_type=resp.headers.get("content-type"))
                    try:
                        obj = json.loads(raw)
                    except ValueError:
                        raise _BackendFailed("invalid JSON") from None
                    usage = obj.get("usage") or {}
                    n_out = float(usage.get("completion_tokens") or 0.0)
                    n_prompt = float(usage.get("prompt_tokens") or n_in)
                    _account(name, n_prompt, n_out, rid)
                    st.remember(rid, x, name, n_out)
                    obj["id"] = rid
                    obj["model"] = name
                    return JSONResponse(obj, headers=headers)
                headers.update({"x-mixllm-llm": name, "x-mixllm-backend-model": be.model})
                if failures:
                    headers["x-mixllm-fallbacks"] = ",".join(failures)
                done = True
                return StreamingResponse(
                    _relay(resp, name, rid, x, n_in, finish), headers=headers,
                    media_type=resp.headers.get("content-type", "text/event-stream"))
            except (httpx.HTTPError, _BackendFailed) as exc:
                if not done:
                    finish(False)
                    done = True
                reason = "timeout" if isinstance(exc, httpx.TimeoutException) else (
                    str(exc) if isinstance(exc, _BackendFailed) else type(exc).__name__)
                m_fallback.labels(name, "timeout" if reason == "timeout" else "error").inc()
                m_req.labels(name, "failed").inc()
                log.warning("backend %s failed (%s); trying the next LLM", name, reason)
                failures.append(f"{name}:{reason}")
            finally:
                if not done:  # cancelled mid-request: keep the in-flight count right
                    finish(False)
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

    async def _relay(resp, name: str, rid: str, x: np.ndarray, n_in: float, finish
                     ) -> AsyncIterator[bytes]:
        sse = _SSE(rid, name)
        ok = False
        try:
            async for chunk in resp.aiter_raw():
                out = sse.feed(chunk)
                if out:
                    yield out
            tail = sse.flush()
            if tail:
                yield tail
            ok = True
        finally:
            await resp.aclose()
            finish(ok)
            if ok:
                _account(name, n_in, sse.output_tokens, rid)
                st.remember(rid, x, name, sse.output_tokens)
            else:
                m_req.labels(name, "stream_broken").inc()

    return app


def _recorder(cfg: ServeConfig) -> DecisionRecorder:
    """The proxy's exploration and decision log, as configured."""
    explorer = None
    if cfg.explore_temperature or cfg.explore_epsilon:
        explorer = Explorer(cfg.explore_temperature, cfg.explore_epsilon, cfg.explore_seed)
    logger = None if cfg.decision_log is None else DecisionLogger(cfg.decision_log,
                                                                  cfg.log_features)
    return DecisionRecorder(logger, explorer)


class _BackendFailed(Exception):
    pass


def run(pool_path: str | Path, state_dir: str | Path | None = None, host: str = "127.0.0.1",
        port: int = 8000, encoder: Encoder | None = None, config: ServeConfig | None = None,
        pipeline: PipelineConfig | None = None) -> None:
    """Serve the pool file's LLMs until interrupted (saves the state on shutdown)."""
    require_serve_extra()
    import uvicorn

    from ..data import load_pool
    from .backend import load_backends

    app = create_app(load_pool(pool_path), load_backends(pool_path), state_dir=state_dir,
                     encoder=encoder, config=config, pipeline=pipeline)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
