"""benchmarks/proxy_overhead.py as a smoke check: it runs end to end on loopback (upstream,
bare hops, `mixllm serve` cold and with a fitted state), counts no errors, reports the
router's own time for routed requests only, and writes its JSON. No timing is asserted
here: the figures are the benchmark's (benchmarks/RESULTS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("aiohttp")
pytest.importorskip("httpx")

from test_static_encoder import tiny_table  # noqa: E402  (the tests folder is on the path)

from mixllm.text.pipeline import PipelineConfig, TextRouter  # noqa: E402
from mixllm.text.static import StaticEncoder, default_table_path  # noqa: E402
from mixllm.types import LLM  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "proxy_overhead.py"


def test_overhead_benchmark_runs_and_counts_no_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    tiny_table().save(default_table_path())  # stands in for the distilled MiniLM table
    # A small fitted state of two LLMs, as `mixllm fit --out` writes one.
    rng = np.random.default_rng(0)
    pool = [LLM("a", 0.5, 1.0), LLM("b", 5.0, 10.0)]
    texts = [" ".join(rng.choice(["sum", "list", "movie", "python", "hello"], 5))
             for _ in range(40)]
    tr = TextRouter(pool, PipelineConfig(tags=False, lam=0.05), StaticEncoder(build=False))
    tr.fit(tr.embed(texts), rng.uniform(0, 1, size=(40, 2)), np.full((40, 2), 20.0), None)
    tr.save(tmp_path / "router")
    out = tmp_path / "overhead.json"
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--n1", "8", "--nc", "60", "--conc", "5", "--rounds", "2",
         "--warmup", "2", "--state", str(tmp_path / "router"), "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    r = res["results"]
    assert set(r) == {"direct", "hop", "hop (aiohttp)", "proxy passthrough", "proxy routed",
                      "proxy routed (fitted)"}
    for name, t in r.items():
        assert t["errors"] == 0, (name, proc.stdout)
        assert t["n1"] == 8 and len(t["rps_rounds"]) == 2 and t["rps_conc"] > 0
    for name in ("proxy routed", "proxy routed (fitted)"):
        assert r[name]["router_ms_p50"] is not None and r[name]["router_ms_p50"] > 0
    for name in ("direct", "hop", "hop (aiohttp)", "proxy passthrough"):
        assert r[name]["router_ms_p50"] is None  # passthrough: no featurising, no header
    assert "encoder StaticEncoder" in res["proxy_logs"]["proxy"]
    assert "loaded router state" in res["proxy_logs"]["fitted"]
    assert res["machine"]["cores"] == os.cpu_count()
    assert (tmp_path / "router" / "manifest.json").is_file()  # the user's folder: untouched
    assert not (tmp_path / "router" / "pending.npz").exists()
