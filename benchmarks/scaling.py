"""How mixllm's routing core scales with the feature count d, the pool size K and the batch size.

Three sweeps, each on a router from ``mixllm.bench.make_router`` (fitted on ``2 d``
full-information rows, unit-norm queries; ``d`` counts the intercept), through the public API
only (``Router.route``, ``Router.feedback``, ``Router.route_batch``), one Python thread:

- ``d`` in 64, 128, 256, 385, 512 at K = 11;
- ``K`` in 2, 4, 11, 32, 64 at d = 385;
- batch size in 1, 8, 64, 256, 1024 at d = 385, K = 11 (``route_batch`` decisions/s).

Per (d, K) point: decision = median of ``n`` single ``route`` calls on the fitted state (queries
rotating through 256 rows); update = median (and mean, which carries the amortised folds of the
low-rank corrections) of ``n // 2`` ``feedback`` calls, each right after ``route`` on the same
query, on a second router (the serving cycle, as ``mixllm bench`` times it); batch = 256
queries per ``route_batch`` call, decisions/s from the median call. Batch sweep: decisions/s =
B / median time of a ``route_batch`` call on B queries.

Usage::

    PYTHONPATH=python python benchmarks/scaling.py --json /tmp/scaling.json --png /tmp/scaling.png

Writes the figures (with the machine, load average, commit and core library hash) as JSON and a
three-panel plot (matplotlib, Agg).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

import mixllm
from mixllm.bench import _times_us, make_router

DIMS = (64, 128, 256, 385, 512)
KS = (2, 4, 11, 32, 64)
BATCHES = (1, 8, 64, 256, 1024)
LAM, N_IN = 0.01, 100.0
UTC = datetime.timezone.utc


def point(d: int, k: int, n: int = 2000, seed: int = 0, batch: int = 256) -> dict[str, Any]:
    """Decision, update and batch figures at one (d, K)."""
    router, Q = make_router(d, k, batch, seed)
    nq = len(Q)
    for i in range(min(nq, 50)):
        router.route(Q[i], N_IN, lam=LAM)  # warm-up
    dec = _times_us(lambda i: router.route(Q[i % nq], N_IN, lam=LAM), n)
    n_in = np.full(nq, N_IN)
    bat = _times_us(lambda i: router.route_batch(Q, n_in, lam=LAM), max(5, n // 50))

    cyc, _ = make_router(d, k, batch, seed)
    upd = np.empty(max(1, n // 2))
    for i in range(len(upd)):
        x = Q[i % nq]
        chosen = cyc.route(x, N_IN, lam=LAM)
        t = time.perf_counter_ns()
        cyc.feedback(x, chosen.llm, 0.7, 120.0)
        upd[i] = (time.perf_counter_ns() - t) / 1e3
    return {"d": d, "k": k, "decision_us": float(np.median(dec)),
            "update_us": float(np.median(upd)), "update_mean_us": float(np.mean(upd)),
            "batch_qps": nq / (float(np.median(bat)) * 1e-6), "calls": n}


def batch_sweep(batches=BATCHES, d: int = 385, k: int = 11, seed: int = 0,
                budget_calls: int = 20000) -> list[dict[str, Any]]:
    """``route_batch`` decisions/s for each batch size, on one router."""
    router, Q = make_router(d, k, max(batches), seed)
    out = []
    for b in batches:
        X, n_in = Q[:b], np.full(b, N_IN)
        router.route_batch(X, n_in, lam=LAM)  # warm-up
        reps = int(np.clip(budget_calls // b, 10, 2000))
        t = np.median(_times_us(lambda i: router.route_batch(X, n_in, lam=LAM), reps))
        out.append({"batch": b, "call_us": float(t), "decisions_per_s": b / (t * 1e-6),
                    "us_per_decision": float(t) / b, "calls": reps})
    return out


def _provenance() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                                  cwd=Path(__file__).resolve().parent).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    spec = importlib.util.find_spec("mixllm._core")
    core = Path(spec.origin) if spec and spec.origin else None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": git("rev-parse", "HEAD"),
        "tracked_changes": None if status is None else bool(status),
        "core_sha256": hashlib.sha256(core.read_bytes()).hexdigest()[:16] if core else None,
        "core_mtime_utc": (datetime.datetime.fromtimestamp(core.stat().st_mtime, UTC)
                           .isoformat(timespec="seconds") if core else None),
        "simd_backend": mixllm.simd_backend(),
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "python": platform.python_version(), "numpy": np.__version__,
    }


def measure(dims=DIMS, ks=KS, batches=BATCHES, d0: int = 385, k0: int = 11, n: int = 2000,
            seed: int = 0) -> dict[str, Any]:
    """All three sweeps, with provenance and the load average before and after."""
    load_before = os.getloadavg()
    started = datetime.datetime.now(UTC).isoformat(timespec="seconds")
    res = {
        "over_d": [point(d, k0, n, seed) for d in dims],
        "over_k": [point(d0, k, n, seed) for k in ks],
        "over_batch": batch_sweep(batches, d0, k0, seed),
        "fixed": {"k_for_d_sweep": k0, "d_for_k_and_batch_sweeps": d0, "k_for_batch_sweep": k0,
                  "batch_for_batch_qps": 256},
        "started_utc": started,
        "finished_utc": datetime.datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
        "machine": _provenance(),
    }
    return res


def plot(res: dict[str, Any], path: str | Path) -> None:
    """Three panels: time vs d, time vs K, decisions/s vs batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, label in ((axes[0], "over_d", "d (features incl. intercept)"),
                           (axes[1], "over_k", "K (LLMs)")):
        rows = res[key]
        xs = [r["d" if key == "over_d" else "k"] for r in rows]
        ax.plot(xs, [r["decision_us"] for r in rows], "o-", label="decision (route)")
        ax.plot(xs, [r["update_us"] for r in rows], "s-", label="update (feedback), median")
        ax.set_xlabel(label)
        ax.set_ylabel("µs per call (median)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fx = res["fixed"]
    axes[0].set_title(f"K = {fx['k_for_d_sweep']}", fontsize=10)
    axes[1].set_title(f"d = {fx['d_for_k_and_batch_sweeps']}", fontsize=10)
    rows = res["over_batch"]
    ax = axes[2]
    bs = [r["batch"] for r in rows]
    ax.loglog(bs, [r["decisions_per_s"] for r in rows], "o-")
    ax.set_xticks(bs, [str(x) for x in bs])
    ax.set_xlabel("batch size (route_batch)")
    ax.set_ylabel("decisions / s")
    ax.set_title(f"d = {fx['d_for_k_and_batch_sweeps']}, K = {fx['k_for_batch_sweep']}",
                 fontsize=10)
    ax.grid(alpha=0.3, which="both")
    m = res["machine"]
    commit = (m["commit"] or "?")[:10]
    fig.suptitle(f"mixllm routing core, one thread, kernels {m['simd_backend']} "
                 f"(commit {commit}, load {res['loadavg_before'][0]:.1f})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default="/tmp/mixllm_scaling.json", help="figures (JSON)")
    p.add_argument("--png", default="/tmp/mixllm_scaling.png", help="plot (PNG)")
    p.add_argument("--n", type=int, default=2000, help="single decisions timed per point")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    res = measure(n=args.n, seed=args.seed)
    Path(args.json).write_text(json.dumps(res, indent=2), encoding="utf-8")
    plot(res, args.png)
    print(f"{'':10}{'decision us':>12}{'update us':>12}{'update mean':>12}{'batch256 /s':>13}")
    for key, var in (("over_d", "d"), ("over_k", "k")):
        for r in res[key]:
            print(f"{var}={r[var]:<8}{r['decision_us']:12.1f}{r['update_us']:12.1f}"
                  f"{r['update_mean_us']:12.1f}{r['batch_qps']:13.0f}")
    for r in res["over_batch"]:
        print(f"B={r['batch']:<8}{r['decisions_per_s']:12.0f} decisions/s "
              f"({r['us_per_decision']:.2f} us each)")
    print(f"wrote {args.json} and {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
