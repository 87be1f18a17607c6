"""mixllm serve: the proxy against fake OpenAI-compatible backends on loopback, driven by the
official ``openai`` client (routing, streaming, fallback, feedback, restart, limits)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
openai = pytest.importorskip("openai")
import httpx
import mixllm
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from mixllm import LLM
from mixllm.data import DataError, load_pool
from mixllm.router import DEFAULT_LAM
from mixllm.serving.backend import Backend, load_backends
from mixllm.serving.proxy import FeedbackConflict, ServeConfig, create_app, create_proxy
from mixllm.text.pipeline import PipelineConfig, TextRouter
from mixllm.text.static import StaticEncoder
from fakes import HashEncoder


# ------------------------------------------------------------------ loopback servers
class _Server:
    """A uvicorn server on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, app) -> None:
        self.app = app
        cfg = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none",
                             lifespan="on", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive()


def fake_backends() -> FastAPI:
    """One app, one OpenAI-compatible endpoint per path prefix ``/<name>/v1``: ``broken``
    answers 500, ``slow`` sleeps past its timeout, the others answer with their name."""
    app = FastAPI()
    app.state.seen = []
    app.state.flaky_fails = False  # "flaky" answers 500 while this is set

    @app.post("/{name}/v1/chat/completions")
    async def chat(name: str, request: Request):
        body = await request.json()
        app.state.seen.append((name, body["model"], request.headers.get("authorization")))
        if name == "broken" or (name == "flaky" and app.state.flaky_fails):
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if name == "slow":
            await asyncio.sleep(1.0)
        words = [f"{name}", "says", "hello"]
        if body.get("stream"):
            async def gen():
                for i, w in enumerate(words):
                    chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0,
                             "model": body["model"],
                             "choices": [{"index": 0, "delta": {"content": w + " "},
                                          "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                end = {"id": "x", "object": "chat.completion.chunk", "created": 0,
                       "model": body["model"],
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
                yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n"
            return StreamingResponse(gen(), media_type="text/event-stream")
        return {"id": "backend-id", "object": "chat.completion", "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": " ".join(words)}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}

    return app


@pytest.fixture(scope="module")
def backend_server():
    s = _Server(fake_backends())
    yield s
    s.stop()


# cheap < mid < big in price; "broken" and "slow" are the cheapest of all when present.
PRICES = {"broken": 0.01, "slow": 0.02, "flaky": 0.03, "cheap": 0.1, "mid": 1.0, "big": 10.0}


def make_pool(backend_url: str, names=("cheap", "mid", "big"), timeout_s: float = 5.0):
    pool = [LLM(n, PRICES[n], PRICES[n]) for n in names]
    backends = {n: Backend(n, f"{backend_url}/{n}/v1", f"{n}-model-id", "MIXLLM_TEST_KEY",
                           0.3 if n == "slow" else timeout_s) for n in names}
    return pool, backends


class Proxy:
    def __init__(self, pool, backends, state_dir=None, encoder=None, lam=None, **cfg) -> None:
        app = create_app(pool, backends, state_dir=state_dir,
                         encoder=encoder or HashEncoder(16), config=ServeConfig(**cfg), lam=lam)
        self.app = app
        self.server = _Server(app)
        self.client = openai.OpenAI(base_url=self.server.url + "/v1", api_key="unused",
                                    max_retries=0, timeout=10)

    def chat(self, model: str, text: str = "what is two plus two", **kw):
        raw = self.client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}], **kw)
        return raw.parse(), raw.headers

    def feedback(self, **body) -> httpx.Response:
        return httpx.post(self.server.url + "/v1/feedback", json=body, timeout=10)

    def stop(self) -> None:
        self.client.close()
        self.server.stop()


@pytest.fixture
def proxy(backend_server, monkeypatch):
    monkeypatch.setenv("MIXLLM_TEST_KEY", "sk-test-123")
    p = Proxy(*make_pool(backend_server.url), max_body_bytes=16384)
    yield p
    p.stop()


# ------------------------------------------------------------------ tests
def test_models_lists_router_and_pool(proxy):
    ids = [m.id for m in proxy.client.models.list()]
    assert ids == ["mixllm", "cheap", "mid", "big"]


def test_passthrough_uses_backend_model_id_and_key(proxy, backend_server):
    resp, headers = proxy.chat("big")
    assert resp.choices[0].message.content == "big says hello"
    assert headers["x-mixllm-llm"] == "big" and headers["x-mixllm-route"] == "passthrough"
    assert resp.model == "big" and resp.id == headers["x-mixllm-response-id"]
    assert backend_server.app.state.seen[-1] == ("big", "big-model-id", "Bearer sk-test-123")


def test_routing_follows_lam(proxy):
    # Cold start: every predicted quality is 0, so any finite lam picks the cheapest LLM.
    _, h = proxy.chat("mixllm:lam=0.001")
    assert h["x-mixllm-llm"] == "cheap" and h["x-mixllm-route"] == "routed"
    terms = json.loads(h["x-mixllm-terms"])
    assert set(terms) == {"quality", "output_tokens", "cost", "bonus", "penalty", "score"}
    assert h["x-mixllm-ranking"].split(",") == ["cheap", "mid", "big"]
    assert float(h["x-mixllm-router-ms"]) >= 0


def test_bad_requests_are_clean_errors(proxy):
    with pytest.raises(openai.NotFoundError):
        proxy.chat("gpt-unknown")
    with pytest.raises(openai.BadRequestError):
        proxy.chat("mixllm:lam=-1")
    r = httpx.post(proxy.server.url + "/v1/chat/completions", content=b"x" * 20000,
                   headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 413
    r = httpx.post(proxy.server.url + "/v1/chat/completions", content=b"{not json", timeout=10)
    assert r.status_code == 400


def test_streaming(proxy):
    stream = proxy.client.chat.completions.create(
        model="mixllm:lam=0.001", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "cheap says hello "
    with proxy.client.chat.completions.with_streaming_response.create(
            model="mid", messages=[{"role": "user", "content": "hi"}], stream=True) as r:
        assert r.headers["x-mixllm-llm"] == "mid"
        rid = r.headers["x-mixllm-response-id"]
        body = "".join(r.iter_text())
    assert '"content": "mid "' in body and body.count(rid) == 4  # ids rewritten per chunk
    # the streamed response is remembered with its 3 observed content chunks
    assert proxy.app.state.mixllm.pending[rid].output_tokens == 3
    assert proxy.feedback(id=rid, thumbs="up").status_code == 200


@pytest.mark.parametrize("failing", ["broken", "slow"])
def test_fallback_to_next_best(backend_server, failing, monkeypatch):
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    p = Proxy(*make_pool(backend_server.url, (failing, "cheap", "big")))
    try:
        _, h = p.chat("mixllm:lam=0.001")
        assert h["x-mixllm-ranking"].startswith(failing)
        assert h["x-mixllm-llm"] == "cheap"
        assert h["x-mixllm-fallbacks"].startswith(failing + ":")
        assert "timeout" in h["x-mixllm-fallbacks"] or failing == "broken"
        stream = p.client.chat.completions.create(
            model="mixllm:lam=0.001", messages=[{"role": "user", "content": "hi"}], stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) \
            == "cheap says hello "
        metrics = httpx.get(p.server.url + "/metrics", timeout=10).text
        assert f'mixllm_fallbacks_total{{llm="{failing}"' in metrics
        # a passthrough to a failing LLM has nothing to fall back to: a clean 502
        with pytest.raises(openai.APIStatusError) as err:
            p.chat(failing)
        assert err.value.status_code == 502
        # in-flight counts went back to zero, so no waiting time is left behind
        assert all(v == 0 for v in p.app.state.mixllm.live.in_flight.values())
    finally:
        p.stop()


def test_feedback_changes_later_decisions_and_survives_restart(backend_server, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    state = tmp_path / "state"
    pool, backends = make_pool(backend_server.url)
    p = Proxy(pool, backends, state_dir=state)
    try:
        text = "prove the theorem about primes"
        _, h = p.chat("mixllm", text)  # lam = inf and no knowledge: the first LLM
        assert h["x-mixllm-llm"] == "cheap"
        for _ in range(3):
            _, h = p.chat("big", text)
            r = p.feedback(id=h["x-mixllm-response-id"], quality=1.0)
            assert r.status_code == 200 and r.json()["llm"] == "big"
        _, h = p.chat("mixllm", text)
        assert h["x-mixllm-llm"] == "big"
        assert json.loads(h["x-mixllm-terms"])["quality"] > 0.2  # ridge 10, 3 observations
        # the observed output tokens (3) were learned with the quality
        assert json.loads(h["x-mixllm-terms"])["output_tokens"] > 0.5
        assert p.feedback(id="nope", quality=1.0).status_code == 404
        assert p.feedback(id=h["x-mixllm-response-id"], quality="x").status_code == 400
        metrics = httpx.get(p.server.url + "/metrics", timeout=10).text
        assert 'mixllm_feedback_total{kind="quality",llm="big"} 3.0' in metrics
        assert 'mixllm_spend_usd_total{llm="big"}' in metrics
        assert "mixllm_router_overhead_seconds_count" in metrics
    finally:
        p.stop()  # saves the state on shutdown
    assert (state / "manifest.json").is_file()
    p = Proxy(pool, backends, state_dir=state)
    try:
        _, h = p.chat("mixllm", text)
        assert h["x-mixllm-llm"] == "big"
    finally:
        p.stop()


def test_periodic_save(backend_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    state = tmp_path / "state"
    p = Proxy(*make_pool(backend_server.url), state_dir=state, save_every_s=0.1)
    try:
        _, h = p.chat("mid")
        assert p.feedback(id=h["x-mixllm-response-id"], quality=1.0).status_code == 200
        deadline = time.monotonic() + 5
        while not (state / "manifest.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (state / "manifest.json").is_file()
    finally:
        p.stop()


def test_waiting_time_tracks_in_flight(proxy):
    st = proxy.app.state.mixllm
    slots = st.live.slots["cheap"]
    for _ in range(slots):
        st.live.start("cheap")
    assert st.live.start("cheap") == pytest.approx(st.live.latency["cheap"])
    for _ in range(slots + 1):
        st.live.finish("cheap", 0.2)
    assert st.live.in_flight["cheap"] == 0


def test_routing_reads_the_waiting_time_belief_drained_since_its_measurement(proxy):
    st = proxy.app.state.mixllm
    st.tr.router.tau = 1.0
    k = st.names.index("cheap")
    st.measured("cheap", 5.0)  # measured now: the belief is the measurement
    wait = math.log1p(st.decide("hi", None).decision.penalty[k])  # penalty = expm1(wait / tau)
    assert 4.5 < wait <= 5.0
    st.waits.refresh(time.monotonic() - 3.0, {"cheap": 5.0})  # measured 3 s ago: drained
    wait = math.log1p(st.decide("hi", None).decision.penalty[k])
    assert 1.5 < wait <= 2.0
    st.measured("cheap", 0.0)
    assert st.decide("hi", None).decision.penalty[k] == 0.0


def test_load_test_overhead(proxy):
    """Bounded load on loopback (32 requests, 8 threads): the proxy adds little."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i):
        _, h = proxy.chat("mixllm:lam=0.001", f"question number {i}")
        return float(h["x-mixllm-router-ms"])

    with ThreadPoolExecutor(8) as ex:
        ms = list(ex.map(one, range(32)))
    assert len(ms) == 32 and np.percentile(ms, 50) < 50


# ------------------------------------------------------------------ pool file fields
def test_pool_file_serving_fields(tmp_path):
    p = tmp_path / "pool.toml"
    p.write_text('version = 1\n[[llm]]\nname = "a"\ninput_price = 1\noutput_price = 2\n'
                 'base_url = "http://127.0.0.1:9/v1/"\napi_key_env = "A_KEY"\nmodel = "a-1"\n'
                 'timeout_s = 5\n[[llm]]\nname = "b"\ninput_price = 1\noutput_price = 2\n')
    assert [m.name for m in load_pool(p)] == ["a", "b"]
    assert load_backends(p) == {"a": Backend("a", "http://127.0.0.1:9/v1", "a-1", "A_KEY", 5.0)}
    for bad, msg in [('base_url = "ftp://x"', "base_url"),
                     ('base_url = "http://x"\napi_key_env = "sk-secret key"', "api_key_env"),
                     ('base_url = "http://x"\ntimeout_s = 0', "timeout_s"),
                     ('model = "m"', "without base_url")]:
        p.write_text(f'[[llm]]\nname = "a"\ninput_price = 1\noutput_price = 2\n{bad}\n')
        with pytest.raises(DataError, match=msg):
            load_backends(p)


def test_missing_backend_is_an_error():
    with pytest.raises(ValueError, match="no base_url"):
        create_app([LLM("a", 1, 1)], {}, encoder=HashEncoder(16))


# ------------------------------------------------------------------ the command line
def test_cli_serve_needs_the_extra(tmp_path, monkeypatch, capsys):
    from mixllm import cli

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(SystemExit, match=r"mixllm\[serve\]"):
        cli.main(["serve", "--pool", str(tmp_path / "pool.toml")])


def test_cli_serve_end_to_end(backend_server, tmp_path):
    """`mixllm serve` as a process with its defaults (the static encoder, here a tiny table in
    place of the distilled one; the pool file's lam): answers, warns about an unset key, logs
    what it routes among, and saves its state and pending ids on SIGINT."""
    from test_static_encoder import tiny_table
    from mixllm.text.static import default_table_path

    xdg = tmp_path / "xdg"
    table = default_table_path(cache_dir=xdg / "mixllm")
    table.parent.mkdir(parents=True)
    tiny_table().save(table)
    pool = tmp_path / "pool.toml"
    pool.write_text("lam = 0.02\n" + "".join(
        f'[[llm]]\nname = "{n}"\ninput_price = {PRICES[n]}\noutput_price = {PRICES[n]}\n'
        f'base_url = "{backend_server.url}/{n}/v1"\n' for n in ("cheap", "big"))
        + 'api_key_env = "MIXLLM_TEST_UNSET_KEY"\n')
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(Path(mixllm.__file__).parents[1]),
               XDG_CACHE_HOME=str(xdg))
    env.pop("MIXLLM_TEST_UNSET_KEY", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mixllm.cli", "serve", "--pool", str(pool), "--state",
             str(tmp_path / "state"), "--port", str(port)], env=env,
            stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 40
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=10)
        r = client.chat.completions.with_raw_response.create(
            model="mixllm", messages=[{"role": "user", "content": "hello"}])
        # cost-aware from the first request: no state, the pool file's lam, price decides
        assert r.headers["x-mixllm-llm"] == "cheap"
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    text = log.read_text()
    assert (tmp_path / "state" / "manifest.json").is_file()
    assert proc.returncode == 0, text
    assert "sk-" not in text
    assert "big: api_key_env MIXLLM_TEST_UNSET_KEY is not set" in text
    assert "routing among 2 LLMs: cheap, big" in text and "lam 0.02" in text
    assert "saved router state to" in text and "1 pending response ids" in text
    assert TextRouter.load(tmp_path / "state", encoder=StaticEncoder(table)).router.lam == 0.02


def test_replica_hooks_prefix_ids_and_forward_unknown_feedback(backend_server, monkeypatch):
    """What the Ray deployment builds on: ids carry a replica tag, and feedback on an id this
    process does not know is handed on (202) or refused (404)."""
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    forwarded = []

    def forward(rid, quality, up):
        forwarded.append((rid, quality, up))
        return rid.startswith("chatcmpl-mixllm-other-")

    pool, backends = make_pool(backend_server.url)
    proxy = create_proxy(pool, backends, encoder=HashEncoder(16), id_prefix="mine-",
                         forward_feedback=forward)
    server = _Server(proxy.app)
    try:
        r = httpx.post(server.url + "/v1/chat/completions", timeout=10, json={
            "model": "mid", "messages": [{"role": "user", "content": "hi"}]})
        assert r.json()["id"].startswith("chatcmpl-mixllm-mine-")
        post = lambda body: httpx.post(server.url + "/v1/feedback", json=body, timeout=10)
        assert post({"id": r.json()["id"], "quality": 1.0}).status_code == 200
        assert post({"id": "chatcmpl-mixllm-other-1", "thumbs": "down"}).status_code == 202
        assert post({"id": "chatcmpl-mixllm-gone-1", "quality": 0.5}).status_code == 404
        assert forwarded == [("chatcmpl-mixllm-other-1", None, False),
                             ("chatcmpl-mixllm-gone-1", 0.5, None)]
        # the handle a replica keeps: the feedback path of /v1/feedback, the router swap
        r = httpx.post(server.url + "/v1/chat/completions", timeout=10, json={
            "model": "mixllm", "messages": [{"role": "user", "content": "hi"}]})
        llm = r.headers["x-mixllm-llm"]
        n = proxy.router.n_observations()[llm]
        assert proxy.feedback(r.json()["id"], quality=1.0) == llm
        assert proxy.router.n_observations()[llm] == n + 1
        with pytest.raises(FeedbackConflict):
            proxy.feedback(r.json()["id"], up=True)
        with pytest.raises(KeyError):
            proxy.feedback("chatcmpl-mixllm-mine-none", quality=1.0)
        with pytest.raises(ValueError, match="not both"):
            proxy.feedback(r.json()["id"], quality=1.0, up=True)
        fresh = proxy.router.clone()
        proxy.replace_router(lambda old: fresh)
        assert proxy.router is fresh
        proxy.replace_router(lambda old: None)  # nothing to install
        assert proxy.router is fresh
    finally:
        server.stop()


# ------------------------------------------------------------------ feedback: once, in range, kept
def test_feedback_once_per_id_and_in_range(proxy):
    _, h = proxy.chat("mid")
    rid = h["x-mixllm-response-id"]
    for bad in (2.5, -0.1, 1.0001):
        r = proxy.feedback(id=rid, quality=bad)
        assert r.status_code == 400 and "[0, 1]" in r.json()["error"]["message"]
    n_obs = proxy.app.state.mixllm.tr.router.n_observations()["mid"]
    assert proxy.feedback(id=rid, quality=0.7).status_code == 200
    r = proxy.feedback(id=rid, quality=0.7)
    assert r.status_code == 409 and "already" in r.json()["error"]["message"]
    assert proxy.feedback(id=rid, thumbs="up").status_code == 409
    # learned exactly once
    assert proxy.app.state.mixllm.tr.router.n_observations()["mid"] == n_obs + 1


def test_quality_range_from_the_fitted_data(backend_server, tmp_path, monkeypatch):
    """A router fitted on qualities in [0, 10] (its metadata says so) takes feedback there."""
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    pool, backends = make_pool(backend_server.url)
    tr = _fitted(pool, tmp_path / "state", scale=10.0)
    assert tr.router.metadata["quality_range"] == [0.0, 10.0]
    p = Proxy(pool, backends, state_dir=tmp_path / "state")
    try:
        _, h = p.chat("big")
        assert p.feedback(id=h["x-mixllm-response-id"], quality=11.0).status_code == 400
        assert p.feedback(id=h["x-mixllm-response-id"], quality=7.5).status_code == 200
    finally:
        p.stop()


def test_passthrough_is_not_embedded_until_feedback(backend_server, monkeypatch):
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    enc = HashEncoder(16)
    p = Proxy(*make_pool(backend_server.url), encoder=enc)
    try:
        before = enc.embedded
        _, h = p.chat("big", "a passthrough prompt")
        assert h["x-mixllm-route"] == "passthrough" and "x-mixllm-router-ms" not in h
        assert enc.embedded == before  # nothing embedded on the request path
        assert p.feedback(id=h["x-mixllm-response-id"], quality=1.0).status_code == 200
        assert enc.embedded == before + 1  # embedded once, for the feedback
        _, h = p.chat("mixllm")
        assert float(h["x-mixllm-router-ms"]) >= 0 and enc.embedded == before + 2
    finally:
        p.stop()


def test_pending_ids_survive_a_restart_within_their_ttl(backend_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    state = tmp_path / "state"
    pool, backends = make_pool(backend_server.url)
    p = Proxy(pool, backends, state_dir=state)
    try:
        ids = [p.chat(m, f"question {i}")[1]["x-mixllm-response-id"]
               for i, m in enumerate(["mid", "mixllm", "big"])]
        assert p.feedback(id=ids[0], quality=1.0).status_code == 200
    finally:
        p.stop()  # saves the router and the pending ids
    assert (state / "pending.npz").is_file()
    p = Proxy(pool, backends, state_dir=state)
    try:
        assert p.feedback(id=ids[0], quality=1.0).status_code == 409  # answered before
        assert p.feedback(id=ids[1], thumbs="down").status_code == 200  # routed, kept
        assert p.feedback(id=ids[2], quality=0.5).status_code == 200  # passthrough, kept
        assert p.feedback(id=ids[2], quality=0.5).status_code == 409
    finally:
        p.stop()
    # ids are saved without any feedback having changed the router
    p = Proxy(pool, backends, state_dir=state)
    try:
        _, h = p.chat("big", "no feedback before the restart")
    finally:
        p.stop()
    p = Proxy(pool, backends, state_dir=state)
    try:
        assert p.feedback(id=h["x-mixllm-response-id"], quality=1.0).status_code == 200
    finally:
        p.stop()
    # past the time-to-live an id is gone (404), after a restart too
    p = Proxy(pool, backends, state_dir=state, pending_ttl_s=0.2)
    try:
        _, h = p.chat("mid")
    finally:
        p.stop()
    time.sleep(0.3)
    p = Proxy(pool, backends, state_dir=state, pending_ttl_s=0.2)
    try:
        assert len(p.app.state.mixllm.pending) == 0
        r = p.feedback(id=h["x-mixllm-response-id"], quality=1.0)
        assert r.status_code == 404 and "0.2 s" in r.json()["error"]["message"]
    finally:
        p.stop()


def test_feedback_reaches_the_outcome_memory_across_restarts(backend_server, tmp_path,
                                                              monkeypatch):
    """A router on neighbour features: the proxy's feedback is stored in the outcome memory
    at the routed prompt's embedding (a passthrough's, embedded when saved or answered),
    after a restart too; a thumb and a version-1 pending file reach the router only."""
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    state = tmp_path / "state"
    pool, backends = make_pool(backend_server.url)
    rng = np.random.default_rng(1)
    tr = TextRouter(pool, PipelineConfig(tags=False, features="neighbours", neighbours=(3,),
                                         ridge=1.0, lam=DEFAULT_LAM), HashEncoder(16))
    texts = [" ".join(rng.choice(["sum", "list", "movie", "prime", "code"], 5))
             for _ in range(30)]
    tr.fit(tr.embed(texts), rng.random((30, 3)), np.full((30, 3), 20.0), None)
    tr.save(state)
    p = Proxy(pool, backends, state_dir=state)
    try:
        st = p.app.state.mixllm
        n0, obs0 = len(st.tr.memory), st.tr.router.n_observations()["big"]
        ids = {t: p.chat(m, t)[1]["x-mixllm-response-id"] for t, m in (
            ("alpha beta", "mixllm"), ("gamma delta", "big"), ("epsilon zeta", "mixllm"),
            ("eta theta", "mixllm"))}
        h = p.chat("mixllm", "iota kappa")[1]
        assert p.feedback(id=ids["alpha beta"], quality=1.0).status_code == 200
        assert len(st.tr.memory) == n0 + 1  # a new prompt, stored at its embedding
        e = HashEncoder(16).encode(["alpha beta"])[0]
        x = st.tr.features(e[None])[0]
        assert p.feedback(id=h["x-mixllm-response-id"], thumbs="up").status_code == 200
        assert len(st.tr.memory) == n0 + 1  # a thumb: the router only
    finally:
        p.stop()  # saves the router, the memory and the pending ids with their embeddings
    p = Proxy(pool, backends, state_dir=state)
    try:
        st = p.app.state.mixllm
        assert len(st.tr.memory) == n0 + 1
        np.testing.assert_allclose(st.tr.features(e[None])[0], x)  # the memory was saved
        assert p.feedback(id=ids["gamma delta"], quality=1.0).status_code == 200  # passthrough
        assert p.feedback(id=ids["epsilon zeta"], quality=0.0).status_code == 200  # routed
        assert len(st.tr.memory) == n0 + 3
        assert st.tr.router.n_observations()["big"] >= obs0 + 1
    finally:
        p.stop()
    # a damaged file (an array that does not match its checksum) is ignored, with a warning
    good = (state / "pending.npz").read_bytes()
    with np.load(state / "pending.npz") as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(state / "pending.npz", **{**arrays, "output_tokens": arrays["output_tokens"] + 1})
    p = Proxy(pool, backends, state_dir=state)
    try:
        assert len(p.app.state.mixllm.pending) == 0
    finally:
        p.stop()
    # a pending file of version 1 (unchecked, no embeddings) is read: its ids teach the router
    # only
    (state / "pending.npz").write_bytes(good)
    v1 = {k: v for k, v in arrays.items() if k != "e"}
    v1["meta"] = np.frombuffer(json.dumps({"format": "mixllm-pending/1", "dim": 16}).encode(),
                               np.uint8)
    np.savez(state / "pending.npz", **v1)
    p = Proxy(pool, backends, state_dir=state)
    try:
        st = p.app.state.mixllm
        n = sum(st.tr.router.n_observations().values())
        assert p.feedback(id=ids["eta theta"], quality=1.0).status_code == 200
        assert len(st.tr.memory) == n0 + 3 and sum(st.tr.router.n_observations().values()) == n + 1
    finally:
        p.stop()


# ------------------------------------------------------------------ state: nothing lost, cost-aware
def _fitted(pool, folder, scale=1.0, best="mid"):
    """A TextRouter fitted on hash embeddings where ``best`` is the best LLM, saved."""
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(["sum", "list", "movie", "prime", "code"], 5))
             for _ in range(60)]
    tr = TextRouter(list(pool), PipelineConfig(tags=False, lam=DEFAULT_LAM), HashEncoder(16))
    E = tr.embed(texts)
    q = np.full((60, len(pool)), 0.1 * scale)
    q[:, [m.name for m in pool].index(best)] = 0.9 * scale
    tr.fit(E, q, np.full((60, len(pool)), 20.0), None)
    tr.router.metadata["quality_range"] = [0.0, float(scale)]
    tr.save(folder)
    return tr


def test_llms_missing_from_the_pool_file_are_kept_inactive(backend_server, tmp_path,
                                                         monkeypatch, caplog):
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    state = tmp_path / "state"
    full, backends = make_pool(backend_server.url)  # cheap, mid, big
    fitted = _fitted(full, state, best="mid")
    probe = np.eye(fitted.router.dim)[:3]
    mid_before = fitted.router.predict(probe)
    served = [m for m in full if m.name != "mid"]
    caplog.set_level("INFO", logger="mixllm")
    p = Proxy(served, {n: b for n, b in backends.items() if n != "mid"}, state_dir=state)
    try:
        assert "kept 1 LLMs" in caplog.text and "mid" in caplog.text
        assert "routing among 2 LLMs: cheap, big" in caplog.text
        assert [m.id for m in p.client.models.list()] == ["mixllm", "cheap", "big"]
        for i in range(5):  # mid is the best by far, but inactive: never chosen
            _, h = p.chat("mixllm:lam=inf", f"sum list movie {i}")
            assert h["x-mixllm-llm"] in ("cheap", "big")
            assert "mid" not in h["x-mixllm-ranking"].split(",")
        with pytest.raises(openai.NotFoundError):
            p.chat("mid")  # not passed through either
        _, h = p.chat("big")
        assert p.feedback(id=h["x-mixllm-response-id"], quality=1.0).status_code == 200
    finally:
        p.stop()
    assert "saved router state to" in caplog.text
    back = TextRouter.load(state, encoder=HashEncoder(16)).router
    assert back.names == ["cheap", "mid", "big"]  # nothing deleted
    after = back.predict(probe)
    for a, b in zip(mid_before, after):  # mid unchanged, big learned
        np.testing.assert_array_equal(a[:, 1], b[:, 1])
    assert back.n_observations()["big"] == fitted.router.n_observations()["big"] + 1


def test_cost_aware_defaults(backend_server, tmp_path, monkeypatch, caplog):
    """Cold start: the stated default lam (price decides, LinUCB exploration); a pool file's
    lam overrides a state's, and its prices replace the state's."""
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    from mixllm.serving.proxy import COLD_ALPHA

    pool, backends = make_pool(backend_server.url, ("big", "mid", "cheap"))  # dearest first
    p = Proxy(pool, backends)
    try:
        r = p.app.state.mixllm.tr.router
        assert r.lam == DEFAULT_LAM and r.alpha == COLD_ALPHA
        _, h = p.chat("mixllm")
        assert h["x-mixllm-llm"] == "cheap"  # not the first pool entry
    finally:
        p.stop()
    state = tmp_path / "state"
    _fitted(pool, state)
    repriced = [LLM(m.name, m.input_price, 99.0 if m.name == "mid" else m.output_price)
                for m in pool]
    caplog.set_level("INFO", logger="mixllm")
    p = Proxy(repriced, backends, state_dir=state, lam=0.3)
    try:
        r = p.app.state.mixllm.tr.router
        assert r.lam == 0.3 and r.llm("mid").output_price == 99.0
        assert f"mid: the pool file's prices and latency profile replace the state's (input " \
               f"{pool[1].input_price:g} -> {pool[1].input_price:g}, output " \
               f"{pool[1].output_price:g} -> 99" in caplog.text
        assert "big: the pool file's prices" not in caplog.text  # unchanged: not logged
        assert {m.name: m for m in r.llms}["big"] == pool[0]
    finally:
        p.stop()


def test_cold_start_tries_the_next_cheapest_after_bad_feedback(backend_server, monkeypatch):
    """No state: price decides and the LinUCB bonus explores; an LLM judged poor is left for
    the next cheapest one, and the dearest is not tried while a cheaper one answers well."""
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    p = Proxy(*make_pool(backend_server.url, ("big", "mid", "cheap")))
    try:
        seen = []
        for i in range(12):
            _, h = p.chat("mixllm", f"question number {i} about lists")
            llm = h["x-mixllm-llm"]
            seen.append(llm)
            q = {"cheap": 0.0, "mid": 1.0, "big": 1.0}[llm]
            assert p.feedback(id=h["x-mixllm-response-id"], quality=q).status_code == 200
        assert seen[0] == "cheap"
        assert "mid" in seen and "big" not in seen
        first_mid = seen.index("mid")
        assert seen[first_mid:] == ["mid"] * (len(seen) - first_mid)  # kept once it answers well
    finally:
        p.stop()


def test_pool_file_lam(tmp_path):
    from mixllm.data import load_pool_settings

    body = '[[llm]]\nname = "a"\ninput_price = 1\noutput_price = 2\n'
    p = tmp_path / "pool.toml"
    p.write_text(body)
    assert load_pool_settings(p) == {}
    p.write_text("lam = 0.02\n" + body)
    assert load_pool_settings(p) == {"lam": 0.02} and len(load_pool(p)) == 1
    p.write_text("lam = inf\n" + body)
    assert load_pool_settings(p) == {"lam": float("inf")}
    j = tmp_path / "pool.json"
    j.write_text(json.dumps({"lam": "inf", "llm": [{"name": "a", "input_price": 1,
                                                     "output_price": 2}]}))
    assert load_pool_settings(j) == {"lam": float("inf")}
    for bad in ("0", "-1", '"x"', "true"):
        p.write_text(f"lam = {bad}\n" + body)
        with pytest.raises(DataError, match="lam must be a number > 0"):
            load_pool_settings(p)
    p.write_text("budget = 3\n" + body)
    with pytest.raises(DataError, match="unknown top-level keys"):
        load_pool(p)


# ------------------------------------------------------------------ circuit breaking
def test_circuit_breaker_skips_a_failing_backend_then_probes_it(backend_server, monkeypatch):
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    app = backend_server.app
    p = Proxy(*make_pool(backend_server.url, ("flaky", "cheap", "big")), breaker_failures=2,
              breaker_cooldown_s=0.5)
    metrics = lambda: httpx.get(p.server.url + "/metrics", timeout=10).text
    flaky_calls = lambda: sum(1 for s in app.state.seen if s[0] == "flaky")
    app.state.flaky_fails = True
    try:
        assert 'mixllm_backend_circuit_open{llm="flaky"} 0.0' in metrics()
        for _ in range(2):  # two failures in a row: the circuit opens
            _, h = p.chat("mixllm:lam=0.001")
            assert h["x-mixllm-llm"] == "cheap" and h["x-mixllm-fallbacks"] == "flaky:HTTP 500"
        assert 'mixllm_backend_circuit_open{llm="flaky"} 1.0' in metrics()
        assert 'mixllm_backend_circuit_opened_total{llm="flaky"} 1.0' in metrics()
        calls = flaky_calls()
        _, h = p.chat("mixllm:lam=0.001")  # skipped without a request
        assert h["x-mixllm-llm"] == "cheap" and h["x-mixllm-fallbacks"] == "flaky:circuit-open"
        with pytest.raises(openai.APIStatusError) as err:
            p.chat("flaky")  # a passthrough to it: 503 at once, with a retry time
        assert err.value.status_code == 503 and err.value.response.headers["retry-after"] == "1"
        assert flaky_calls() == calls
        assert httpx.get(p.server.url + "/healthz", timeout=10).json()["circuit_open"] == ["flaky"]
        time.sleep(0.6)  # cool-down over: one probe, which fails: open again
        _, h = p.chat("mixllm:lam=0.001")
        assert h["x-mixllm-fallbacks"] == "flaky:HTTP 500" and flaky_calls() == calls + 1
        _, h = p.chat("mixllm:lam=0.001")
        assert h["x-mixllm-fallbacks"] == "flaky:circuit-open"
        app.state.flaky_fails = False
        time.sleep(0.6)  # the next probe succeeds: closed
        _, h = p.chat("mixllm:lam=0.001")
        assert h["x-mixllm-llm"] == "flaky" and "x-mixllm-fallbacks" not in h
        assert 'mixllm_backend_circuit_open{llm="flaky"} 0.0' in metrics()
        _, h = p.chat("mixllm:lam=0.001")
        assert h["x-mixllm-llm"] == "flaky"
    finally:
        app.state.flaky_fails = False
        p.stop()


def test_circuit_breaker_stops_paying_a_hung_backends_timeout(backend_server, monkeypatch):
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    p = Proxy(*make_pool(backend_server.url, ("slow", "cheap")), breaker_failures=1,
              breaker_cooldown_s=30)
    try:
        _, h = p.chat("mixllm:lam=0.001")  # pays the 0.3 s timeout once
        assert h["x-mixllm-fallbacks"].startswith("slow:timeout")
        t0 = time.perf_counter()
        _, h = p.chat("mixllm:lam=0.001")
        assert h["x-mixllm-fallbacks"] == "slow:circuit-open" and h["x-mixllm-llm"] == "cheap"
        assert time.perf_counter() - t0 < 0.3
    finally:
        p.stop()


def test_unset_api_key_is_reported_at_start(backend_server, monkeypatch, caplog):
    monkeypatch.delenv("MIXLLM_TEST_KEY", raising=False)
    caplog.set_level("WARNING", logger="mixllm")
    create_app(*make_pool(backend_server.url, ("cheap",)), encoder=HashEncoder(16))
    assert "cheap: api_key_env MIXLLM_TEST_KEY is not set" in caplog.text


def test_serve_config_is_checked():
    for bad in ({"max_pending": 0}, {"pending_ttl_s": 0}, {"breaker_failures": 0},
                {"breaker_cooldown_s": float("inf")}, {"quality_range": (1.0, 0.0)}):
        with pytest.raises(ValueError):
            ServeConfig(**bad)


def test_encode_inline_chooses_where_a_routed_prompt_is_featurised(backend_server,
                                                                    monkeypatch):
    """ServeConfig.encode_inline: on the event loop's thread (True) or a worker thread (False,
    and by default for an encoder that is not the static one)."""
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")

    class Where(HashEncoder):
        def __init__(self) -> None:
            super().__init__(16)
            self.threads: list[threading.Thread] = []

        def encode_with_counts(self, texts):
            self.threads.append(threading.current_thread())
            return super().encode_with_counts(texts)

    for setting, on_loop in ((True, True), (False, False), (None, False)):
        enc = Where()
        p = Proxy(*make_pool(backend_server.url), encoder=enc, encode_inline=setting)
        try:
            enc.threads.clear()
            _, h = p.chat("mixllm")
            assert h["x-mixllm-route"] == "routed"
            assert len(enc.threads) == 1
            assert (enc.threads[0] is p.server.thread) == on_loop, setting
        finally:
            p.stop()
    for bad in (1, "yes", 0.0):
        with pytest.raises(ValueError, match="encode_inline"):
            ServeConfig(encode_inline=bad)


def test_the_proxy_limits_blas_threads_as_configured(backend_server, monkeypatch):
    """ServeConfig.blas_threads (default 1) is applied to the process's BLAS when the proxy is
    created; None leaves it alone; anything else but an int >= 1 is refused."""
    from threadpoolctl import threadpool_info, threadpool_limits

    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")

    def blas_threads():
        return sorted({lib["num_threads"] for lib in threadpool_info()
                       if lib["user_api"] == "blas"})

    if not blas_threads():
        pytest.skip("no BLAS library that threadpoolctl can see")
    with threadpool_limits(limits=2, user_api="blas"):
        p = Proxy(*make_pool(backend_server.url), blas_threads=None)
        p.stop()
        assert blas_threads() == [2]
        p = Proxy(*make_pool(backend_server.url))
        p.stop()
        assert blas_threads() == [1]
    for bad in (0, -1, 1.0, True, "1"):
        with pytest.raises(ValueError, match="blas_threads"):
            ServeConfig(blas_threads=bad)


def test_breaker_states():
    from mixllm.serving.proxy import _Breaker

    changes = []
    b = _Breaker(["a"], failures=2, cooldown_s=10.0, on_change=lambda n, o: changes.append(o))
    assert b.allow("a", 0.0)
    b.failure("a", 0.0)
    assert b.allow("a", 0.5) and not b.is_open("a")
    b.failure("a", 1.0)  # second in a row: open until 11
    assert b.is_open("a") and changes == [True]
    assert not b.allow("a", 5.0)
    assert b.allow("a", 11.0)  # half-open: one probe ...
    assert not b.allow("a", 11.1)  # ... at a time
    b.abandon("a")  # the probe was cancelled: another may go
    assert b.allow("a", 11.2)
    b.failure("a", 11.3)  # a failed probe opens it again at once
    assert not b.allow("a", 20.0) and b.allow("a", 21.3)
    b.success("a")
    assert not b.is_open("a") and changes == [True, True, False] and b.allow("a", 21.4)
    b.failure("a", 22.0)  # the count starts again after a success
    assert not b.is_open("a")
