"""Crash-safety of saving: SIGKILL a process at random moments while it saves, then load.

The file (``--mode router``: ``Router.save``) or folder (``--mode text``: ``TextRouter.save``)
first holds state A. For each trial a forked child saves B, A, B, ... back to back into the
same path, and is killed with SIGKILL after a random delay drawn uniformly from [0, 4 x the
time one save takes], so the kills land at every point of a save (writing, fsync, rename,
manifest, clean-up). Then the path is loaded: it must give exactly A or exactly B (the same
predictions and transform, bit for bit), never an error or a third state. Prints a JSON
summary; exits 1 if any load failed or was neither state.

    python tools/kill_save.py --mode router --trials 1000
    python tools/kill_save.py --mode text --trials 1000

A SIGKILL is a process crash: the kernel keeps what the process wrote. Power loss is
covered by the fsync order (data file, then folder, then the rename), which this cannot test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mixllm import LLM, Router
from mixllm.text.pipeline import PipelineConfig, TextRouter

# The tests' encoder double (the save path only needs an encoder's identity).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fakes import HashEncoder  # noqa: E402

POOL = [LLM(f"llm{k}", 0.5 + k, 1.0 + 2 * k) for k in range(6)]


def states(mode: str, dim: int, seed: int):
    """Two different states A and B (B = A plus online feedback) and a probe set."""
    rng = np.random.default_rng(seed)
    n = 300
    E = rng.normal(size=(n, dim))
    q = (rng.random((n, len(POOL))) < 0.6).astype(float)
    t = rng.integers(10, 400, size=(n, len(POOL))).astype(float)
    probe = rng.normal(size=(64, dim))
    if mode == "router":
        a = Router(POOL, dim, alpha=0.1, refactor_every=64).fit(E, q, t)
        b = a.clone()
        for i in range(40):
            b.feedback(E[i], POOL[i % len(POOL)].name, 1.0, 50)
        return a, b, probe
    cfg = PipelineConfig(ridge=1.0, alpha=0.1, tag_rank=2)
    domains = np.array([f"d{i % 5}" for i in range(n)])
    a = TextRouter(POOL, cfg, HashEncoder(16)).fit(E, q, t, domains)
    b = TextRouter(POOL, cfg, HashEncoder(16)).fit(E[::-1].copy(), q[::-1].copy(), t, domains)
    F = b.features(E)
    for i in range(40):
        b.router.feedback(F[i], POOL[i % len(POOL)].name, 1.0, 50)
    return a, b, probe


def fingerprint(mode: str, obj, probe: np.ndarray) -> bytes:
    h = hashlib.sha256()
    router = obj if mode == "router" else obj.router
    F = probe if mode == "router" else obj.features(probe)
    h.update(F.tobytes())
    for arr in router.predict(F):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(json.dumps(router.n_observations(), sort_keys=True).encode())
    return h.digest()


def load(mode: str, path: Path):
    if mode == "router":
        return Router.load(path)
    return TextRouter.load(path, encoder=HashEncoder(16))


def run(mode: str, trials: int, dim: int, seed: int, folder: Path) -> dict:
    a, b, probe = states(mode, dim, seed)
    fa, fb = fingerprint(mode, a, probe), fingerprint(mode, b, probe)
    assert fa != fb
    path = folder / ("router.npz" if mode == "router" else "state")
    a.save(path)
    t0 = time.perf_counter()
    for _ in range(5):
        b.save(path)
        a.save(path)
    t_save = (time.perf_counter() - t0) / 10
    rnd = random.Random(seed)
    counts = {"old": 0, "new": 0, "corrupt": 0}
    failures: list[str] = []
    t_start = time.perf_counter()
    for trial in range(trials):
        pid = os.fork()
        if pid == 0:  # child: save B, A, B, ... until killed
            try:
                while True:
                    b.save(path)
                    a.save(path)
            finally:
                os._exit(3)
        time.sleep(rnd.uniform(0.0, 4.0 * t_save))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            failures.append(f"trial {trial}: child ended on its own (status {status})")
        try:
            got = fingerprint(mode, load(mode, path), probe)
        except Exception as exc:  # noqa: BLE001 - any failure to load is a corrupt state
            counts["corrupt"] += 1
            failures.append(f"trial {trial}: {type(exc).__name__}: {exc}")
            continue
        if got == fa:
            counts["old"] += 1
        elif got == fb:
            counts["new"] += 1
        else:
            counts["corrupt"] += 1
            failures.append(f"trial {trial}: loaded a state that is neither A nor B")
    leftovers = sorted(p.name for p in folder.rglob(".*"))
    return {"mode": mode, "trials": trials, "dim": dim, "save_s": round(t_save, 4),
            "elapsed_s": round(time.perf_counter() - t_start, 1), **counts,
            "leftover_temp_files": len(leftovers), "failures": failures[:10],
            "ok": counts["corrupt"] == 0 and not failures}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("router", "text"), default="router")
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", type=Path, help="where to save (default: a temporary folder)")
    a = p.parse_args(argv)
    if a.dir is not None:
        a.dir.mkdir(parents=True, exist_ok=True)
        out = run(a.mode, a.trials, a.dim, a.seed, a.dir)
    else:
        with tempfile.TemporaryDirectory() as d:
            out = run(a.mode, a.trials, a.dim, a.seed, Path(d))
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
