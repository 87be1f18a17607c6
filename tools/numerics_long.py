"""Numerical health of the native core after many online updates.

Feeds ``--updates`` Sherman-Morrison/Woodbury updates (rank-1 rows, folds, periodic
re-anchoring, exactly what ``Router.feedback`` does) into one LLM of a ``_core.Pool`` and
compares what the decisions use -- the inverse ``A^-1`` and the coefficients ``theta`` --
with a fresh float64 factorisation of the exact statistics ``A = ridge I + sum x x^T`` and
``b = sum y x`` accumulated independently in NumPy. Prints one JSON line per checkpoint and a
final summary; exits 1 if the relative error exceeds ``--tol``.

    python tools/numerics_long.py --updates 1000000 --dim 64
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from mixllm import _core, simd_backend


def rel_errors(pool: "_core.Pool", name: str, A: np.ndarray, b: np.ndarray) -> dict[str, float]:
    s = pool.arm(name)
    Ainv = np.linalg.inv(A)
    theta = np.linalg.solve(A, b.T).T
    return {
        "A": float(np.abs(s["A"] - A).max() / np.abs(A).max()),
        "Ainv": float(np.abs(s["Ainv"] - Ainv).max() / np.abs(Ainv).max()),
        "theta": float(np.abs(s["theta"] - theta).max() / max(np.abs(theta).max(), 1e-300)),
    }


def run(updates: int, dim: int, ridge: float, refactor_every: int, checkpoints: int, seed: int,
        kind: str) -> dict:
    rng = np.random.default_rng(seed)
    pool = _core.Pool(dim, 2, refactor_every)
    pool.add_arm("a", ridge, np.zeros((2, dim)), 1.0, 1.0)
    A = ridge * np.eye(dim)
    b = np.zeros((2, dim))
    w_true = rng.normal(size=dim)
    chunk = 4096
    every = max(updates // checkpoints, 1)
    worst = {"A": 0.0, "Ainv": 0.0, "theta": 0.0}
    done, t0, next_check = 0, time.perf_counter(), every
    while done < updates:
        n = min(chunk, updates - done)
        X = rng.normal(size=(n, dim))
        if kind == "duplicates":  # few distinct queries, seen over and over
            X = X[:1].repeat(n, axis=0) + 1e-6 * X
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        Y = np.stack([X @ w_true + 0.1 * rng.normal(size=n), rng.normal(3.0, 1.0, size=n)], 1)
        for x, y in zip(X, Y):
            pool.update("a", x, y)
        A += X.T @ X
        b += Y.T @ X
        done += n
        if done >= next_check or done == updates:
            next_check += every
            e = rel_errors(pool, "a", A, b)
            worst = {k: max(worst[k], e[k]) for k in worst}
            print(json.dumps({"updates": done, **e, "elapsed_s": round(time.perf_counter() - t0, 1)}),
                  flush=True)
    return {"updates": updates, "dim": dim, "ridge": ridge, "refactor_every": refactor_every,
            "kind": kind, "backend": simd_backend(), "worst": worst,
            "elapsed_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--updates", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--ridge", type=float, default=1.0)
    p.add_argument("--refactor-every", type=int, default=4096)
    p.add_argument("--checkpoints", type=int, default=10)
    p.add_argument("--kind", choices=("random", "duplicates"), default="random")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-6)
    a = p.parse_args(argv)
    out = run(a.updates, a.dim, a.ridge, a.refactor_every, a.checkpoints, a.seed, a.kind)
    out["ok"] = all(v <= a.tol for v in out["worst"].values())
    print(json.dumps({"summary": out}), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
