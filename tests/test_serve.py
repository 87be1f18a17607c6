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
from mixllm.serving.backend import Backend, load_backends
from mixllm.serving.proxy import ServeConfig, create_app
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

    @app.post("/{name}/v1/chat/completions")
    async def chat(name: str, request: Request):
        body = await request.json()
        app.state.seen.append((name, body["model"], request.headers.get("authorization")))
        if name == "broken":
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
PRICES = {"broken": 0.01, "slow": 0.02, "cheap": 0.1, "mid": 1.0, "big": 10.0}


def make_pool(backend_url: str, names=("cheap", "mid", "big"), timeout_s: float = 5.0):
    pool = [LLM(n, PRICES[n], PRICES[n]) for n in names]
    backends = {n: Backend(n, f"{backend_url}/{n}/v1", f"{n}-model-id", "MIXLLM_TEST_KEY",
                           0.3 if n == "slow" else timeout_s) for n in names}
    return pool, backends


class Proxy:
    def __init__(self, pool, backends, state_dir=None, **cfg) -> None:
        app = create_app(pool, backends, state_dir=state_dir, encoder=HashEncoder(16),
                         config=ServeConfig(**cfg))
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
    """`mixllm serve` as a process (MiniLM cold start): answers, and saves its state on SIGINT."""
    pool = tmp_path / "pool.toml"
    pool.write_text("".join(
        f'[[llm]]\nname = "{n}"\ninput_price = {PRICES[n]}\noutput_price = {PRICES[n]}\n'
        f'base_url = "{backend_server.url}/{n}/v1"\n' for n in ("cheap", "big")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(Path(mixllm.__file__).parents[1]))
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
            model="mixllm:lam=0.01", messages=[{"role": "user", "content": "hello"}])
        assert r.headers["x-mixllm-llm"] == "cheap"
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert (tmp_path / "state" / "manifest.json").is_file()
    assert proc.returncode == 0, log.read_text()
    assert "sk-" not in log.read_text()


def test_replica_hooks_prefix_ids_and_forward_unknown_feedback(backend_server, monkeypatch):
    """What the Ray deployment builds on: ids carry a replica tag, and feedback on an id this
    process does not know is handed on (202) or refused (404)."""
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    forwarded = []

    def forward(rid, quality, up):
        forwarded.append((rid, quality, up))
        return rid.startswith("chatcmpl-mixllm-other-")

    pool, backends = make_pool(backend_server.url)
    app = create_app(pool, backends, encoder=HashEncoder(16), id_prefix="mine-",
                     forward_feedback=forward)
    server = _Server(app)
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
    finally:
        server.stop()
