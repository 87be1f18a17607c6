"""The Ray Serve deployment: feedback sent to one replica changes decisions on another.

Skipped unless ``ray[serve]`` is installed (the test extra installs it, so CI runs this)."""

from __future__ import annotations

import socket
import sys
import threading
import time

import pytest

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
pytest.importorskip("fastapi")
import httpx
import uvicorn
from fastapi import FastAPI, Request
from mixllm import LLM
from mixllm.serving.backend import Backend
from mixllm.serving.ray_serve import build_app

import fakes
from fakes import HashEncoder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::pytest.PytestUnraisableExceptionWarning",
                                        "ignore::ResourceWarning")


def fake_backend() -> FastAPI:
    app = FastAPI()

    @app.post("/{name}/v1/chat/completions")
    async def chat(name: str, request: Request):
        body = await request.json()
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": name}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def backend_url():
    server = uvicorn.Server(uvicorn.Config(fake_backend(), host="127.0.0.1", port=0,
                                           log_level="warning", ws="none"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and t.is_alive()
        time.sleep(0.01)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    t.join(10)


def test_feedback_on_one_replica_changes_decisions_on_another(backend_url):
    # Ray ships the encoder to the replicas, whose workers cannot import the tests' modules:
    # the test doubles travel by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.cloudpickle.register_pickle_by_value(fakes)
    port = free_port()
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        pool = [LLM("cheap", 0.1, 0.1), LLM("big", 10.0, 10.0)]
        backends = {n: Backend(n, f"{backend_url}/{n}/v1", n) for n in ("cheap", "big")}
        serve.run(build_app(pool, backends, encoder=HashEncoder(16), num_replicas=2,
                            sync_every_s=0.2), route_prefix="/")
        url = f"http://127.0.0.1:{port}/v1"
        text = "prove the theorem about primes"

        def ask(model):
            r = httpx.post(url + "/chat/completions", timeout=30, json={
                "model": model, "messages": [{"role": "user", "content": text}]})
            assert r.status_code == 200, r.text
            return r.headers["x-mixllm-llm"], r.json()["id"].split("-")[2]

        seen = {}
        for _ in range(60):  # both replicas answer; before feedback both choose the first
            llm, replica = ask("mixllm")
            seen[replica] = llm
            if len(seen) == 2:
                break
        assert len(seen) == 2 and set(seen.values()) == {"cheap"}
        # feedback on responses of ONE replica, once per response id (a repeat would get
        # 409), each sent wherever Serve routes it
        target = next(iter(seen))
        codes = []
        for _ in range(80):
            if len(codes) >= 3 and 202 in codes:
                break
            r = httpx.post(url + "/chat/completions", timeout=30, json={
                "model": "big", "messages": [{"role": "user", "content": text}]})
            if r.json()["id"].split("-")[2] != target:
                continue
            fb = httpx.post(url + "/feedback", json={"id": r.json()["id"], "quality": 1.0},
                            timeout=30)
            codes.append(fb.status_code)
        # 200: learned by the replica that answered; 202: handed to it through the hub
        assert set(codes) <= {200, 202} and 202 in codes, codes
        other = next(k for k in seen if k != target)
        deadline = time.monotonic() + 30
        decided = {}
        while time.monotonic() < deadline and decided.get(other) != "big":
            llm, replica = ask("mixllm")
            decided[replica] = llm
            time.sleep(0.05)
        assert decided.get(other) == "big", decided
    finally:
        serve.shutdown()
        ray.shutdown()
