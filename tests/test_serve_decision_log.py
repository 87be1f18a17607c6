"""The proxy's exploration, decision log and drift gauges (fake backends on loopback)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
pytest.importorskip("openai")

from mixllm.decision_log import read_log  # noqa: E402
from mixllm.evaluation.ope import TermsPolicy, evaluate_log  # noqa: E402
from test_serve import Proxy, _Server, fake_backends, make_pool  # noqa: E402


@pytest.fixture(scope="module")
def backend_server():
    s = _Server(fake_backends())
    yield s
    s.stop()


def test_proxy_logs_explored_decisions_and_outcomes(backend_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    path = tmp_path / "decisions.jsonl"
    p = Proxy(*make_pool(backend_server.url, ("broken", "cheap", "big")),
              decision_log=str(path), explore_epsilon=0.6, explore_seed=3, drift_window=10)
    try:
        ids, answered = [], []
        for i in range(40):
            _, h = p.chat("mixllm:lam=0.001", text=f"question number {i}")
            ids.append(h["x-mixllm-response-id"])
            answered.append(h["x-mixllm-llm"])
            assert h["x-mixllm-ranking"].split(",")[0] in ("broken", "cheap", "big")
        for rid in ids[::2]:
            assert p.feedback(id=rid, quality=1.0).status_code == 200
        metrics = httpx.get(p.server.url + "/metrics", timeout=10).text
    finally:
        p.stop()
    assert "mixllm_drift_z{" in metrics and "mixllm_drift_alarm{" in metrics
    log = read_log(path)
    assert log.ids == ids and log.llms == ["broken", "cheap", "big"]
    # Cold start: "broken" is the cheapest, so the router's own choice; epsilon 0.6 over 3
    # LLMs gives it 0.6 and the others 0.2 each.
    assert set(np.round(log.propensity, 9)) <= {0.6, 0.2}
    chosen = [log.llms[k] for k in log.chosen]
    assert len(set(chosen)) == 3
    # A query sent to "broken" fell back to another LLM: its outcomes are not broken's.
    fell = np.array([c == "broken" for c in chosen])
    assert log.fallback_rows == fell.sum() > 0
    assert np.isnan(log.cost[fell]).all() and np.isfinite(log.cost[~fell]).all()
    assert np.isfinite(log.quality[::2][~fell[::2]]).all() and np.isnan(log.quality[1::2]).all()
    assert [a for a, f in zip(answered, fell) if not f] == [c for c, f in zip(chosen, fell)
                                                            if not f]
    res = evaluate_log(log, TermsPolicy(lam=1e-6), n_boot=100)
    assert res["cost"]["n"] == (~fell).sum()


def test_proxy_without_options_logs_nothing_and_routes_deterministically(backend_server,
                                                                         tmp_path, monkeypatch):
    monkeypatch.setenv("MIXLLM_TEST_KEY", "k")
    p = Proxy(*make_pool(backend_server.url))
    try:
        seen = {p.chat("mixllm:lam=0.001")[1]["x-mixllm-llm"] for _ in range(5)}
    finally:
        p.stop()
    assert seen == {"cheap"}
    assert list(tmp_path.iterdir()) == []
