"""Evaluation harness: fit routers on training data, replay a test stream, compare curves.

Every router is scored on the same test stream against the same reference LLM:

* ``quality_pct`` = 100 * (sum of the routed responses' quality) / (sum of the reference's);
* ``cost_pct`` = 100 * (sum of the routed responses' cost) / (sum of the reference's), using
  the dataset's own cost of each response (computed from the pool's prices and the counted
  tokens only where the data has none);
* a curve is one point per willingness to pay ``lam``; mixing two routers at random reaches any
  point between them, so curves are compared through their upper convex hull made
  non-decreasing in cost (RouterBench, Hu et al. 2024, arXiv 2403.12031);
* ``aiq`` is the area under that hull (quality as a fraction of the reference's), with the
  origin added (route nowhere), divided by the cost range of the single LLMs on this test set,
  and the hull held flat beyond the router's most expensive point;
* ``cost_to_reach[t]`` is the smallest ``cost_pct`` on the hull whose ``quality_pct`` is at
  least ``t`` (``None`` if the router never gets there).

With a latency tolerance ``tau``, queries arrive at 100 per 10 s (the MixLLM paper's setting),
each LLM queues them in its slots (:mod:`mixllm.evaluation.latency`), waiting times refresh every 10 s,
and a query that waits longer than ``tau`` counts as quality 0 (its cost is still paid).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..router import Router
from ..text.encoder import Encoder
from ..text.pipeline import PipelineConfig, TextRouter, domain_labels
from ..types import LLM
from ..waiting import WaitTracker
from .latency import QueueSimulator, arrival_times

__all__ = ["Stream", "hull", "cost_to_reach", "aiq", "default_lams", "evaluate",
           "replay", "paired_bootstrap", "oracle_gap_closed", "REACH_TARGETS", "BASELINES"]

REACH_TARGETS = (90.0, 95.0, 97.25, 100.0)
BASELINES = ("single", "random", "oracle", "task-best", "knn", "mlp", "rf", "logreg")


def default_lams(n: int = 41) -> np.ndarray:
    """Willingness-to-pay sweep, USD per unit of quality: 1e-6 .. 1e0, log-spaced, then inf."""
    return np.concatenate([np.logspace(-6, 0, n - 1), [math.inf]])


# ---------------------------------------------------------------------------- curve metrics
def hull(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Upper-left convex hull of ``(cost, quality)`` points, non-decreasing in cost."""
    pts = sorted({(float(c), float(q)) for c, q in points if math.isfinite(c) and math.isfinite(q)})
    # Only points that improve quality over every cheaper point can be on the frontier.
    frontier: list[tuple[float, float]] = []
    for c, q in pts:
        if frontier and q <= frontier[-1][1]:
            continue
        while frontier and frontier[-1][0] == c:
            frontier.pop()
        frontier.append((c, q))
    out: list[tuple[float, float]] = []
    for p in frontier:  # monotone chain, upper hull
        while len(out) >= 2:
            (c1, q1), (c2, q2) = out[-2], out[-1]
            if (q2 - q1) * (p[0] - c1) <= (p[1] - q1) * (c2 - c1):
                out.pop()
            else:
                break
        out.append(p)
    return out


def _hull_at(h: list[tuple[float, float]], c: float) -> float:
    if not h or c < h[0][0]:
        return math.nan
    for (c1, q1), (c2, q2) in zip(h, h[1:]):
        if c1 <= c <= c2:
            return q1 + (q2 - q1) * (c - c1) / (c2 - c1) if c2 > c1 else max(q1, q2)
    return h[-1][1]


def cost_to_reach(points: Sequence[tuple[float, float]], target: float) -> float | None:
    """Smallest cost on the hull whose quality is >= ``target`` (None if never reached)."""
    h = hull(points)
    for i, (c, q) in enumerate(h):
        if q >= target:
            if i == 0:
                return c
            c0, q0 = h[i - 1]
            return c0 + (c - c0) * (target - q0) / (q - q0)
    return None


def aiq(points: Sequence[tuple[float, float]], c_lo: float, c_hi: float) -> float:
    """Average quality (fraction of the reference) on the hull over costs ``[c_lo, c_hi]``."""
    if not (c_hi > c_lo):
        raise ValueError("aiq needs c_hi > c_lo")
    h = hull([(0.0, 0.0), *points])
    grid = np.linspace(c_lo, c_hi, 2001)
    vals = np.array([_hull_at(h, c) for c in grid])
    vals = np.nan_to_num(vals, nan=0.0) / 100.0
    return float(np.trapezoid(vals, grid) / (c_hi - c_lo))


def _aiq_arrays(cost: np.ndarray, quality: np.ndarray, c_lo: float, c_hi: float) -> float:
    """:func:`aiq` of the points ``(cost[i], quality[i])``, the hull read with ``np.interp``
    (the same trapezoid over the same grid; for the bootstrap's thousands of curves)."""
    h = hull([(0.0, 0.0), *zip(cost.tolist(), quality.tolist())])
    hc, hq = np.array([p[0] for p in h]), np.array([p[1] for p in h])
    grid = np.linspace(c_lo, c_hi, 2001)
    vals = np.interp(grid, hc, hq, left=np.nan, right=hq[-1])
    vals = np.nan_to_num(vals, nan=0.0) / 100.0
    return float(np.trapezoid(vals, grid) / (c_hi - c_lo))


def oracle_gap_closed(router_aiq: float, best_single_aiq: float, oracle_aiq: float) -> float | None:
    """Share of the gap from the best single LLM to the oracle that a router closes:
    ``(AIQ_router - AIQ_best_single) / (AIQ_oracle - AIQ_best_single)`` (``None`` when the
    oracle is no better than the best single LLM)."""
    gap = oracle_aiq - best_single_aiq
    return None if not gap > 0 else float((router_aiq - best_single_aiq) / gap)


def paired_bootstrap(stream: "Stream", runs: dict[str, list[tuple[np.ndarray, np.ndarray | None]]],
                     against: str = "mixllm", n_boot: int = 1000, seed: int = 0
                     ) -> dict[str, dict[str, float]]:
    """Paired bootstrap of each router's AIQ difference to ``against``, resampling test prompts.

    ``runs`` maps a router to its routing of the stream, one ``(choice, dropped)`` pair per
    point of its curve (``dropped`` marks queries that count as quality 0, or ``None``). Each
    of the ``n_boot`` resamples draws the test prompts with replacement, the same draw for
    every router, and recomputes every curve, the cost range of the single LLMs and the AIQs.
    Returns, per router, the difference on the test set itself (``aiq_diff``) and the 2.5% and
    97.5% quantiles of the resampled differences (``ci95_low``, ``ci95_high``).
    """
    if against not in runs:
        raise KeyError(f"no router {against!r} to compare with")
    n, K = stream.quality.shape
    rows = np.arange(n)
    rng = np.random.default_rng(seed)
    W = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (B, n)
    W = np.vstack([np.ones((1, n)), W])  # row 0: the test set itself
    ref = stream.reference
    ref_q = W @ stream.quality[:, ref]
    ref_c = W @ stream.cost[:, ref]
    single_c = (W @ stream.cost) / ref_c[:, None] * 100.0
    c_lo, c_hi = single_c.min(axis=1), single_c.max(axis=1)
    aiqs: dict[str, np.ndarray] = {}
    for name, points in runs.items():
        Qm = np.empty((n, len(points)))
        Cm = np.empty((n, len(points)))
        for j, (choice, dropped) in enumerate(points):
            q = stream.quality[rows, choice]
            Qm[:, j] = q if dropped is None else np.where(dropped, 0.0, q)
            Cm[:, j] = stream.cost[rows, choice]
        qp = (W @ Qm) / ref_q[:, None] * 100.0
        cp = (W @ Cm) / ref_c[:, None] * 100.0
        aiqs[name] = np.array([_aiq_arrays(cp[b], qp[b], c_lo[b], c_hi[b]) if c_hi[b] > c_lo[b]
                               else np.nan for b in range(len(W))])
    out = {}
    base = aiqs[against]
    for name, a in aiqs.items():
        diff = a - base
        boot = diff[1:][np.isfinite(diff[1:])]
        out[name] = {"aiq_diff": float(diff[0]),
                     "ci95_low": float(np.quantile(boot, 0.025)) if boot.size else math.nan,
                     "ci95_high": float(np.quantile(boot, 0.975)) if boot.size else math.nan}
    return out


def summarize(curve: list[dict[str, float]], c_lo: float, c_hi: float) -> dict[str, Any]:
    pts = [(p["cost_pct"], p["quality_pct"]) for p in curve]
    return {"curve": curve, "aiq": aiq(pts, c_lo, c_hi),
            "cost_to_reach": {f"{t:g}": cost_to_reach(pts, t) for t in REACH_TARGETS}}


# ---------------------------------------------------------------------------- the stream
@dataclass
class Stream:
    """A test stream: what the routers see and what the evaluation reveals.

    ``quality``, ``cost`` and ``output_tokens`` are (n, K) in ``models`` order with no NaN in
    ``quality`` and ``cost``; ``input_tokens`` is (n,).
    """

    models: list[str]
    quality: np.ndarray
    cost: np.ndarray
    output_tokens: np.ndarray
    input_tokens: np.ndarray
    task: np.ndarray
    reference: int
    arrivals: np.ndarray | None = None
    pool: list[LLM] = field(default_factory=list)

    def score(self, choice: np.ndarray, dropped: np.ndarray | None = None) -> tuple[float, float]:
        rows = np.arange(len(choice))
        q = self.quality[rows, choice].copy()
        if dropped is not None:
            q[dropped] = 0.0
        c = self.cost[rows, choice]
        ref_q = self.quality[:, self.reference].sum()
        ref_c = self.cost[:, self.reference].sum()
        return 100.0 * q.sum() / ref_q, 100.0 * c.sum() / ref_c

    def queue(self) -> QueueSimulator:
        return QueueSimulator(self.pool, refresh_s=10.0)

    def simulate(self, choice: np.ndarray, tau: float) -> np.ndarray:
        """Which queries of a fixed routing wait longer than ``tau`` in the queues."""
        sim = self.queue()
        dropped = np.zeros(len(choice), dtype=bool)
        for i, k in enumerate(choice):
            wait, _ = sim.submit(self.models[k], float(self.arrivals[i]),
                                 float(self.output_tokens[i, k]))
            dropped[i] = wait > tau
        return dropped


def replay(router: Router, F: np.ndarray, stream: Stream, lam: float, *,
           online: str | None = None, tau: float = math.inf, thumbs_threshold: float = 0.5,
           events: Sequence[tuple[int, Callable[[Router], None]]] = (),
           track_dispatch: bool = True, controller: Any = None) -> dict[str, Any]:
    """Route the stream in order, learning from what is revealed.

    ``online`` is ``None`` (no learning), ``"refined"`` (the routed LLM's quality and length
    are revealed and learned) or ``"thumbs"`` (only whether quality >= ``thumbs_threshold``,
    plus the length). With a finite ``tau`` the router's latency penalty sees each LLM's
    waiting time as the queue simulator last refreshed it. ``events`` are ``(index, fn)``
    pairs run on the router before query ``index`` (e.g. adding an LLM mid-stream); the
    router is mutated, so pass a clone. With a ``controller``
    (:class:`mixllm.evaluation.budget.SpendController`) the ``lam`` of each query is the controller's, and
    the real cost of each routed response is fed back to it; ``lam`` is then ignored.
    """
    n = len(F)
    names = stream.models
    choice = np.zeros(n, dtype=np.int64)
    dropped = np.zeros(n, dtype=bool)
    timed = math.isfinite(tau)
    sim = stream.queue() if timed else None
    tracker = WaitTracker(stream.pool) if timed else None
    pending = sorted(events, key=lambda e: e[0])
    ev = 0
    for i in range(n):
        while ev < len(pending) and pending[ev][0] <= i:
            pending[ev][1](router)
            ev += 1
        if sim is not None:
            now = float(stream.arrivals[i])
            measured = sim.estimates(now)
            if sim.last_refresh == now or not track_dispatch:
                tracker.refresh(now, measured)
            for name in router.names:
                router.set_waiting_time(name, tracker.estimate(name, now))
        lam_i = controller.lam if controller is not None else lam
        d = router.route(F[i], float(stream.input_tokens[i]), lam=lam_i)
        k = names.index(d.llm)
        choice[i] = k
        if controller is not None:
            controller.observe(float(stream.cost[i, k]))
        if sim is not None:
            tracker.dispatched(d.llm, float(d.output_tokens[d.index]))
            wait, _ = sim.submit(d.llm, float(stream.arrivals[i]), float(stream.output_tokens[i, k]))
            dropped[i] = wait > tau
        if online is not None:
            q = 0.0 if dropped[i] else float(stream.quality[i, k])
            tok = float(stream.output_tokens[i, k])
            if online == "refined":
                router.feedback(F[i], d.llm, q, tok)
            elif online == "thumbs":
                router.feedback_thumbs(F[i], d.llm, bool(q >= thumbs_threshold), tok)
            else:
                raise ValueError(f"online must be None, 'refined' or 'thumbs', got {online!r}")
    return {"choice": choice, "dropped": dropped}


# ---------------------------------------------------------------------------- baselines
def _task_means(values: np.ndarray, task: np.ndarray, target_task: np.ndarray) -> np.ndarray:
    """Per-task column means of ``values`` (NaN-aware), looked up for ``target_task``."""
    overall = np.nanmean(values, axis=0)
    out = np.tile(overall, (len(target_task), 1))
    for t in set(target_task.tolist()):
        rows = task == t
        if rows.any():
            with np.errstate(all="ignore"):
                m = np.nanmean(values[rows], axis=0)
            out[target_task == t] = np.where(np.isnan(m), overall, m)
    return out


def _onehot(task: np.ndarray, names: list[str]) -> np.ndarray:
    return np.stack([task == t for t in names], axis=1).astype(np.float64) if names else \
        np.zeros((len(task), 0))


def _filled(values: np.ndarray, task: np.ndarray) -> np.ndarray:
    """NaN entries replaced by the column's per-task mean (regressors need full targets)."""
    return np.where(np.isnan(values), _task_means(values, task, task), values)


def _predictive(name: str, Etr, Ete, train, stream, prices, seed):
    """Quality and cost predictions of RouterBench-style predictive routers.

    Their optimisers' convergence warnings are silenced: the baselines are run with fixed,
    documented budgets, and a warning per fold would bury the report.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _predictive_fit(name, Etr, Ete, train, stream, prices, seed)


def _predictive_fit(name, Etr, Ete, train, stream, prices, seed):
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.neural_network import MLPRegressor

    tasks = sorted(set(train["task"].tolist()))
    Xtr = np.hstack([Etr, _onehot(train["task"], tasks)])
    Xte = np.hstack([Ete, _onehot(stream.task, tasks)])
    Q = train["quality"]
    L = np.log1p(train["output_tokens"])
    if name == "logreg":
        # The bar's baseline: a logistic regression per LLM, cost as the per-task mean.
        qhat = np.zeros((len(Xte), Q.shape[1]))
        for k in range(Q.shape[1]):
            seen = ~np.isnan(Q[:, k])
            y = Q[seen, k] >= 0.5
            if y.all() or not y.any():
                qhat[:, k] = float(y.mean())
                continue
            m = LogisticRegression(C=1.0, max_iter=2000).fit(Xtr[seen], y)
            qhat[:, k] = m.predict_proba(Xte)[:, 1]
        chat = _task_means(train["cost"], train["task"], stream.task)
        return qhat, chat
    if name == "knn":
        model = KNeighborsRegressor(n_neighbors=20, weights="distance")
    elif name == "mlp":
        model = MLPRegressor(hidden_layer_sizes=(128,), alpha=1e-2, max_iter=400,
                             early_stopping=True, random_state=seed)
    elif name == "rf":
        model = RandomForestRegressor(n_estimators=200, min_samples_leaf=5, max_features=0.3,
                                      n_jobs=1, random_state=seed)
    else:
        raise ValueError(f"unknown predictive baseline {name!r}")
    Y = np.hstack([_filled(Q, train["task"]), _filled(L, train["task"])])
    pred = model.fit(Xtr, Y).predict(Xte)
    K = Q.shape[1]
    qhat = pred[:, :K]
    out_tok = np.expm1(np.clip(pred[:, K:], 0.0, 20.0))
    chat = (stream.input_tokens[:, None] * prices[0] + out_tok * prices[1]) * 1e-6
    return qhat, chat


def _choose(qhat: np.ndarray, chat: np.ndarray, lam: float) -> np.ndarray:
    score = qhat if math.isinf(lam) else qhat - chat / lam
    best = score.max(axis=1, keepdims=True)
    # among (near-)ties, the cheaper LLM
    tie = score >= best - 1e-12
    return np.where(tie, chat, np.inf).argmin(axis=1)


# ---------------------------------------------------------------------------- evaluate
def evaluate(train: Any, test: Any, reference: str, *, pool: Sequence[LLM] | None = None,
             config: PipelineConfig | None = None, encoder: Encoder | None = None,
             lams: np.ndarray | None = None, online: str | None = None,
             tau: float = math.inf, baselines: Sequence[str] = BASELINES, seed: int = 0,
             progress: bool = False, embeddings: tuple[np.ndarray, np.ndarray] | None = None,
             track_dispatch: bool = True, n_boot: int = 1000) -> dict[str, Any]:
    """Fit mixllm and the baselines on ``train``, replay ``test``, return the JSON report.

    Parameters
    ----------
    train, test : mixllm.data.RoutingData
        With the same models (in any order); ``test`` rows missing any model's quality are
        left out of the stream (they cannot be scored for every router).
    reference : str
        The LLM that defines 100% quality and 100% cost.
    pool : sequence of LLM, optional
        Prices and latency profiles; default the data's own pool.
    config : PipelineConfig, optional
        mixllm's settings (view, tag transform, router).
    lams : array, optional
        The willingness-to-pay sweep (:func:`default_lams`).
    online : {None, "refined", "thumbs"}
        Continual learning of mixllm over the test stream.
    tau : float
        Latency tolerance in seconds (inf = no time constraint).
    baselines : sequence of str
        Any of :data:`BASELINES`.
    embeddings : (E_train, E_test), optional
        Precomputed embeddings of the configured view (skips the encoder).
    track_dispatch : bool
        With ``tau``: mixllm adds its own dispatches to the refreshed waiting times
        (see :func:`replay`); ``False`` trusts the last refresh alone.
    n_boot : int
        Resamples of the paired bootstrap of each router's AIQ difference to mixllm
        (:func:`paired_bootstrap`; 0 skips it). Every router also gets its
        ``oracle_gap_closed`` (:func:`oracle_gap_closed`, against the best single LLM on the
        test set).
    """
    config = config or PipelineConfig()
    lams = default_lams() if lams is None else np.asarray(lams, dtype=np.float64)
    for b in baselines:
        if b not in BASELINES:
            raise ValueError(f"unknown baseline {b!r}; choose from {BASELINES}")
    models = list(train.models)
    if sorted(models) != sorted(test.models):
        raise ValueError(f"train and test have different models: {models} vs {test.models}")
    if reference not in models:
        raise KeyError(f"reference model {reference!r} is not in the data: {models}")
    pool = list(pool) if pool is not None else list(train.pool)
    by_name = {m.name: m for m in pool}
    missing = [m for m in models if m not in by_name]
    if missing:
        raise ValueError(f"the pool has no prices for: {missing}")
    pool = [by_name[m] for m in models]
    test = test.select_models(models)
    # Data that records costs but no response lengths: the lengths that reproduce the costs
    # under the pool's prices are what the length predictors learn.
    if np.isnan(train.output_tokens).all():
        train = train.lengths_from_costs(pool)
    if np.isnan(test.output_tokens).all():
        test = test.lengths_from_costs(pool)
    _out_tokens(train), _out_tokens(test)  # neither lengths nor costs: say so now
    train_costs = train.fill_costs(pool).cost_usd if np.isnan(train.cost_usd).any() \
        else train.cost_usd
    test = test.fill_costs(pool) if np.isnan(test.cost_usd).any() else test
    keep = ~np.isnan(test.quality).any(axis=1) & ~np.isnan(test.cost_usd).any(axis=1)
    n_dropped = int((~keep).sum())
    test = test.subset(np.flatnonzero(keep))
    if len(test) == 0:
        raise ValueError("no test prompt has every model's quality and cost")

    te_tok = _tokens(test)
    stream = Stream(models, test.quality, test.cost_usd, _out_tokens(test), te_tok,
                    np.asarray(test.task, dtype=str), models.index(reference),
                    arrival_times(len(test), 100, 10.0, seed=seed), pool)
    trd = {"quality": train.quality, "cost": train_costs, "output_tokens": _out_tokens(train),
           "task": np.asarray(train.task, dtype=str)}
    prices = (np.array([m.input_price for m in pool]), np.array([m.output_price for m in pool]))

    tr = TextRouter(pool, config, encoder)
    if embeddings is None:
        E_train = tr.embed(train.prompts, progress=progress)
        E_test = tr.embed(test.prompts, progress=progress)
    else:
        E_train, E_test = embeddings
        E_test = E_test[np.flatnonzero(keep)]
    tr.fit(E_train, train.quality, trd["output_tokens"], domain_labels(train.task, train.tags))
    F_test = tr.features(E_test)

    single = [stream.score(np.full(len(test), k)) for k in range(len(models))]
    c_lo = min(c for _, c in single)
    c_hi = max(c for _, c in single)
    timed = math.isfinite(tau)
    runs: dict[str, list[tuple[np.ndarray, np.ndarray | None]]] = {}

    def curve_of(name: str, points: Sequence[tuple[float, np.ndarray, np.ndarray | None]]
                 ) -> dict[str, Any]:
        """Summary of a router's routings, one per lam (``dropped`` None: simulated when
        timed); the routings are kept for the bootstrap."""
        curve, kept = [], []
        for lam, choice, dropped in points:
            if dropped is None and timed:
                dropped = stream.simulate(choice, tau)
            q, c = stream.score(choice, dropped)
            curve.append({"lam": _jlam(lam), "quality_pct": q, "cost_pct": c})
            kept.append((np.asarray(choice), dropped))
        runs[name] = kept
        return summarize(curve, c_lo, c_hi)

    routers: dict[str, Any] = {}
    points = []
    it = _progress(lams, progress, "replaying mixllm")
    for lam in it:
        if online is None and not timed:
            points.append((lam, tr.router.route_batch(F_test, te_tok, lam=lam), None))
        else:
            res = replay(tr.router.clone(), F_test, stream, lam, online=online, tau=tau,
                         track_dispatch=track_dispatch)
            points.append((lam, res["choice"], res["dropped"] if timed else None))
    routers["mixllm"] = curve_of("mixllm", points)

    # The single LLMs and the oracle are scored for the oracle gap (the oracle's queue
    # simulation, with a finite tau, only when it is asked for).
    single_aiq = {m: curve_of(m, [(math.inf, np.full(len(test), k), None)])
                  for k, m in enumerate(models)}
    oracle = None
    if "oracle" in baselines or not timed:
        oracle = curve_of("oracle", [(lam, _choose(stream.quality, stream.cost, lam), None)
                                     for lam in lams])
    if "single" in baselines:
        routers.update(single_aiq)
    if "random" in baselines:
        rng = np.random.default_rng(seed)
        routers["random"] = curve_of("random", [
            (math.inf, rng.integers(0, len(models), len(test)), None)])
    if "oracle" in baselines:
        routers["oracle"] = oracle
    if "task-best" in baselines:
        qhat = _task_means(trd["quality"], trd["task"], stream.task)
        chat = _task_means(trd["cost"], trd["task"], stream.task)
        routers["task-best"] = curve_of("task-best", [(lam, _choose(qhat, chat, lam), None)
                                                      for lam in lams])
    learned = [b for b in ("knn", "mlp", "rf", "logreg") if b in baselines]
    bar = _progress(learned, progress, "fitting baselines", unit="baseline")
    for name in bar:
        if progress:
            bar.set_postfix_str(name)
        qhat, chat = _predictive(name, E_train, E_test, trd, stream, prices, seed)
        routers[name] = curve_of(name, [(lam, _choose(qhat, chat, lam), None) for lam in lams])
    best_single = max(single_aiq, key=lambda m: single_aiq[m]["aiq"])
    for r in routers.values():
        r["oracle_gap_closed"] = None if oracle is None else oracle_gap_closed(
            r["aiq"], single_aiq[best_single]["aiq"], oracle["aiq"])
    if n_boot > 0:
        boot = paired_bootstrap(stream, {k: v for k, v in runs.items() if k in routers},
                                n_boot=n_boot, seed=seed)
        for name, b in boot.items():
            routers[name]["vs_mixllm"] = b
    return {
        "reference": reference,
        "n_train": len(train), "n_test": len(test),
        # test prompts left out of the stream: some LLM's quality or cost is missing
        "n_test_dropped": n_dropped,
        "tau": _jlam(tau), "online": online, "config": config.to_json(),
        "chosen": tr.selection,
        "best_single": best_single, "oracle_aiq": None if oracle is None else oracle["aiq"],
        "bootstrap": {"resamples": n_boot, "resampled": "test prompts, paired across routers",
                      "interval": "2.5% and 97.5% quantiles of AIQ(router) - AIQ(mixllm)"},
        "routers": routers,
    }


def _tokens(data: Any) -> np.ndarray:
    tok = data.prompt_tokens
    if np.isnan(tok).any():
        raise ValueError("prompt token counts are missing for some prompts")
    return tok


def _out_tokens(data: Any) -> np.ndarray:
    out = data.output_tokens
    if np.isnan(out).all():
        raise ValueError("the data has neither output token counts nor costs (one of them is "
                         "needed to learn what a response costs)")
    return out


def _jlam(lam: float) -> float | str:
    return "inf" if math.isinf(lam) else float(lam)


def _progress(items, on: bool, desc: str, unit: str = "lam"):
    if not on:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit)
