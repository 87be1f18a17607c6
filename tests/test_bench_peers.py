"""``mixllm bench`` with peer libraries (benchmarks/peers.py) and the scaling script.

Small d and K, few calls: these check the adapter protocol and the JSON, never speed. Each
peer test skips when its library (the ``bench`` extra) is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from mixllm import bench

ROOT = Path(__file__).resolve().parents[1]
PEERS_FILE = ROOT / "benchmarks" / "peers.py"
_peers = bench.peers_module(PEERS_FILE)

# (JSON key, module to import, has a batch call)
PEERS = [("vowpalwabbit", "vowpalwabbit", False), ("mabwiser", "mabwiser.mab", True),
         ("contextualbandits", "contextualbandits.online", True)]
PEER_MODULES = ("vowpalwabbit", "mabwiser", "mabwiser.mab", "contextualbandits",
                "contextualbandits.online")


def _importorskip(module: str) -> None:
    with warnings.catch_warnings():  # a library's import-time warnings are not under test
        warnings.simplefilter("ignore")
        pytest.importorskip(module)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *argv])
    return args.func(args)


@pytest.mark.parametrize("name,module,batched", PEERS, ids=[p[0] for p in PEERS])
def test_peer_adapter_protocol_and_it_learns_the_best_arm(name, module, batched, rng):
    _importorskip(module)
    d, k = 6, 3
    (peer,), missing = _peers.load_peers(d, k, seed=1, names=(name,))
    assert missing == [] and peer.name == name and peer.setup and peer.version
    Z = np.hstack([rng.normal(size=(150, d - 1)), np.ones((150, 1))])
    rewards = np.zeros((150, k))
    rewards[:, 1] = 1.0  # arm 1 is always the best, by a wide margin
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer.fit(Z, rewards)
            greedy = peer.greedy(Z[:20])
            assert greedy.shape == (20,) and np.issubdtype(greedy.dtype, np.integer)
            assert np.mean(greedy == 1) >= 0.9
            arm = peer.decide(Z[0])
            assert isinstance(arm, int) and 0 <= arm < k
            peer.update(Z[0], arm, 0.5)
            assert (peer.decide_batch is not None) == batched
            if batched:
                out = peer.decide_batch(Z[:7])
                assert out.shape == (7,) and set(out.tolist()) <= set(range(k))
    finally:
        peer.close()


@pytest.mark.parametrize("name,module,batched", PEERS, ids=[p[0] for p in PEERS])
def test_bench_json_gains_the_installed_peer(tmp_path, name, module, batched):
    _importorskip(module)
    out = tmp_path / "bench.json"
    assert _cli(["--dim", "9", "--k", "3", "--batch", "8", "--n", "20", "--encoders", "none",
                 "--cycles", "0", "--peers-file", str(PEERS_FILE), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in ("decision_us", "update_us"):
        assert {"mixllm", "numpy", name} <= set(res[key]) and res[key][name] > 0
    assert (name in res["batch_qps"]) == batched
    meta = res["peers"][name]
    assert meta["setup"] and 0.0 <= meta["agree_with_mixllm"] <= 1.0
    assert name not in res["peers_not_installed"]


def test_bench_json_keeps_its_keys_when_no_peer_is_installed(tmp_path, monkeypatch, capsys):
    for module in PEER_MODULES:  # None in sys.modules makes `import module` raise ImportError
        monkeypatch.setitem(sys.modules, module, None)
    out = tmp_path / "bench.json"
    assert _cli(["--dim", "9", "--k", "3", "--batch", "8", "--n", "20", "--encoders", "none",
                 "--cycles", "0", "--peers-file", str(PEERS_FILE), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in ("decision_us", "update_us", "update_mean_us", "batch_qps"):
        assert set(res[key]) == {"mixllm", "numpy"}
    assert res["peers"] == {} and res["peers_not_installed"] == list(_peers.PEER_NAMES)
    printed = capsys.readouterr().out
    for name in _peers.PEER_NAMES:
        assert f"{name}" in printed
    assert printed.count("not installed") == len(_peers.PEER_NAMES)


def test_bench_without_the_adapters_says_so(tmp_path, monkeypatch, capsys):
    with pytest.raises(FileNotFoundError):
        bench.peers_module(tmp_path / "no-such-peers.py")
    monkeypatch.chdir(tmp_path)  # no benchmarks/peers.py here, and none beside the package:
    monkeypatch.setattr(bench, "PEERS_FILE", Path("no-such-folder") / "peers.py")
    out = tmp_path / "bench.json"
    assert _cli(["--dim", "9", "--k", "3", "--batch", "8", "--n", "20", "--encoders", "none",
                 "--cycles", "0", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["peers"] == {} and res["peers_not_installed"] == [] and res["peers_file"] is None
    assert set(res["decision_us"]) == {"mixllm", "numpy"}
    assert "adapters not found" in capsys.readouterr().out


def test_no_peers_flag_leaves_the_json_as_before(tmp_path):
    out = tmp_path / "bench.json"
    assert _cli(["--dim", "9", "--k", "3", "--batch", "8", "--n", "20", "--encoders", "none",
                 "--no-peers", "--cycles", "0", "--peers-file", str(PEERS_FILE), "--json",
                 str(out)]) == 0
    res = json.loads(out.read_text())
    assert "peers" not in res and "peers_not_installed" not in res
    for key in ("decision_us", "update_us", "batch_qps"):
        assert set(res[key]) == {"mixllm", "numpy"}


def test_scaling_script_writes_json_and_plot(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"
    spec = importlib.util.spec_from_file_location("mixllm_bench_scaling", path)
    scaling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scaling)
    res = scaling.measure(dims=(9, 17), ks=(2, 3), batches=(1, 8), d0=17, k0=3, n=20)
    assert [r["d"] for r in res["over_d"]] == [9, 17]
    assert [r["k"] for r in res["over_k"]] == [2, 3]
    assert [r["batch"] for r in res["over_batch"]] == [1, 8]
    for r in res["over_d"] + res["over_k"]:
        assert r["decision_us"] > 0 and r["update_us"] > 0 and r["batch_qps"] > 0
    json.dumps(res)
    png = tmp_path / "scaling.png"
    scaling.plot(res, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_reports_the_steady_state_beside_the_fresh_figures(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert _cli(["--dim", "9", "--k", "3", "--batch", "16", "--n", "20", "--encoders", "none",
                 "--no-peers", "--cycles", "400", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    st = res["steady"]
    assert st["cycles"] == 400 and sum(st["n_obs"]) >= 400
    for key in ("decision_us", "decision_p99_us", "decision_exact_bonus_us", "update_us",
                "update_mean_us", "batch_qps"):
        assert st[key] > 0, key
    assert st["agree_exact_linucb"] == 1.0  # bound and refine: the exact choices
    assert res["machine"]["cpu"] and res["simd_backend"]
    printed = capsys.readouterr().out
    assert "steady state (after 400 route -> feedback cycles" in printed
    assert "same decision as exact LinUCB on 100.00%" in printed
