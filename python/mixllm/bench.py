"""``mixllm bench``: routing-core figures for mixllm and a NumPy LinUCB, measured in one run.

Decision (``Router.route`` from Python, returning the Decision), online update
(``Router.feedback`` right after the decision on the same query, the serving cycle), and batch
routing (``Router.route_batch``) at ``d`` features (intercept included) and ``k`` LLMs, after
``Router.fit`` on full-information data. The NumPy baseline is the same float64 maths written
the way a NumPy user would (one stacked ``(k, d, d)`` inverse); both are checked to make the
same decisions before timing. Figures are medians of single calls (per-call wall time,
``time.perf_counter_ns``); ``update_mean_us`` includes the amortised folds of the low-rank
corrections (see ``cpp/include/mixllm/pool.hpp``). ``decision_float32_us`` is the decision
with the opt-in ``Router(precision="float32")`` scoring, timed in rounds alternating with the
float64 one (``decision_us``).

Peers (``--peers``, on by default): the contextual-bandit libraries of the ``bench`` extra that
are installed -- Vowpal Wabbit (``cb_explore_adf``, SquareCB), MABWiser (LinUCB),
contextualbandits (LinUCB) -- fitted on the same rows and timed on the same queries; they
learn one combined reward, not mixllm's two targets (``benchmarks/peers.py`` says how each
differs). The adapters are benchmark code: they live in the source tree, not in the installed
package, and :func:`peers_module` finds them.

Text to decision (:func:`run_text`): ``TextRouter.route`` from a ~50-token query to a Decision
(encoder, tag transform, router) for each encoder, static table and MiniLM.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import _core
from .router import Router
from .types import LLM

__all__ = ["NumpyLinUCB", "PEERS_FILE", "make_router", "peers_module", "run", "register"]

#: The peer adapters, relative to a source checkout's root.
PEERS_FILE = Path("benchmarks") / "peers.py"


def peers_module(path: str | os.PathLike | None = None) -> Any:
    """The peer adapters module (``benchmarks/peers.py``), loaded from ``path``, else from the
    current folder, else beside this package's source tree; ``None`` when none is found (an
    installed mixllm run outside a checkout). A ``path`` given and missing raises
    ``FileNotFoundError``."""
    if path is not None:
        candidates = [Path(path)]
        if not candidates[0].is_file():
            raise FileNotFoundError(f"{path}: no such peer adapters file")
    else:
        candidates = [Path.cwd() / PEERS_FILE, Path(__file__).resolve().parents[2] / PEERS_FILE]
    for c in candidates:
        if c.is_file():
            name = "mixllm_bench_peers"
            loaded = sys.modules.get(name)
            if loaded is not None and Path(loaded.__file__) == c.resolve():
                return loaded
            spec = importlib.util.spec_from_file_location(name, c.resolve())
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            return module
    return None


class NumpyLinUCB:
    """Stacked float64 state and the MixLLM score, written the way a NumPy user would."""

    def __init__(self, router: Router) -> None:
        arms = [router._pool.arm(n) for n in router.names]
        self.Ainv = np.stack([a["Ainv"] for a in arms])                   # (K, d, d)
        self.theta = np.stack([a["theta"] for a in arms])                 # (K, 2, d)
        self.pin = np.array([a["input_price"] for a in arms])
        self.pout = np.array([a["output_price"] for a in arms])
        self.alpha = router.alpha

    def decide(self, z: np.ndarray, n_in: float, inv_lam: float) -> int:
        means = self.theta @ z                                            # (K, 2)
        bonus = np.sqrt(np.maximum(np.einsum("kij,j->ki", self.Ainv, z) @ z, 0.0))
        tok = np.expm1(np.clip(means[:, 1], 0.0, 20.0))
        cost = (n_in * self.pin + tok * self.pout) * 1e-6
        return int(np.argmax(means[:, 0] - cost * inv_lam + self.alpha * bonus))

    def decide_batch(self, Z: np.ndarray, n_in: np.ndarray, inv_lam: float) -> np.ndarray:
        means = np.einsum("ktd,bd->bkt", self.theta, Z)
        AZ = np.einsum("kij,bj->bki", self.Ainv, Z)
        bonus = np.sqrt(np.maximum(np.einsum("bki,bi->bk", AZ, Z), 0.0))
        tok = np.expm1(np.clip(means[:, :, 1], 0.0, 20.0))
        cost = (n_in[:, None] * self.pin + tok * self.pout) * 1e-6
        return np.argmax(means[:, :, 0] - cost * inv_lam + self.alpha * bonus, axis=1)

    def update(self, k: int, z: np.ndarray, y: np.ndarray) -> None:
        u = self.Ainv[k] @ z
        denom = 1.0 + z @ u
        self.Ainv[k] -= np.outer(u, u) / denom
        self.theta[k] += np.outer((y - self.theta[k] @ z) / denom, u)


def _make_data(d: int, k: int, n_queries: int, seed: int):
    """The pool, ``2 d`` full-information rows (features, quality, output tokens) and the
    queries that :func:`make_router` uses (the peers of :func:`run` are fitted on the same)."""
    rng = np.random.default_rng(seed)
    pool = [LLM(f"m{i}", float(rng.uniform(0.1, 10)), float(rng.uniform(0.1, 30))) for i in range(k)]
    n = 2 * d
    X = rng.normal(size=(n, d - 1))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    quality = rng.random((n, k))
    tokens = rng.integers(1, 500, (n, k)).astype(float)
    Q = rng.normal(size=(n_queries, d - 1))
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    return pool, X, quality, tokens, Q


def make_router(d: int, k: int, n_queries: int = 256, seed: int = 0,
                discount: float = 1.0) -> tuple[Router, np.ndarray]:
    """A router fitted on ``2 d`` full-information rows (``d - 1`` features + intercept),
    and ``n_queries`` unit-norm queries; ``discount`` its forgetting of online feedback."""
    pool, X, quality, tokens, Q = _make_data(d, k, n_queries, seed)
    router = Router(pool, d - 1, alpha=0.1, discount=discount)
    router.fit(X, quality, tokens)
    return router, Q


def _times_us(f, n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        t = time.perf_counter_ns()
        f(i)
        out[i] = (time.perf_counter_ns() - t) / 1e3
    return out


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_steady(d: int = 385, k: int = 11, batch: int = 256, n: int = 2000, seed: int = 0,
               cycles: int = 20000, discount: float = 1.0) -> dict[str, Any]:
    """The figures after ``cycles`` route -> feedback cycles, as in production.

    The router of :func:`run` (fitted on ``2 d`` rows, ``alpha = 0.1``) learns online from a
    stream: each query is routed (``lam = 0.01``) and the routed LLM's feedback follows, its
    quality from a fixed hidden linear model (``clip(0.5 + w_k . x + noise, 0, 1)``), its
    output tokens uniform in 1..499. Then, on the learned state: decision p50/p99 over ``n``
    single calls, update p50/mean over the last ``min(n, cycles)`` cycles (folds included),
    batch decisions/s, and the share of ``batch`` replayed queries on which the decision
    equals exact LinUCB's (the pool's ``exact_bonus`` oracle, every bonus exact).
    ``discount < 1``: the router forgets (``Router(discount=...)``; tools/bench_forgetting.py).
    """
    router, Q = make_router(d, k, batch, seed, discount)
    rng = np.random.default_rng(seed + 1)
    W = rng.normal(size=(k, d - 1)) * 0.3
    lam, n_in = 0.01, 100.0
    X = rng.normal(size=(cycles, d - 1))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    noise = 0.1 * rng.normal(size=cycles)
    tokens = rng.integers(1, 500, cycles).astype(float)
    last = min(n, cycles)
    upd = np.empty(last)
    t0 = time.perf_counter()
    for i in range(cycles):
        x = X[i]
        dec = router.route(x, n_in, lam=lam)
        q = min(max(0.5 + float(W[dec.index] @ x) + noise[i], 0.0), 1.0)
        t = time.perf_counter_ns()
        router.feedback(x, dec.llm, q, tokens[i])
        if i >= cycles - last:
            upd[i - cycles + last] = (time.perf_counter_ns() - t) / 1e3
    stream_s = time.perf_counter() - t0
    dec_us = _times_us(lambda i: router.route(Q[i % len(Q)], n_in, lam=lam), n)
    n_batch = np.full(len(Q), n_in)
    b_us = _times_us(lambda i: router.route_batch(Q, n_batch, lam=lam), max(10, n // 50))
    got = router.route_batch(Q, n_batch, lam=lam)
    pool = router._pool
    pool.exact_bonus = True
    exact = router.route_batch(Q, n_batch, lam=lam)
    ex_us = _times_us(lambda i: router.route(Q[i % len(Q)], n_in, lam=lam), max(50, n // 4))
    pool.exact_bonus = False
    snap = pool.snapshot()
    return {
        "cycles": cycles, "stream_s": stream_s,
        "decision_us": float(np.median(dec_us)), "decision_p99_us": float(np.percentile(dec_us, 99)),
        "decision_exact_bonus_us": float(np.median(ex_us)),
        "update_us": float(np.median(upd)), "update_mean_us": float(np.mean(upd)),
        "update_max_us": float(np.max(upd)),
        "batch_qps": len(Q) / (float(np.median(b_us)) * 1e-6),
        "agree_exact_linucb": float(np.mean(got == exact)),
        "bases": len(snap["bases"]), "n_obs": [int(v) for v in pool.n_obs()],
    }


def run(d: int = 385, k: int = 11, batch: int = 256, n: int = 2000, seed: int = 0,
        peers: bool = True, peers_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """Measure both implementations; returns the figures as a JSON-ready dict.

    With ``peers``, every peer library of the adapters (:func:`peers_module` of
    ``peers_file``) that imports is fitted on the same rows and timed on the same queries
    (:func:`_run_peers`); its figures join the ``decision_us``, ``update_us`` and
    ``batch_qps`` dicts under its name, ``"peers"`` says how each was set up,
    ``"peers_not_installed"`` lists the ones that did not import and ``"peers_file"`` the
    adapters used (``None``: not found, no peer timed).
    """
    router, Q = make_router(d, k, batch, seed)
    ref = NumpyLinUCB(router)
    lam, inv_lam, n_in = 0.01, 100.0, 100.0
    Z = np.hstack([Q, np.ones((len(Q), 1))])
    nq = len(Q)
    # Same decisions first: the figures compare like with like.
    np.testing.assert_array_equal(ref.decide_batch(Z, np.full(nq, n_in), inv_lam),
                                  router.route_batch(Q, np.full(nq, n_in), lam=lam))

    # Decisions on a fixed state (the NumPy baseline cannot be updated and stay comparable).
    # float64 and the opt-in float32 scoring (Router(precision="float32")) in alternating
    # rounds, so that a change of machine load between them does not bias the comparison.
    f32 = router.clone()
    f32.precision = "float32"
    dec = lambda r: lambda i: r.route(Q[i % nq], n_in, lam=lam)  # noqa: E731
    rounds = [(_times_us(dec(router), max(1, n // 4)), _times_us(dec(f32), max(1, n // 4)))
              for _ in range(4)]
    mix_dec = np.concatenate([a for a, _ in rounds])
    mix_dec32 = np.concatenate([b for _, b in rounds])
    agree32 = float(np.mean(f32.route_batch(Q, np.full(nq, n_in), lam=lam)
                            == router.route_batch(Q, np.full(nq, n_in), lam=lam)))
    np_dec = _times_us(lambda i: ref.decide(Z[i % nq], n_in, inv_lam), n)

    # The serving cycle: route a query, then learn from the routed LLM on that query.
    cyc, _ = make_router(d, k, batch, seed)
    ref_u = NumpyLinUCB(cyc)
    upd = np.empty(n)
    for i in range(n):
        x = Q[i % nq]
        dec = cyc.route(x, n_in, lam=lam)
        t = time.perf_counter_ns()
        cyc.feedback(x, dec.llm, 0.7, 120.0)
        upd[i] = (time.perf_counter_ns() - t) / 1e3
    y = np.array([0.7, np.log1p(120.0)])
    np_upd = _times_us(lambda i: ref_u.update(i % k, Z[i % nq], y), min(n, 500))
    after = _times_us(lambda i: cyc.route(Q[i % nq], n_in, lam=lam), min(n, 500))

    n_batch = np.full(nq, n_in)
    mix_b = _times_us(lambda i: router.route_batch(Q, n_batch, lam=lam), max(10, n // 50))
    np_b = _times_us(lambda i: ref.decide_batch(Z, n_batch, inv_lam), max(5, n // 200))
    med = lambda a: float(np.median(a))  # noqa: E731
    res = {
        "d": d, "k": k, "batch": nq,
        "decision_us": {"mixllm": med(mix_dec), "numpy": med(np_dec)},
        "update_us": {"mixllm": med(upd), "numpy": med(np_upd)},
        "update_mean_us": {"mixllm": float(np.mean(upd)), "numpy": float(np.mean(np_upd))},
        "decision_after_updates_us": {"mixllm": med(after)},
        "decision_float32_us": {"mixllm": med(mix_dec32), "agree": agree32},
        "batch_qps": {"mixllm": nq / (med(mix_b) * 1e-6), "numpy": nq / (med(np_b) * 1e-6)},
        "decision_p99_us": {"mixllm": float(np.percentile(mix_dec, 99))},
        "simd_backend": _core.simd_backend(),
        "machine": {"cpu": _cpu_model(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "numpy": np.__version__},
        "notes": "medians of single calls; one Python thread; update = feedback right after "
                 "the decision on the same query",
    }
    if peers:
        _run_peers(res, d, k, n, seed, mixllm_choice=router.route_batch(Q, n_batch, lam=lam),
                   peers_file=peers_file)
    return res


def _run_peers(res: dict[str, Any], d: int, k: int, n: int, seed: int,
               mixllm_choice: np.ndarray, peers_file: str | os.PathLike | None = None) -> None:
    """Fit and time every installed peer library on :func:`run`'s data; adds to ``res``.

    Each peer is warm-started on the rows ``make_router`` fits mixllm on, with every arm's
    reward ``quality - cost_usd / lam`` (``n_in = 100`` input tokens, ``lam = 0.01``, the
    benchmark's; mixllm learns quality and tokens separately, see ``benchmarks/peers.py``), then
    timed on the same queries: decision (``min(n, 300)`` single calls on the fitted state),
    update (``min(n, 100)`` cycles: decide, then time learning the decided arm's reward on
    that query) and, where the library has a batch call, decisions/s on the whole batch.
    ``agree_with_mixllm`` is the share of the batch where the peer's deterministic choice
    (its UCB, or the argmax of its probabilities) is mixllm's.
    """
    import warnings

    peers = peers_module(peers_file)
    res["peers"] = {}
    res["peers_not_installed"] = []
    res["peers_file"] = None if peers is None else peers.__file__
    if peers is None:
        return
    pool, X, quality, tokens, Q = _make_data(d, k, len(mixllm_choice), seed)
    lam, n_in = 0.01, 100.0
    pin = np.array([m.input_price for m in pool])
    pout = np.array([m.output_price for m in pool])
    ones = lambda A: np.hstack([A, np.ones((len(A), 1))])  # noqa: E731
    Zfit, Z = ones(X), ones(Q)
    rewards = quality - (n_in * pin + tokens * pout) * 1e-6 / lam
    y_upd = lambda arm: 0.7 - (n_in * pin[arm] + 120.0 * pout[arm]) * 1e-6 / lam  # noqa: E731
    nq = len(Z)
    adapters, missing = peers.load_peers(d, k, alpha=0.1, ridge=1.0, seed=seed)
    res["peers_not_installed"] = missing
    for peer in adapters:
        # Libraries may warn (deprecations of their dependencies); a benchmark does not stop
        # for that, and the test suite turns warnings into errors.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                t0 = time.perf_counter()
                peer.fit(Zfit, rewards)
                fit_s = time.perf_counter() - t0
                agree = float(np.mean(peer.greedy(Z) == mixllm_choice))
                dec = _times_us(lambda i: peer.decide(Z[i % nq]), min(n, 300))
                upd = np.empty(min(n, 100))
                for i in range(len(upd)):
                    z = Z[i % nq]
                    arm = peer.decide(z)
                    t = time.perf_counter_ns()
                    peer.update(z, arm, y_upd(arm))
                    upd[i] = (time.perf_counter_ns() - t) / 1e3
                if peer.decide_batch is not None:
                    b = _times_us(lambda i: peer.decide_batch(Z), max(3, n // 400))
                    res["batch_qps"][peer.name] = nq / (float(np.median(b)) * 1e-6)
            finally:
                peer.close()
        res["decision_us"][peer.name] = float(np.median(dec))
        res["update_us"][peer.name] = float(np.median(upd))
        res["peers"][peer.name] = {"version": peer.version, "setup": peer.setup,
                                   "fit_s": fit_s, "agree_with_mixllm": agree}


# About 50 MiniLM WordPiece tokens each; a counter word makes every query distinct, so no
# embedding cache can serve a repeat.
_QUERY_TEMPLATES = (
    "Write a Python function that takes a list of integers and returns the second largest "
    "distinct value, or None when the list has fewer than two distinct values; explain its "
    "running time and test it on a few edge cases such as {} repeated numbers.",
    "A train leaves the station at 9 am travelling at 60 miles per hour and a second train "
    "follows an hour later at 80 miles per hour. At what time does the second train catch up "
    "with the first one, and how far have they both gone? Case {}.",
    "Which of the following best explains why the sky appears blue during the day but red at "
    "sunset: (A) reflection from the oceans (B) Rayleigh scattering of sunlight (C) ozone "
    "absorption (D) dust from volcanoes? Give the letter only. Item {}.",
)


def _text_router(encoder: Any, k: int, seed: int):
    """A TextRouter (default settings: tag transform on) fitted on generated prompts."""
    from .text.pipeline import PipelineConfig, TextRouter

    rng = np.random.default_rng(seed)
    prompts = [_QUERY_TEMPLATES[i % 3].format(i) for i in range(300)]
    domains = np.array([f"task{i % 3}" for i in range(300)])
    pool = [LLM(f"m{i}", float(rng.uniform(0.1, 10)), float(rng.uniform(0.1, 30)))
            for i in range(k)]
    E = encoder.encode(prompts)
    q = (rng.random((300, k)) < 0.6).astype(float)
    out = rng.integers(1, 500, (300, k)).astype(float)
    return TextRouter(pool, PipelineConfig(), encoder).fit(E, q, out, domains)


def run_text(encoders: tuple[str, ...] = ("static", "minilm"), k: int = 11, n: int = 2000,
             seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Text to decision: ``TextRouter.route`` on distinct ~50-token queries, per encoder.

    Figures per encoder: ``routes_per_s`` (one thread, back to back: calls / total time),
    ``p50_us`` / ``p99_us`` of single calls, ``encode_p50_us`` (the encoder alone) and the
    queries' mean token count. The MiniLM encoder runs with its cache off (and fewer calls).
    """
    out: dict[str, Any] = {}
    for name in encoders:
        if name == "static":
            from .text.static import StaticEncoder

            enc = StaticEncoder(progress=progress)
            calls = n
        elif name == "minilm":
            from .text.onnx import OnnxEncoder

            enc = OnnxEncoder(cache_size=0)
            calls = max(20, n // 20)
        else:
            raise ValueError(f"unknown encoder {name!r}; choose from static, minilm")
        tr = _text_router(enc, k, seed)
        queries = [_QUERY_TEMPLATES[i % 3].format(1000 + i) for i in range(calls)]
        for q in queries[:5]:
            tr.route(q)  # warm-up
        t0 = time.perf_counter_ns()
        lat = _times_us(lambda i: tr.route(queries[i]), calls)
        total_s = (time.perf_counter_ns() - t0) / 1e9
        enc_us = _times_us(lambda i: enc.encode([queries[i]]), min(calls, 500))
        out[name] = {
            "routes_per_s": calls / total_s, "p50_us": float(np.median(lat)),
            "p99_us": float(np.percentile(lat, 99)), "encode_p50_us": float(np.median(enc_us)),
            "calls": calls, "dim": enc.dim,
            "mean_tokens": float(np.mean(enc.count_tokens(queries[:100]))),
        }
    return out


def _main(args: argparse.Namespace) -> int:
    res = run(d=args.dim, k=args.k, batch=args.batch, n=args.n, seed=args.seed,
              peers=args.peers, peers_file=args.peers_file)
    print(f"routing core, d={res['d']} (intercept included), K={res['k']}, "
          f"kernels {res['simd_backend']}, CPU {res['machine']['cpu']}")
    print(f"{'':28}{'mixllm':>12}{'numpy':>12}{'ratio':>8}")
    for key, unit in (("decision_us", "us"), ("update_us", "us"), ("update_mean_us", "us"),
                      ("batch_qps", "/s")):
        a, b = res[key]["mixllm"], res[key]["numpy"]
        ratio = a / b if unit == "/s" else b / a
        print(f"{key:28}{a:12.1f}{b:12.1f}{ratio:7.1f}x")
    f32 = res["decision_float32_us"]
    print(f"{'decision_float32_us':28}{f32['mixllm']:12.1f}{'':12}"
          f"{res['decision_us']['mixllm'] / f32['mixllm']:7.2f}x vs float64 "
          f"(same decisions on {100 * f32['agree']:.1f}% of the batch)")
    if args.cycles > 0:
        st = res["steady"] = run_steady(d=args.dim, k=args.k, batch=args.batch, n=args.n,
                                        seed=args.seed, cycles=args.cycles)
        fresh = res
        print(f"\nfresh (after fit) and steady state (after {st['cycles']} route -> feedback "
              f"cycles, {st['bases']} bases)")
        print(f"{'':28}{'fresh':>12}{'steady':>12}")
        rows = (("decision_us p50", fresh["decision_us"]["mixllm"], st["decision_us"]),
                ("decision_us p99", fresh["decision_p99_us"]["mixllm"], st["decision_p99_us"]),
                ("update_us p50", fresh["update_us"]["mixllm"], st["update_us"]),
                ("update_us mean", fresh["update_mean_us"]["mixllm"], st["update_mean_us"]),
                ("batch_qps", fresh["batch_qps"]["mixllm"], st["batch_qps"]))
        for label, a, b in rows:
            print(f"{label:28}{a:12.1f}{b:12.1f}")
        print(f"{'decision, every bonus exact':28}{'':12}{st['decision_exact_bonus_us']:12.1f}")
        print(f"{'update_us max':28}{'':12}{st['update_max_us']:12.1f}")
        print(f"same decision as exact LinUCB on {100 * st['agree_exact_linucb']:.2f}% of "
              f"{args.batch} replayed queries")
    if args.peers:
        _print_peers(res)
    encoders = tuple(e for e in args.encoders if e != "none")
    if encoders:
        res["text_to_decision"] = run_text(encoders, k=args.k, n=args.n, seed=args.seed)
        print(f"\ntext to decision (TextRouter.route, ~50-token queries, K={args.k}, one thread)")
        print(f"{'encoder':10}{'routes/s':>10}{'p50 us':>10}{'p99 us':>10}{'encode us':>11}"
              f"{'dim':>6}{'tokens':>8}")
        for name, r in res["text_to_decision"].items():
            print(f"{name:10}{r['routes_per_s']:10.0f}{r['p50_us']:10.0f}{r['p99_us']:10.0f}"
                  f"{r['encode_p50_us']:11.0f}{r['dim']:6d}{r['mean_tokens']:8.1f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2)
    return 0


def _print_peers(res: dict[str, Any]) -> None:
    if res["peers_file"] is None:
        print(f"\npeer libraries: adapters not found ({PEERS_FILE} of a source checkout; "
              f"--peers-file PATH)")
        return
    print("\npeer libraries (same data and queries; not the same algorithm: see "
          f"{res['peers_file']})")
    print(f"{'':20}{'decision us':>12}{'update us':>12}{'batch /s':>12}{'agree':>8}  setup")
    for name, meta in res["peers"].items():
        qps = res["batch_qps"].get(name)
        print(f"{name:20}{res['decision_us'][name]:12.1f}{res['update_us'][name]:12.1f}"
              f"{'-' if qps is None else f'{qps:.0f}':>12}{100 * meta['agree_with_mixllm']:7.1f}%"
              f"  {meta['version']}: {meta['setup']}")
    for name in res["peers_not_installed"]:
        print(f"{name:20}not installed (pip install \".[bench]\")")


def register(subparsers: Any, **kwargs: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the ``mixllm`` command line's subparsers (``kwargs``: the parser's
    own, e.g. its help formatter)."""
    what = "time routing decisions, updates and batches (mixllm and a NumPy reference, one run)"
    p = subparsers.add_parser("bench", help=what, description=what, **kwargs)
    p.add_argument("--json", metavar="OUT", help="also write the figures to this JSON file")
    p.add_argument("--dim", type=int, default=385, help="features including the intercept")
    p.add_argument("--k", type=int, default=11, help="number of LLMs")
    p.add_argument("--batch", type=int, default=256, help="queries per batch call")
    p.add_argument("--n", type=int, default=2000, help="single calls timed per figure")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    p.add_argument("--cycles", type=int, default=20000,
                   help="route -> feedback cycles before the steady-state figures (0: skip)")
    p.add_argument("--encoders", nargs="+", choices=("static", "minilm", "none"),
                   default=["static", "minilm"],
                   help="text-to-decision figures for these encoders ('none': skip)")
    p.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the peer libraries that are installed (Vowpal Wabbit, "
                        "MABWiser, contextualbandits; the 'bench' extra); default: on")
    p.add_argument("--peers-file", metavar="PATH",
                   help=f"the peer adapters (default: {PEERS_FILE} in the current folder or "
                        "in mixllm's source tree)")
    p.set_defaults(func=_main)
    return p
