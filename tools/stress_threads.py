"""Many Python threads on one Router: no lost updates, no wrong decisions.

``--threads`` threads each make ``--calls`` mixed calls on one shared, fitted router: route
(50%), feedback (40%) and thumbs feedback (10%) on queries drawn from a fixed bank, while one
more thread adds and removes an extra LLM and changes waiting times. Every feedback is logged;
afterwards a fresh router fitted on the same data replays the logged feedback sequentially, and
the per-LLM observation counts must be equal and the sufficient statistics A = ridge I +
sum w z z^T and b = sum w y z^T equal up to summation order (relative tolerance ``--rtol``,
against the largest entry). Prints a JSON summary; exits 1 on any failure.

    python tools/stress_threads.py --threads 8 --calls 1000000
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import numpy as np

from mixllm import LLM, Router, simd_backend

POOL = [LLM("gpt-4", 10.0, 30.0), LLM("gpt-3.5", 1.0, 2.0), LLM("mixtral", 0.6, 0.6),
        LLM("mistral-7b", 0.2, 0.2)]


def _fitted(dim: int, refactor_every: int) -> tuple[Router, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(200, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    q = 1.0 / (1.0 + np.exp(-(X @ rng.normal(size=(dim, len(POOL))))))
    t = np.exp(3.0 + X @ rng.normal(size=(dim, len(POOL)))).round()
    q[rng.random(q.shape) < 0.2] = np.nan
    router = Router(POOL, dim, alpha=0.1, beta=0.1, tau=5.0, lam=0.01,
                    refactor_every=refactor_every)
    router.fit(X, q, t)
    bank = rng.normal(size=(4096, dim))
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    return router, bank


def run(threads: int, calls: int, dim: int, refactor_every: int, rtol: float, seed: int) -> dict:
    router, bank = _fitted(dim, refactor_every)
    names = [m.name for m in POOL]
    logs: list[list[tuple[int, int, float, float, float]]] = [[] for _ in range(threads)]
    errors: list[str] = []
    n_routes = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 2)

    def worker(t: int) -> None:
        rng = np.random.default_rng([seed, t])
        log = logs[t]
        routes = 0
        start.wait()
        try:
            chunk = 4096
            for c0 in range(0, calls, chunk):
                n = min(chunk, calls - c0)
                ops = rng.random(n)
                xi = rng.integers(0, len(bank), n)
                ki = rng.integers(0, len(names), n)
                qs = rng.random(n)
                toks = rng.integers(1, 500, n).astype(float)
                for j in range(n):
                    x = bank[xi[j]]
                    if ops[j] < 0.5:
                        d = router.route(x, 100.0)
                        if d.llm != d.names[d.index] or not np.isfinite(d.score).all():
                            errors.append(f"bad decision {d.llm} {d.index} {d.names}")
                        routes += 1
                    elif ops[j] < 0.9:
                        router.feedback(x, names[ki[j]], float(qs[j]), float(toks[j]))
                        log.append((int(xi[j]), int(ki[j]), float(qs[j]), float(toks[j]), 1.0))
                    else:
                        up = bool(qs[j] > 0.5)
                        router.feedback_thumbs(x, names[ki[j]], up, float(toks[j]))
                        log.append((int(xi[j]), int(ki[j]), 1.0 if up else 0.0, float(toks[j]),
                                    0.5))
        except Exception as exc:  # noqa: BLE001 - reported in the summary
            errors.append(f"thread {t}: {type(exc).__name__}: {exc}")
        n_routes[t] = routes

    def churn() -> None:
        i = 0
        start.wait()
        try:
            while not stop.is_set():
                router.add_llm(LLM("churn", 0.1, 0.1), warm_start="pool")
                router.set_waiting_time(names[i % len(names)], 0.5 * (i % 5))
                router.remove_llm("churn")
                i += 1
                time.sleep(0.001)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"churn: {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    churner = threading.Thread(target=churn)
    for th in (*workers, churner):
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in workers:
        th.join()
    elapsed = time.perf_counter() - t0
    stop.set()
    churner.join()

    replay, _ = _fitted(dim, refactor_every)
    for log in logs:
        for xi, ki, q, tok, w in log:
            replay.feedback(bank[xi], names[ki], q, tok, weight=w)
    counts, want = router.n_observations(), replay.n_observations()
    rel = {"A": 0.0, "b": 0.0}
    for name in names:
        got, exp = router._pool.arm(name), replay._pool.arm(name)
        for key in rel:
            rel[key] = max(rel[key], float(np.abs(got[key] - exp[key]).max()
                                           / np.abs(exp[key]).max()))
    n_feedback = sum(len(log) for log in logs)
    ok = not errors and counts == want and all(v <= rtol for v in rel.values())
    return {"threads": threads, "calls_per_thread": calls, "total_calls": threads * calls,
            "routes": sum(n_routes), "feedbacks": n_feedback, "dim": dim,
            "refactor_every": refactor_every, "elapsed_s": round(elapsed, 2),
            "calls_per_s": round(threads * calls / elapsed), "counts_equal": counts == want,
            "counts": counts, "max_rel_diff": rel, "rtol": rtol, "errors": errors[:10],
            "n_errors": len(errors), "backend": simd_backend(), "ok": ok}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--calls", type=int, default=1_000_000, help="calls per thread")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--refactor-every", type=int, default=512)
    p.add_argument("--rtol", type=float, default=1e-9)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = run(a.threads, a.calls, a.dim, a.refactor_every, a.rtol, a.seed)
    print(json.dumps(out))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
