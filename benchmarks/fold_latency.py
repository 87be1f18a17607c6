"""Decision latency while another thread feeds back and folds: what a fold costs the others.

One router from ``mixllm.bench.make_router`` (d = 385 with the intercept, K = 11). A feedback
thread sends ``Router.feedback`` on one LLM in a loop, so that LLM folds into a base of its own
every ``max_rank`` (96) rows; the main thread times ``Router.route`` for ``--seconds``. Both
are Python threads (they share the GIL outside the engine), so the medians include waiting for
the GIL; the tail shows whether a fold holds the other thread up (it used to: the O(d^3)
factorisation ran under the pool's exclusive lock).

``--fold-cost N`` instead times N folds themselves: background folds off, so that the update
that brings the LLM to ``max_rank`` computes its fold (the factorisation of the new base, its
triangular inverse and, when due, the floor's and the ceiling's certifications) in the calling
thread; the figures are those updates' times (the others are ordinary updates).

Usage::

    PYTHONPATH=python python benchmarks/fold_latency.py [--seconds 3] [--fold-cost 20]
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np

from mixllm.bench import make_router


def run(seconds: float = 3.0) -> dict[str, float]:
    router, Q = make_router(385, 11, 256, 0)
    llm = router.names[3]
    stop = threading.Event()
    updates = [0]

    def feed() -> None:
        i = 0
        while not stop.is_set():
            router.feedback(Q[i % len(Q)], llm, 0.5, 100.0)
            i += 1
        updates[0] = i

    t = threading.Thread(target=feed)
    t.start()
    time.sleep(0.05)
    lat, i, end = [], 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        x = Q[i % len(Q)]
        t0 = time.perf_counter_ns()
        router.route(x, 100.0, lam=0.01)
        lat.append(time.perf_counter_ns() - t0)
        i += 1
    stop.set()
    t.join()
    us = np.array(lat) / 1e3
    return {"decisions": len(us), "updates": updates[0], "p50_us": float(np.percentile(us, 50)),
            "p99_us": float(np.percentile(us, 99)), "p999_us": float(np.percentile(us, 99.9)),
            "max_us": float(us.max())}


def fold_cost(folds: int = 20) -> dict[str, float]:
    """Times of ``folds`` folds of one LLM, each computed by the update that triggers it."""
    router, Q = make_router(385, 11, 256, 0)
    pool = router._pool
    pool.background_folds = False
    llm, m = router.names[3], pool.max_rank
    # With the fold in the updating thread, the update that would bring the LLM to max_rank
    # folds its corrections and its row (rank 0): the first after m - 1 - r0 updates, then
    # every m-th.
    r0 = pool.arm(llm)["rank"]
    first = m - 1 - r0
    n = first + (folds - 1) * m + 1
    # Wall time, and this thread's CPU time: on a loaded machine the process waits for a core,
    # which inflates the wall time but not the CPU time (caches shared with the other jobs
    # still inflate both).
    times, cpu = np.empty(n), np.empty(n)
    for i in range(n):
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        router.feedback(Q[i % len(Q)], llm, 0.5, 100.0)
        cpu[i] = (time.thread_time_ns() - c0) / 1e3
        times[i] = (time.perf_counter_ns() - t0) / 1e3
    assert pool.arm(llm)["rank"] == 0, "the folds did not come where expected"
    is_fold = np.zeros(n, bool)
    is_fold[first::m] = True
    f, o, fc = times[is_fold], times[~is_fold], cpu[is_fold]
    return {"folds": int(is_fold.sum()), "fold_p50_us": float(np.median(f)),
            "fold_min_us": float(f.min()), "fold_max_us": float(f.max()),
            "fold_cpu_p50_us": float(np.median(fc)), "fold_cpu_min_us": float(fc.min()),
            "fold_cpu_max_us": float(fc.max()), "update_p50_us": float(np.median(o))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--fold-cost", type=int, default=0, metavar="N",
                   help="time N folds computed in the updating thread instead")
    args = p.parse_args()
    if args.fold_cost:
        c = fold_cost(args.fold_cost)
        ms = {k: v / 1e3 for k, v in c.items() if k.endswith("_us")}
        print(f"{c['folds']} folds (d=385): wall p50 {ms['fold_p50_us']:.2f} ms (min "
              f"{ms['fold_min_us']:.2f}, max {ms['fold_max_us']:.2f}); CPU p50 "
              f"{ms['fold_cpu_p50_us']:.2f} ms (min {ms['fold_cpu_min_us']:.2f}, max "
              f"{ms['fold_cpu_max_us']:.2f}); other updates p50 {c['update_p50_us']:.1f} us")
        return
    r = run(args.seconds)
    print(f"decisions {r['decisions']}, updates {r['updates']}: p50 {r['p50_us']:.1f} us, "
          f"p99 {r['p99_us']:.1f} us, p99.9 {r['p999_us']:.0f} us, max {r['max_us']:.0f} us")


if __name__ == "__main__":
    main()
