"""Update and decision time of the native engine with forgetting (``discount < 1``) and without.

Runs :func:`mixllm.bench.run_steady` (the router of ``mixllm bench``, fitted on ``2 d`` rows,
then ``--cycles`` route -> feedback cycles, timed on the last ``--n``) once per discount and
round, the discounts alternating within each round so that a loaded machine's drift falls on
all of them alike, and prints each figure's median over the rounds with the CPU and kernels.

    python tools/bench_forgetting.py --dim 385 --k 11 --cycles 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from mixllm import bench, simd_backend

KEYS = ("update_us", "update_mean_us", "update_max_us", "decision_us", "decision_p99_us",
        "decision_exact_bonus_us", "agree_exact_linucb", "bases")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, default=385)
    p.add_argument("--k", type=int, default=11)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--cycles", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--discounts", type=float, nargs="+", default=[1.0, 0.999, 0.99])
    p.add_argument("--json", metavar="OUT")
    a = p.parse_args()
    runs: dict[float, list[dict]] = {g: [] for g in a.discounts}
    for r in range(a.rounds):
        for g in a.discounts:
            res = bench.run_steady(d=a.dim, k=a.k, n=a.n, seed=0, cycles=a.cycles, discount=g)
            runs[g].append(res)
            print(json.dumps({"round": r, "discount": g, **{k: res[k] for k in KEYS}}), flush=True)
    print(f"\nd={a.dim} K={a.k}, {a.cycles} cycles, medians of {a.rounds} rounds; kernels "
          f"{simd_backend()}, CPU {bench._cpu_model()}, load {os.getloadavg()[0]:.1f}")
    print(f"{'':28}" + "".join(f"{'discount ' + format(g, 'g'):>16}" for g in a.discounts))
    summary = {}
    for key in KEYS:
        vals = [float(np.median([x[key] for x in runs[g]])) for g in a.discounts]
        summary[key] = dict(zip(map(str, a.discounts), vals))
        print(f"{key:28}" + "".join(f"{v:16.3f}" for v in vals))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"runs": {str(g): v for g, v in runs.items()}, "summary": summary}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
