"""The five experiments of docs/RESULTS.md, reproducible with ``mixllm experiment NAME``.

All run on a folder of routing data (RouterBench's wide CSVs by default) with seeded,
task-stratified k-fold cross-validation, so every figure is a mean over folds with its spread
(single 20% splits of 2.5k prompts move the cost figures by +-10 points). Embeddings are
computed once per prompt view and cached on disk.

``main``       mixllm against every baseline, without and with a latency tolerance.
``continual``  offline-only vs online refined vs online thumbs feedback, by offline:online ratio.
``tags``       the feature-map ablation: tags, embedding, neighbour means, their choice in fit.
``newllm``     two LLMs missing from training, added halfway through the test stream.
``unseen``     one task left out of training and tested on (with and without online learning).
``budget``     a spend target held online by adapting ``lam`` (SpendController).
``signal``     how predictable each LLM's quality is from the query embedding, per task
               (cross-validated ROC AUC of a logistic regression; 0.5 = no signal).
``ope``        off-policy evaluation checked where the truth is known: logs of an exploring
               router replayed on held-out rows (every LLM's answer is in the data), candidate
               policies estimated from them, interval coverage and error by log size.
``drift``      one LLM's quality drops (or rises) halfway through a replayed stream: how many
               queries until its traffic share settles, with and without forgetting.
``repeats``    a quarter of the prompts asked twice (the copy answered as the first time), so
               that test prompts repeat training prompts as in production: mixllm with and
               without the repeat block of its neighbour features, against the baselines.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..text.encoder import Encoder
from ..text.pipeline import PipelineConfig, TextRouter, domain_labels, prompt_view
from .evaluate import (BASELINES, REACH_TARGETS, Stream, _hull_at, default_lams, evaluate,
                       hull, replay, summarize)
from .latency import arrival_times

__all__ = ["EXPERIMENTS", "run_experiment", "quality_at"]

EXPERIMENTS = ("main", "continual", "tags", "newllm", "unseen", "signal", "budget", "ope",
               "drift", "repeats")
#: Share of the prompts asked a second time in the ``repeats`` experiment.
REPEAT_SHARE = 0.25
COST_BANDS = (5.0, 10.0, 25.0, 50.0)


def quality_at(curve: list[dict[str, float]], cost_pct: float) -> float | None:
    """Quality % on a curve's hull at a cost budget (None below its cheapest point)."""
    h = hull([(p["cost_pct"], p["quality_pct"]) for p in curve])
    v = _hull_at(h, cost_pct)
    return None if math.isnan(v) else float(v)


class _Context:
    """Data, embeddings (per view, cached), folds and the pool shared by the experiments."""

    def __init__(self, data: Any, reference: str, encoder: Encoder | None, folds: int, seed: int,
                 progress: bool, pool: Any = None) -> None:
        self.data = data
        self.reference = reference
        self.encoder = encoder
        self.folds = list(data.kfold_indices(folds, seed))
        self.seed = seed
        self.progress = progress
        self._emb: dict[str, np.ndarray] = {}
        self.pool = data.match_pool(pool)

    def embeddings(self, view: str) -> np.ndarray:
        if view not in self._emb:
            texts = [prompt_view(p, view) for p in self.data.prompts]
            self._emb[view] = self.encoder.encode(texts, progress=self.progress)
        return self._emb[view]


def _aggregate(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread of a router's fold summaries."""
    out: dict[str, Any] = {"aiq_mean": float(np.mean([f["aiq"] for f in per_fold])),
                           "aiq_std": float(np.std([f["aiq"] for f in per_fold]))}
    for t in (f"{t:g}" for t in REACH_TARGETS):
        vals = [f["cost_to_reach"][t] for f in per_fold]
        got = [v for v in vals if v is not None]
        out[f"reach_{t}"] = {"mean": float(np.mean(got)) if len(got) == len(vals) else None,
                             "folds_reached": len(got), "per_fold": vals}
    for b in COST_BANDS:
        vals = [quality_at(f["curve"], b) for f in per_fold]
        got = [v for v in vals if v is not None]
        out[f"quality_at_{b:g}"] = float(np.mean(got)) if len(got) == len(vals) else None
    return out


def _cv_eval(ctx: _Context, config: PipelineConfig, **kw: Any) -> dict[str, Any]:
    E = ctx.embeddings(config.view)
    per: dict[str, list] = {}
    for tr, te in ctx.folds:
        rep = evaluate(ctx.data.subset(tr), ctx.data.subset(te), ctx.reference, pool=ctx.pool,
                       config=config, embeddings=(E[tr], E[te]), seed=ctx.seed, n_boot=0,
                       **kw)
        for name, r in rep["routers"].items():
            per.setdefault(name, []).append(r)
    return {name: _aggregate(v) for name, v in per.items()}


def _main(ctx: _Context, config: PipelineConfig, tau: float) -> dict[str, Any]:
    out = {"no_time_constraint": _cv_eval(ctx, config)}
    timed = replace(config, beta=config.beta or 1.0, tau=tau)
    out[f"tau={tau:g}s"] = _cv_eval(ctx, timed, tau=tau)
    out[f"tau={tau:g}s, mixllm variants"] = {
        "mixllm, waits refreshed every 10 s only": _cv_eval(
            ctx, timed, tau=tau, baselines=(), track_dispatch=False)["mixllm"],
        "mixllm, latency-blind (beta=0)": _cv_eval(
            ctx, replace(config, beta=0.0), tau=tau, baselines=())["mixllm"]}
    return out


def _tags(ctx: _Context, config: PipelineConfig) -> dict[str, Any]:
    """What each component of the feature map buys: every map with its ridge chosen in fit,
    the automatic choice, and the previous default (tags, ridge 10)."""
    out = {"auto (map and ridge chosen in fit)": _cv_eval(ctx, config, baselines=())["mixllm"],
           "tags, ridge 10 (the default before)": _cv_eval(
               ctx, replace(config, features="tags", ridge=10.0), baselines=())["mixllm"]}
    for kind in ("tags", "embedding", "neighbours", "tags+neighbours"):
        out[f"{kind}, ridge chosen in fit"] = _cv_eval(
            ctx, replace(config, features=kind), baselines=())["mixllm"]
    return out


def _stream(ctx: _Context, rows: np.ndarray) -> tuple[Stream, Any]:
    d = ctx.data.subset(rows)
    keep = ~np.isnan(d.quality).any(axis=1)
    d = d.subset(np.flatnonzero(keep))
    models = list(d.models)
    return Stream(models, d.quality, d.cost_usd, d.output_tokens, d.prompt_tokens,
                  np.asarray(d.task, dtype=str), models.index(ctx.reference),
                  arrival_times(len(d), 100, 10.0, seed=ctx.seed), ctx.pool), \
        rows[np.flatnonzero(keep)]


def _fit(ctx: _Context, config: PipelineConfig, rows: np.ndarray, pool=None) -> TextRouter:
    d = ctx.data.subset(rows)
    pool = pool or ctx.pool
    cols = [d.models.index(m.name) for m in pool]
    tr = TextRouter(pool, config, ctx.encoder)
    tr.fit(ctx.embeddings(config.view)[rows], d.quality[:, cols], d.output_tokens[:, cols],
           domain_labels(d.task, d.tags))
    return tr


def _curve(stream: Stream, lams, choices) -> list[dict[str, float]]:
    return [{"lam": "inf" if math.isinf(l) else float(l),
             "quality_pct": stream.score(c)[0], "cost_pct": stream.score(c)[1]}
            for l, c in zip(lams, choices)]


def _band_summary(curves: list[list[dict]], c_lo: list[float], c_hi: list[float]):
    return _aggregate([summarize(c, lo, hi) for c, lo, hi in zip(curves, c_lo, c_hi)])


def _ranges(stream: Stream) -> tuple[float, float]:
    costs = [stream.score(np.full(len(stream.task), k))[1] for k in range(len(stream.models))]
    return min(costs), max(costs)


def _continual(ctx: _Context, config: PipelineConfig, ratios: Sequence[float],
               alpha: float) -> dict[str, Any]:
    """Train offline on part of each training fold, learn online on the rest, test after."""
    lams = default_lams(21)
    E = None
    out: dict[str, Any] = {}
    rng = np.random.default_rng(ctx.seed)
    for ratio in ratios:
        res: dict[str, dict[str, list]] = {}
        for tr_rows, te_rows in ctx.folds:
            perm = rng.permutation(tr_rows)
            n_on = int(round(ratio * len(perm)))
            off, on = np.sort(perm[n_on:]), perm[:n_on]
            test, _ = _stream(ctx, te_rows)
            E = ctx.embeddings(config.view)
            lo, hi = _ranges(test)
            on_stream, on_rows = _stream(ctx, on)
            cfg = replace(config, alpha=alpha)
            base = _fit(ctx, cfg, off)
            F_on = base.features(E[on_rows])
            F_te = base.features(E[te_rows][~np.isnan(ctx.data.subset(te_rows).quality).any(1)])
            full = _fit(ctx, cfg, np.sort(tr_rows))  # every training row, full information
            variants = {"offline only": [], "online refined": [], "online thumbs": [],
                        "offline on all training rows": []}
            for lam in lams:
                variants["offline only"].append(base.router.route_batch(F_te, test.input_tokens, lam))
                for mode in ("refined", "thumbs"):
                    r = base.router.clone()
                    replay(r, F_on, on_stream, lam, online=mode)
                    variants[f"online {mode}"].append(r.route_batch(F_te, test.input_tokens, lam))
                F_full = full.features(E[te_rows][~np.isnan(ctx.data.subset(te_rows).quality).any(1)])
                variants["offline on all training rows"].append(
                    full.router.route_batch(F_full, test.input_tokens, lam))
            for name, choices in variants.items():
                res.setdefault(name, {"curves": [], "lo": [], "hi": []})
                res[name]["curves"].append(_curve(test, lams, choices))
                res[name]["lo"].append(lo)
                res[name]["hi"].append(hi)
        out[f"online {ratio:.0%} of training"] = {
            name: _band_summary(v["curves"], v["lo"], v["hi"]) for name, v in res.items()}
    return out


def _newllm(ctx: _Context, config: PipelineConfig, new: Sequence[str], alpha: float
            ) -> dict[str, Any]:
    """Train without ``new``; add them halfway through the test stream (cold start)."""
    lams = default_lams(21)
    res: dict[str, dict[str, list]] = {}
    for tr_rows, te_rows in ctx.folds:
        test, kept = _stream(ctx, te_rows)
        E = ctx.embeddings(config.view)
        lo, hi = _ranges(test)
        cfg = replace(config, alpha=alpha)
        without = [m for m in ctx.pool if m.name not in new]
        added = [m for m in ctx.pool if m.name in new]
        r_without = _fit(ctx, cfg, np.sort(tr_rows), pool=without)
        r_all = _fit(ctx, cfg, np.sort(tr_rows))
        F_wo = r_without.features(E[kept])
        F_all = r_all.features(E[kept])
        half = len(kept) // 2
        variants = {"never added": [], "added halfway (online)": [],
                    "in the pool from the start (online)": []}
        for lam in lams:
            variants["never added"].append(
                replay(r_without.router.clone(), F_wo, test, lam, online="refined")["choice"])
            events = [(half, lambda r, m=m: r.add_llm(m)) for m in added]
            variants["added halfway (online)"].append(
                replay(r_without.router.clone(), F_wo, test, lam, online="refined",
                       events=events)["choice"])
            variants["in the pool from the start (online)"].append(
                replay(r_all.router.clone(), F_all, test, lam, online="refined")["choice"])
        for name, choices in variants.items():
            res.setdefault(name, {"curves": [], "lo": [], "hi": [], "share": []})
            res[name]["curves"].append(_curve(test, lams, choices))
            res[name]["lo"].append(lo)
            res[name]["hi"].append(hi)
            idx = [test.models.index(m) for m in new]
            res[name]["share"].append(float(np.mean([np.isin(c[half:], idx).mean()
                                                     for c in choices])))
    return {name: {**_band_summary(v["curves"], v["lo"], v["hi"]),
                   "share_of_second_half_to_new_llms": float(np.mean(v["share"]))}
            for name, v in res.items()}


def _unseen(ctx: _Context, config: PipelineConfig, alpha: float) -> dict[str, Any]:
    """Leave each task out of training; compare with the same test rows trained in-domain."""
    tasks = sorted(set(ctx.data.task.tolist()))
    lams = default_lams(21)
    E = ctx.embeddings(config.view)
    out: dict[str, Any] = {}
    cfg = replace(config, alpha=alpha)
    for task in tasks:
        res: dict[str, dict[str, list]] = {}
        for tr_rows, te_rows in ctx.folds:
            te_task = te_rows[ctx.data.task[te_rows] == task]
            tr_in = tr_rows
            tr_out = tr_rows[ctx.data.task[tr_rows] != task]
            test, kept = _stream(ctx, te_task)
            lo, hi = _ranges(test)
            r_in, r_out = _fit(ctx, cfg, tr_in), _fit(ctx, cfg, tr_out)
            F_in, F_out = r_in.features(E[kept]), r_out.features(E[kept])
            variants = {"trained with the task": [], "task unseen": [],
                        "task unseen + online refined": []}
            for lam in lams:
                variants["trained with the task"].append(
                    r_in.router.route_batch(F_in, test.input_tokens, lam))
                variants["task unseen"].append(
                    r_out.router.route_batch(F_out, test.input_tokens, lam))
                variants["task unseen + online refined"].append(
                    replay(r_out.router.clone(), F_out, test, lam, online="refined")["choice"])
            for name, choices in variants.items():
                res.setdefault(name, {"curves": [], "lo": [], "hi": []})
                res[name]["curves"].append(_curve(test, lams, choices))
                res[name]["lo"].append(lo)
                res[name]["hi"].append(hi)
        out[task] = {name: _band_summary(v["curves"], v["lo"], v["hi"]) for name, v in res.items()}
    return out


def _signal(ctx: _Context, config: PipelineConfig) -> dict[str, Any]:
    """Cross-validated AUC of per-LLM correctness from the embedding, within each task."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    E = ctx.embeddings(config.view)
    out: dict[str, Any] = {}
    for task in sorted(set(ctx.data.task.tolist())):
        rows = np.flatnonzero(ctx.data.task == task)
        per: dict[str, Any] = {}
        for k, model in enumerate(ctx.data.models):
            y = ctx.data.quality[rows, k]
            seen = ~np.isnan(y)
            yb = y[seen] >= 0.5
            if yb.all() or not yb.any() or min(yb.sum(), (~yb).sum()) < 5:
                per[model] = None
                continue
            cv = StratifiedKFold(5, shuffle=True, random_state=ctx.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                p = cross_val_predict(LogisticRegression(C=1.0, max_iter=2000), E[rows][seen],
                                      yb, cv=cv, method="predict_proba")[:, 1]
            per[model] = {"auc": float(roc_auc_score(yb, p)), "rate": float(yb.mean())}
        out[task] = per
    return out


def _budget(ctx: _Context, config: PipelineConfig,
            targets: Sequence[float] = (10.0, 25.0, 50.0)) -> dict[str, Any]:
    """Targets as % of the reference's average cost per query, held with online feedback."""
    from .budget import SpendController

    out: dict[str, Any] = {}
    E = ctx.embeddings(config.view)
    for pct in targets:
        rows = []
        for tr_rows, te_rows in ctx.folds:
            test, kept = _stream(ctx, te_rows)
            r = _fit(ctx, config, np.sort(tr_rows))
            F = r.features(E[kept])
            ref_cost = float(test.cost[:, test.reference].mean())
            # Start from the lam whose routes hit the target on the training rows (costs known
            # there), then let the controller correct drift on the stream.
            train, train_rows = _stream(ctx, np.sort(tr_rows))
            F_train = r.features(E[train_rows])
            grid = default_lams(41)[:-1]
            spent = [train.score(r.router.route_batch(F_train, train.input_tokens, lam))[1]
                     for lam in grid]
            lam0 = float(grid[int(np.argmin(np.abs(np.array(spent) - pct)))])
            ctl = SpendController(pct / 100.0 * ref_cost, lam=lam0, eta=0.02, smoothing=0.02)
            res = replay(r.router.clone(), F, test, math.nan, online="refined", controller=ctl)
            q, c = test.score(res["choice"])
            half = len(kept) // 2
            q2, c2 = Stream(test.models, test.quality[half:], test.cost[half:],
                            test.output_tokens[half:], test.input_tokens[half:],
                            test.task[half:], test.reference).score(res["choice"][half:])
            rows.append({"quality_pct": q, "cost_pct": c, "second_half_cost_pct": c2,
                         "second_half_quality_pct": q2, "final_lam": ctl.lam})
        out[f"target {pct:g}% of the reference's cost"] = {
            k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return out


def _ope_replay(ctx: _Context, config: PipelineConfig, *, lam0: float = 3e-3,
                temperature: float = 0.05, epsilon: float = 0.1,
                sizes: Sequence[int] = (250, 500, 1000, 2000, 4000), replays: int = 50,
                n_boot: int = 1000, level: float = 0.95) -> dict[str, Any]:
    """Logs of an exploring router replayed on each fold's held-out rows, where every LLM's
    answer is known; candidate policies judged from the logs against their true values.

    Replay ``r`` uses fold ``r mod folds``: the logging router is fitted on the fold's training
    rows and routes ``n`` queries drawn with replacement from its held-out rows (the query
    population), with ``lam0`` and the explorer (``temperature``, ``epsilon``); the log records
    the routed LLM's quality and the data's cost. A candidate's truth is its mean quality and
    cost over the whole population (it sees every answer there).
    """
    from ..decision_log import DecisionLog
    from ..exploration import policy_probabilities
    from ..router import Router
    from .ope import RouterPolicy, TermsPolicy, evaluate_log

    E = ctx.embeddings(config.view)
    folds = []
    for tr_rows, te_rows in ctx.folds:
        pop, kept = _stream(ctx, te_rows)
        r = _fit(ctx, config, np.sort(tr_rows))
        F = r.features(E[kept])
        terms = np.stack([r.router.route(F[i], float(pop.input_tokens[i]), lam=lam0).terms
                          for i in range(len(F))])
        # "Another fitted router": the same features, ridge 100 instead of the config's.
        train, train_rows = _stream(ctx, np.sort(tr_rows))
        other = Router(r.router.llms, F.shape[1], ridge=100.0, lam=lam0)
        other.fit(r.features(E[train_rows]),
                  {m: train.quality[:, j] for j, m in enumerate(train.models)},
                  {m: train.output_tokens[:, j] for j, m in enumerate(train.models)})
        cols = [r.router.names.index(m) for m in pop.models]
        terms = terms[:, :, cols]  # the data's model order, as the population's columns
        folds.append({"pop": pop, "F": F, "terms": terms, "other": other})
    candidates = {
        f"lam {lam0 / 3:g} (cheaper)": lambda f: TermsPolicy(lam=lam0 / 3),
        f"lam {lam0 * 3:g} (dearer)": lambda f: TermsPolicy(lam=lam0 * 3),
        "lam inf (quality only)": lambda f: TermsPolicy(lam=math.inf),
        "alpha 1 (bonus on)": lambda f: TermsPolicy(alpha=1.0),
        "another fitted router (ridge 100)": lambda f: RouterPolicy(f["other"]),
    }

    def as_log(f: dict, idx: np.ndarray, chosen: np.ndarray, P: np.ndarray) -> DecisionLog:
        n = len(idx)
        rows = np.arange(n)
        pop = f["pop"]
        return DecisionLog(
            ids=[str(i) for i in rows], llms=list(pop.models), chosen=chosen,
            propensity=P[rows, chosen], terms=f["terms"][idx], lam=np.full(n, lam0),
            alpha=np.full(n, config.alpha), beta=np.zeros(n),
            input_tokens=pop.input_tokens[idx], quality=pop.quality[idx, chosen],
            cost=pop.cost[idx, chosen], output_tokens=pop.output_tokens[idx, chosen],
            x=f["F"][idx], probabilities=P)

    truth: dict[str, list[tuple[float, float]]] = {}
    for f in folds:
        N = len(f["F"])
        everything = np.arange(N)
        full = as_log(f, everything, np.zeros(N, dtype=np.int64),
                      np.full((N, len(f["pop"].models)), 1.0 / len(f["pop"].models)))
        for name, make in candidates.items():
            P = make(f).probabilities(full)
            truth.setdefault(name, []).append(
                (float((P * f["pop"].quality).sum(1).mean()),
                 float((P * f["pop"].cost).sum(1).mean())))
    out: dict[str, Any] = {"settings": {"lam0": lam0, "temperature": temperature,
                                        "epsilon": epsilon, "replays": replays,
                                        "n_boot": n_boot, "level": level,
                                        "sizes": list(sizes)},
                           "candidates": {}}
    rec: dict[str, dict[int, list]] = {name: {n: [] for n in sizes} for name in candidates}
    logged: dict[int, list] = {n: [] for n in sizes}
    for n in sizes:
        for rep in range(replays):
            fi = rep % len(folds)
            f = folds[fi]
            rng = np.random.default_rng([ctx.seed, n, rep])
            idx = rng.integers(0, len(f["F"]), n)
            P = policy_probabilities(f["terms"][idx, 5], temperature, epsilon)
            u = rng.random(n)
            chosen = np.minimum((P.cumsum(axis=1) < u[:, None]).sum(axis=1), P.shape[1] - 1)
            log = as_log(f, idx, chosen, P)
            for name, make in candidates.items():
                res = evaluate_log(log, make(f), n_boot=n_boot, level=level,
                                   seed=int(rng.integers(2**31)))
                rec[name][n].append((fi, res))
            logged[n].append(float(np.mean(log.quality)))
    for name in candidates:
        per_size = {}
        for n in sizes:
            rows = rec[name][n]
            entry: dict[str, Any] = {"ess_median": float(np.median(
                [res["quality"]["ess"] for _, res in rows]))}
            for oi, o in enumerate(("quality", "cost")):
                t = np.array([truth[name][fi][oi] for fi, _ in rows])
                for est in ("ips", "snips", "dr"):
                    e = np.array([res[o][est]["estimate"] for _, res in rows])
                    lo = np.array([res[o][est]["low"] for _, res in rows])
                    hi = np.array([res[o][est]["high"] for _, res in rows])
                    entry[f"{o}/{est}"] = {
                        "coverage": float(np.mean((lo <= t) & (t <= hi))),
                        "rmse": float(np.sqrt(np.mean((e - t) ** 2))),
                        "mean_abs_error": float(np.mean(np.abs(e - t))),
                        "bias": float(np.mean(e - t)),
                        "median_width": float(np.median(hi - lo)),
                    }
            per_size[str(n)] = entry
        out["candidates"][name] = {
            "truth_quality": float(np.mean([t[0] for t in truth[name]])),
            "truth_cost": float(np.mean([t[1] for t in truth[name]])),
            "by_size": per_size}
    out["logging_policy_quality"] = float(np.mean(logged[sizes[-1]]))
    return out


def with_repeats(data: Any, share: float = REPEAT_SHARE, seed: int = 0) -> tuple[Any, np.ndarray]:
    """The data with a seeded ``share`` of its prompts appended once more (same prompt, same
    recorded outcomes; the copy's id gets a ``#repeat`` suffix), and the source row of every
    row of the result."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    n = len(data)
    extra = np.sort(np.random.default_rng(seed).choice(n, max(1, int(share * n)), replace=False))
    rows = np.concatenate([np.arange(n), extra])
    copy = data.subset(extra)
    both = replace(
        data, prompt_ids=np.concatenate([data.prompt_ids, [f"{i}#repeat" for i in copy.prompt_ids]]),
        prompts=list(data.prompts) + list(copy.prompts),
        quality=np.vstack([data.quality, copy.quality]),
        cost_usd=np.vstack([data.cost_usd, copy.cost_usd]),
        input_tokens=np.vstack([data.input_tokens, copy.input_tokens]),
        output_tokens=np.vstack([data.output_tokens, copy.output_tokens]),
        latency_s=np.vstack([data.latency_s, copy.latency_s]),
        task=np.concatenate([data.task, copy.task]), tags=list(data.tags) + list(copy.tags),
        responses=None if data.responses is None
        else np.concatenate([data.responses, copy.responses]))
    return both, rows


def _repeats(ctx: _Context, config: PipelineConfig) -> dict[str, Any]:
    """Folds over the data with repeated prompts: every router, and mixllm without the repeat
    block of its neighbour features (``duplicates=None``)."""
    data, rows = with_repeats(ctx.data, seed=ctx.seed)
    E = ctx.embeddings(config.view)[rows]
    folds = list(data.kfold_indices(len(ctx.folds), ctx.seed))
    per: dict[str, list] = {}
    repeated = []
    for tr, te in folds:
        seen = set(rows[tr].tolist())
        repeated.append(float(np.mean([r in seen for r in rows[te]])))
        for label, cfg, bl in (("", config, BASELINES),
                               (", no repeat block", replace(config, duplicates=None), ())):
            rep = evaluate(data.subset(tr), data.subset(te), ctx.reference, pool=ctx.pool,
                           config=cfg, embeddings=(E[tr], E[te]), seed=ctx.seed, n_boot=0,
                           baselines=bl)
            for name, r in rep["routers"].items():
                per.setdefault(name + (label if name == "mixllm" else ""), []).append(r)
    out = {name: _aggregate(v) for name, v in per.items()}
    return {"share of test prompts that repeat a training prompt":
            {"mean": float(np.mean(repeated)), "per_fold": repeated},
            "routers": out}


def _settle(share: np.ndarray, right: float, tol: float) -> int | None:
    """Queries after the change until the trailing share stays within ``tol`` of ``right``
    (``None``: not by the end of the stream)."""
    off = np.abs(share - right) > tol
    if off[-1]:
        return None
    bad = np.flatnonzero(off)
    return 0 if len(bad) == 0 else int(bad[-1] + 1)


def _drift(ctx: _Context, config: PipelineConfig, alpha: float, *, lam: float = 3e-3,
           length: int = 4000, window: int = 200, tol: float = 0.25,
           discounts: Sequence[float] = (1.0, 0.999, 0.995, 0.99, 0.98),
           epsilon: float = 0.05, engine: str = "native") -> dict[str, Any]:
    """One LLM changes halfway through a replayed stream; routers with and without forgetting.

    Per fold: the router is fitted offline on the training rows; the stream is ``length``
    queries drawn with replacement from the held-out rows, learned online (refined feedback).
    At ``length // 2`` one LLM changes: ``drop``, the LLM with the largest traffic share
    answers from then on as the pool's weakest LLM does (a weaker model behind its name);
    ``rise``, the cheapest LLM answers as the strongest does, at its own price. The right
    level is the target LLM's share under a router refitted offline on the training rows as
    they would be after the change (same queries). Settling: queries after the change until the
    trailing ``window`` share stays within ``tol`` of the gap (before -> right level, the
    offline router's share before the change; at least 0.05) of that level. Lost: correct
    answers and extra USD of the adaptive router against the refitted one over the second
    half. Every variant runs on ``engine`` (the native one by default; ``"reference"``, the
    NumPy specification, gives the same figures to rounding, tests/test_experiments_ope_drift.py).
    """
    from ..exploration import Explorer

    E = ctx.embeddings(config.view)
    cfg = replace(config, alpha=alpha)
    variants = [(g, 0.0) for g in discounts] + [(1.0, epsilon), (min(discounts), epsilon)]
    out: dict[str, Any] = {}
    results: dict[str, dict[str, list[dict]]] = {"drop": {}, "rise": {}}
    for fi, (tr_rows, te_rows) in enumerate(ctx.folds):
        pop, kept = _stream(ctx, te_rows)
        base = _fit(ctx, cfg, np.sort(tr_rows))
        F = base.features(E[kept])
        models = list(pop.models)
        mean_q = np.nanmean(ctx.data.quality[np.sort(tr_rows)], axis=0)
        first = np.array([models.index(base.router.names[k])
                          for k in base.router.route_batch(F, pop.input_tokens, lam=lam)])
        for scenario, per_variant in results.items():
            if scenario == "drop":
                target = int(np.argmax(np.bincount(first, minlength=len(models))))
                source = int(np.argmin(mean_q))
            else:
                target = int(np.argmin(np.nanmean(pop.cost, axis=0)))
                source = int(np.argmax(mean_q))
            # the world after the change, for the stream and for the refitted router
            q_after = pop.quality.copy()
            q_after[:, target] = pop.quality[:, source]
            tok_after = pop.output_tokens.copy()
            cost_after = pop.cost.copy()
            train = ctx.data.subset(np.sort(tr_rows))
            tq = train.quality.copy()
            tq[:, target] = train.quality[:, source]
            refit = TextRouter(ctx.pool, cfg, ctx.encoder)
            refit.fit(E[np.sort(tr_rows)], tq, train.output_tokens,
                      domain_labels(train.task, train.tags))
            F_refit = refit.features(E[kept])
            rng = np.random.default_rng([ctx.seed, fi, 7])
            idx = rng.integers(0, len(F), length)
            half = length // 2
            right_choice = refit.router.route_batch(F_refit[idx[half:]],
                                                    pop.input_tokens[idx[half:]], lam=lam)
            right_names = [refit.router.names[k] for k in right_choice]
            right_idx = np.array([models.index(n) for n in right_names])
            right_share = float(np.mean(right_idx == target))
            before_share = float(np.mean(first == target))  # the offline router's share
            band = max(0.05, tol * abs(before_share - right_share))
            rows2 = idx[half:]
            right_q = q_after[rows2, right_idx]
            right_c = cost_after[rows2, right_idx]
            for gamma, eps in variants:
                if gamma == 1.0 and engine == "native":
                    r = base.router.clone()
                    r.lam = lam
                else:
                    r = _forgetting_copy(base.router, gamma, lam, engine)
                mon = r.monitor_drift(window=50, min_history=200)
                ex = Explorer(epsilon=eps, seed=int(rng.integers(2**31))) if eps else None
                choice = np.empty(length, dtype=np.int64)
                detected = None
                for t, i in enumerate(idx):
                    d = r.route(F[i], float(pop.input_tokens[i]))
                    name = ex.choose(d).llm if ex is not None else d.llm
                    k = models.index(name)
                    choice[t] = k
                    q = q_after[i, k] if t >= half else pop.quality[i, k]
                    r.feedback(F[i], name, float(q), float(tok_after[i, k]))
                    if detected is None and t >= half and k == target:
                        s = mon.stats().get(models[target])
                        if s is not None and s.drifted:
                            detected = t - half
                sec = choice[half:]
                hit = (sec == target).astype(float)
                trailing = np.convolve(hit, np.ones(window) / window, mode="valid")
                settle = _settle(trailing, right_share, band)
                settle_q = None if settle is None else settle + window
                q2 = q_after[rows2, sec]
                c2 = cost_after[rows2, sec]
                upto = len(sec) if settle_q is None else settle_q
                q1 = pop.quality[idx[:half], choice[:half]]
                per_variant.setdefault(_variant_name(gamma, eps), []).append({
                    "target": models[target], "source": models[source],
                    "share_before": float(np.mean(choice[:half] == target)),
                    "right_share": right_share, "band": band,
                    "share_last_quarter": float(np.mean(sec[len(sec) // 2:] == target)),
                    "settle_queries": settle_q,
                    "detected_after": detected,
                    "lost_correct_until_settled": float((right_q[:upto] - q2[:upto]).sum()),
                    "extra_usd_until_settled": float((c2[:upto] - right_c[:upto]).sum()),
                    "lost_correct_second_half": float((right_q - q2).sum()),
                    "extra_usd_second_half": float((c2 - right_c).sum()),
                    "quality_first_half": float(q1.mean()),
                    "quality_second_half": float(q2.mean()),
                    "right_quality_second_half": float(right_q.mean()),
                })
    for scenario, per_variant in results.items():
        out[scenario] = {name: _drift_summary(rows) for name, rows in per_variant.items()}
    out["settings"] = {"lam": lam, "length": length, "window": window, "tol": tol,
                       "alpha": alpha, "epsilon": epsilon, "folds": len(ctx.folds),
                       "engine": engine}
    return out


def _forgetting_copy(router: Any, discount: float, lam: float, engine: str = "native") -> Any:
    """The router's learned state in a router on ``engine`` with forgetting ``discount``,
    rebuilt from each LLM's exact A and b (the discount is fixed at construction; the offline
    fit is not discounted, so the copy starts from the fitted state at scale 1)."""
    from ..router import Router

    r = Router(router.llms, router.dim, alpha=router.alpha, beta=router.beta, tau=router.tau,
               ridge=router.ridge, lam=lam, fit_intercept=router.fit_intercept,
               refactor_every=router.refactor_every, engine=engine, discount=discount)
    src = router._pool.copy()
    pool = r._new_pool()
    for name, llm in zip(src.names(), router.llms):
        a = src.arm(name)
        pool.add_arm_state(name, a["A"], None, a["b"], None, int(a["n_obs"]), 0,
                           llm.input_price, llm.output_price)
    r._pool = pool
    return r


def _variant_name(gamma: float, eps: float) -> str:
    name = "no forgetting" if gamma == 1.0 else f"discount {gamma:g}"
    return name + (f", epsilon {eps:g}" if eps else "")


def _drift_summary(rows: list[dict]) -> dict[str, Any]:
    settles = [r["settle_queries"] for r in rows]
    detect = [r["detected_after"] for r in rows]
    out: dict[str, Any] = {"per_fold": rows,
                           "targets": sorted({f"{r['target']} <- {r['source']}" for r in rows}),
                           "settled_folds": sum(s is not None for s in settles),
                           "settle_median": (float(np.median(settles))
                                             if all(s is not None for s in settles) else None),
                           "detected_folds": sum(d is not None for d in detect),
                           "detected_median": (float(np.median([d for d in detect
                                                                if d is not None]))
                                               if any(d is not None for d in detect) else None)}
    for k in ("share_before", "right_share", "share_last_quarter", "lost_correct_until_settled",
              "extra_usd_until_settled", "lost_correct_second_half", "extra_usd_second_half",
              "quality_first_half", "quality_second_half", "right_quality_second_half"):
        out[k] = float(np.mean([r[k] for r in rows]))
    return out


def run_experiment(name: str, data: Any, reference: str, *, encoder: Encoder | None,
                   config: PipelineConfig | None = None, folds: int = 5, seed: int = 0,
                   tau: float = 2.0, ratios: Sequence[float] = (0.3, 0.5, 0.7),
                   alpha: float = 0.05, new: Sequence[str] = (), progress: bool = False,
                   replays: int = 50, pool: Any = None) -> dict[str, Any]:
    """Run one experiment; returns a JSON-ready dict with its settings and results.

    ``pool`` (LLMs or a pool file) prices the data's models instead of the data's own pool;
    costs the data does not record are then computed from it.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose from {EXPERIMENTS}")
    config = config or PipelineConfig()
    if pool is not None and np.isnan(data.cost_usd).any():
        if np.isnan(data.output_tokens).all():
            raise ValueError("the data records neither costs nor response lengths: "
                             "assume lengths first (assume_output_tokens)")
        data = data.fill_costs(data.match_pool(pool))
    ctx = _Context(data, reference, encoder, folds, seed, progress, pool)
    if name == "main":
        result = _main(ctx, config, tau)
    elif name == "tags":
        result = _tags(ctx, config)
    elif name == "continual":
        result = _continual(ctx, config, ratios, alpha)
    elif name == "newllm":
        if not new:
            raise ValueError("newllm needs the names of the LLMs to add (new=...)")
        unknown = [m for m in new if m not in data.models]
        if unknown:
            raise KeyError(f"LLMs not in the data: {unknown}")
        result = _newllm(ctx, config, new, alpha)
    elif name == "signal":
        result = _signal(ctx, config)
    elif name == "budget":
        result = _budget(ctx, config)
    elif name == "ope":
        result = _ope_replay(ctx, config, replays=replays)
    elif name == "drift":
        result = _drift(ctx, config, alpha)
    elif name == "repeats":
        result = _repeats(ctx, config)
    else:
        result = _unseen(ctx, config, alpha)
    return {"experiment": name, "reference": reference, "folds": folds, "seed": seed,
            "n_prompts": len(data), "config": config.to_json(), "tau": tau,
            "ratios": list(ratios), "alpha": alpha, "new": list(new), "results": result}


def to_markdown(result: dict[str, Any]) -> str:
    """Tables of an experiment's results: one row per router or variant."""
    lines: list[str] = []
    if result["experiment"] == "ope":
        return _ope_markdown(result["results"])
    if result["experiment"] == "drift":
        return _drift_markdown(result["results"])
    if result["experiment"] == "budget":
        lines.append("| target | cost % achieved (whole stream) | second half | quality % | "
                     "second half | final lam |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for name, v in result["results"].items():
            lines.append(f"| {name} | {v['cost_pct']:.1f} | {v['second_half_cost_pct']:.1f} | "
                         f"{v['quality_pct']:.1f} | {v['second_half_quality_pct']:.1f} | "
                         f"{v['final_lam']:.2e} |")
        return "\n".join(lines) + "\n"
    if result["experiment"] == "signal":
        tasks = list(result["results"])
        lines.append("| LLM | " + " | ".join(f"{t}: AUC (correct rate)" for t in tasks) + " |")
        lines.append("|---|" + "---:|" * len(tasks))
        models = list(next(iter(result["results"].values())))
        for m in models:
            cells = []
            for t in tasks:
                v = result["results"][t][m]
                cells.append("-" if v is None else f"{v['auc']:.3f} ({v['rate']:.2f})")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def fmt(v: Any, digits: int = 1) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    def table(d: dict[str, Any]) -> None:
        lines.append("| router | AIQ | cost % to 95% | to 97.25% | to 100% | quality % at cost "
                     + " / ".join(f"{b:g}%" for b in COST_BANDS) + " |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        rows = sorted(d.items(), key=lambda kv: -kv[1]["aiq_mean"])
        folds = None
        for name, v in rows:
            def reach(t: str) -> str:
                r = v[f"reach_{t}"]
                folds_total = len(r["per_fold"])
                if r["mean"] is not None:
                    return fmt(r["mean"])
                return f"- ({r['folds_reached']}/{folds_total} folds)"
            folds = len(v["reach_95"]["per_fold"])
            q = " / ".join(fmt(v[f"quality_at_{b:g}"]) for b in COST_BANDS)
            extra = ""
            if "share_of_second_half_to_new_llms" in v:
                extra = f" (new LLMs' share of the 2nd half: {v['share_of_second_half_to_new_llms']:.1%})"
            lines.append(f"| {name}{extra} | {v['aiq_mean']:.3f} ± {v['aiq_std']:.3f} | "
                         f"{reach('95')} | {reach('97.25')} | {reach('100')} | {q} |")
        lines.append("")
        if folds:
            lines.append(f"Means over {folds} folds; '-' means not reached in every fold.")
            lines.append("")

    def walk(d: dict[str, Any], depth: int) -> None:
        if all(isinstance(v, dict) and "aiq_mean" in v for v in d.values()):
            table(d)
            return
        for k, v in d.items():
            if isinstance(v, dict) and "aiq_mean" in v:
                table({k: v})
            else:
                lines.append(f"{'#' * min(depth, 6)} {k}")
                lines.append("")
                walk(v, depth + 1)

    res = result["results"]
    if result["experiment"] == "repeats":
        rep = res["share of test prompts that repeat a training prompt"]
        lines.append(f"Test prompts that repeat a training prompt: {rep['mean']:.1%} "
                     f"(per fold: {', '.join(f'{v:.1%}' for v in rep['per_fold'])}).")
        lines.append("")
        res = res["routers"]
    walk(res, 4)
    return "\n".join(lines)


def _ope_markdown(res: dict[str, Any]) -> str:
    st = res["settings"]
    lines = [f"Logging policy: lam {st['lam0']:g}, softmax temperature {st['temperature']:g}, "
             f"epsilon {st['epsilon']:g} (mean quality {res['logging_policy_quality']:.3f}); "
             f"{st['replays']} replays per log size, {st['level']:.0%} percentile-bootstrap "
             f"intervals ({st['n_boot']} resamples).", "",
             "| candidate (true quality, cost USD/query) | log size | effective sample | "
             "coverage quality IPS / SNIPS / DR | RMSE quality IPS / SNIPS / DR | "
             "coverage cost IPS / SNIPS / DR | RMSE cost (x1e-5 USD) IPS / SNIPS / DR |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, c in res["candidates"].items():
        for n, e in c["by_size"].items():
            def cells(o: str, key: str, scale: float = 1.0, digits: int = 3) -> str:
                return " / ".join(f"{e[f'{o}/{k}'][key] * scale:.{digits}f}"
                                  for k in ("ips", "snips", "dr"))
            lines.append(f"| {name} ({c['truth_quality']:.3f}, {c['truth_cost']:.2e}) | {n} | "
                         f"{e['ess_median']:.0f} | {cells('quality', 'coverage', digits=2)} | "
                         f"{cells('quality', 'rmse')} | {cells('cost', 'coverage', digits=2)} | "
                         f"{cells('cost', 'rmse', 1e5, 2)} |")
    return "\n".join(lines) + "\n"


def _drift_markdown(res: dict[str, Any]) -> str:
    st = res["settings"]
    lines = [f"lam {st['lam']:g}, LinUCB alpha {st['alpha']:g}; {st['length']} queries per "
             f"stream, the change at {st['length'] // 2}; share measured over a trailing "
             f"{st['window']}-query window; settled once within {st['tol']:.0%} of the gap "
             f"(share before -> right share; at least 0.05) of the right level for good; "
             f"means over {st['folds']} folds (settling: median over folds, counted from the "
             f"change, so at least the window).", ""]
    for scenario in ("drop", "rise"):
        block = res[scenario]
        first = next(iter(block.values()))
        lines += [f"#### {scenario}: {', '.join(first['targets'])}", "",
                  "| variant | share before | right share | share, last quarter | queries to "
                  "settle (median) | flagged after (median) | correct answers lost until "
                  "settled | extra USD until settled | lost, whole 2nd half | quality 1st / "
                  "2nd half (right 2nd) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, v in block.items():
            settle = (f"{v['settle_median']:.0f}" if v["settle_median"] is not None
                      else f"not in {len(v['per_fold']) - v['settled_folds']} of "
                           f"{len(v['per_fold'])} folds")
            det = "-" if v["detected_median"] is None else \
                f"{v['detected_median']:.0f} ({v['detected_folds']}/{len(v['per_fold'])})"
            lines.append(
                f"| {name} | {v['share_before']:.2f} | {v['right_share']:.2f} | "
                f"{v['share_last_quarter']:.2f} | {settle} | {det} | "
                f"{v['lost_correct_until_settled']:.1f} | {v['extra_usd_until_settled']:.3f} | "
                f"{v['lost_correct_second_half']:.1f} | {v['quality_first_half']:.3f} / "
                f"{v['quality_second_half']:.3f} ({v['right_quality_second_half']:.3f}) |")
        lines.append("")
    return "\n".join(lines) + "\n"
