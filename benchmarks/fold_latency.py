"""Decision latency while another thread feeds back and folds: what a fold costs the others.

One router from ``mixllm.bench.make_router`` (d = 385 with the intercept, K = 11). A feedback
thread sends ``Router.feedback`` on one LLM in a loop, so that LLM folds into a base of its own
every ``max_rank`` (96) rows; the main thread times ``Router.route`` for ``--seconds``. Both
are Python threads (they share the GIL outside the engine), so the medians include waiting for
the GIL; the tail shows whether a fold holds the other thread up (it used to: the O(d^3)
factorisation ran under the pool's exclusive lock).

Usage::

    PYTHONPATH=python python benchmarks/fold_latency.py [--seconds 3]
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0)
    r = run(p.parse_args().seconds)
    print(f"decisions {r['decisions']}, updates {r['updates']}: p50 {r['p50_us']:.1f} us, "
          f"p99 {r['p99_us']:.1f} us, p99.9 {r['p999_us']:.0f} us, max {r['max_us']:.0f} us")


if __name__ == "__main__":
    main()
