"""The ``mixllm`` command line: eval, fit, route, experiment, ope, serve, info."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__, available_backends, simd_backend
from .router import DEFAULT_LAM

DEFAULT_CACHE = Path.home() / ".cache" / "mixllm" / "embeddings"


def _config_args(p: argparse.ArgumentParser, encoder: str = "minilm") -> None:
    g = p.add_argument_group("router settings")
    g.add_argument("--view", choices=("full", "last_block", "first_last"), default="last_block",
                   help="part of each prompt that is embedded (default: last_block)")
    g.add_argument("--features", choices=("auto", "tags", "embedding", "neighbours",
                                          "tags+neighbours"), default="auto",
                   help="router feature map (default auto: chosen in fit by cross-validation "
                        "on the training rows)")
    g.add_argument("--no-tags", action="store_true",
                   help="never use the tag transform (the embedding instead)")
    g.add_argument("--no-repeats", action="store_true",
                   help="leave out the neighbour features' repeat blocks (what the LLMs "
                        "scored on the same prompt before; default: kept)")
    g.add_argument("--tag-rank", type=int, default=4, help="LLM-strength dimensions (default 4)")
    g.add_argument("--ridge", type=float, default=None,
                   help="ridge strength (default: chosen in fit by cross-validation)")
    g.add_argument("--alpha", type=float, default=0.0, help="weight of the LinUCB bonus")
    g.add_argument("--beta", type=float, default=None,
                   help="weight of the latency penalty (default 1 with --tau, else 0)")
    g.add_argument("--pool", type=Path, help="pool file (TOML/JSON): prices and latency profiles")
    g.add_argument("--assume-output-tokens", type=float, metavar="N",
                   help="response length assumed where the data records none and no cost "
                        "(RouterDC): every response N tokens")
    g.add_argument("--no-task-labels", action="store_true",
                   help="drop the data's task labels and tags (route as on unlabelled data)")
    g.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help=f"embedding cache folder (default {DEFAULT_CACHE}); 'none' disables it")
    g.add_argument("--encoder", choices=("minilm", "static"), default=encoder,
                   help="minilm: the transformer (~11 ms a query); static: a token table "
                        "distilled from it (~0.15 ms; built once, ~40 s, on first use; the "
                        "same RouterBench routing quality, benchmarks/RESULTS.md)")


def _config(args: argparse.Namespace):
    from .text.pipeline import PipelineConfig

    tau = getattr(args, "tau", None)
    beta = args.beta if args.beta is not None else (1.0 if tau is not None else 0.0)
    return PipelineConfig(view=args.view, features=args.features, tags=not args.no_tags,
                          tag_rank=args.tag_rank,
                          duplicates=None if getattr(args, "no_repeats", False)
                          else PipelineConfig.duplicates,
                          ridge=args.ridge, alpha=args.alpha, beta=beta,
                          tau=math.inf if tau is None else tau,
                          lam=getattr(args, "lam", math.inf))


def _positive_lam(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (or inf), got {text}")
    return v


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried, since permission bits do not say
    (root passes ``os.access`` on a read-only mount or in /proc)."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".mixllm-probe-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


def _check_out_file(path: Path | None, option: str) -> None:
    """Refuse an output file that cannot be written, before any long work."""
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder, not a file")
    if not parent.is_dir():
        raise ValueError(f"{option} {path}: folder {parent} does not exist")
    if not _writable(parent) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{option} {path}: not writable")


def _check_out_dir(path: Path, option: str) -> None:
    """Refuse an output folder that cannot be created or written, before any long work."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} exists and is not a folder")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{option} {path}: {probe} is not a folder")
    if not _writable(probe):
        raise ValueError(f"{option} {path}: cannot write in {probe}")


def _encoder(args: argparse.Namespace):
    if getattr(args, "encoder", "minilm") == "static":
        from .text.static import StaticEncoder

        return StaticEncoder(progress=not getattr(args, "quiet", False))
    from .text.onnx import OnnxEncoder

    cache = None if str(args.cache_dir).lower() == "none" else args.cache_dir
    return OnnxEncoder(cache_dir=cache)


def _static_table(args: argparse.Namespace) -> int:
    from .text.static import DEFAULT_DIM, build_table, default_table_path

    out = args.out or default_table_path(args.dim or DEFAULT_DIM)
    if args.out is not None:
        _check_out_file(args.out, "--out")
    table = build_table(dim=args.dim or DEFAULT_DIM, progress=not args.quiet)
    table.save(out)
    print(f"wrote {out}: {table.table.shape[0]} tokens x {table.dim} dims")
    return 0


def _load(path: Path, what: str):
    from .data import load_data

    try:
        return load_data(path)
    except FileNotFoundError as exc:
        raise ValueError(f"{what} not found: {exc.filename or path}") from exc


def _prepared(data: Any, args: argparse.Namespace):
    """The data with the command line's assumptions applied (stated in its meta)."""
    n = getattr(args, "assume_output_tokens", None)
    if n is not None:
        data = data.assume_output_tokens(n)
    if getattr(args, "no_task_labels", False):
        data = data.without_labels()
    return data


def _limit(data: Any, n: int | None, seed: int):
    if n is None or n >= len(data):
        return data
    import numpy as np

    rows = np.sort(np.random.default_rng(seed).permutation(len(data))[:n])
    return data.subset(rows)


def _pool_for(args: argparse.Namespace, data: Any):
    """The pool file's LLMs (checked to price every model of the data), else the data's own."""
    import numpy as np

    from . import data as D
    from .types import LLM

    if not args.pool:
        if not data.pool and not np.isnan(data.cost_usd).all():
            # No prices, but recorded costs: learn each response's cost directly, as a
            # "length" in micro-USD priced at 1 USD per million.
            print("no pool given: costs are learned directly from cost_usd "
                  "(pass --pool for prices and latency profiles)", file=sys.stderr)
            return [LLM(m, 0.0, 1.0) for m in data.models]
        return data.match_pool()
    pool = D.load_pool(args.pool)
    missing = sorted(set(data.models) - {m.name for m in pool})
    if missing:
        raise D.DataError(f"{args.pool}: no entry for the data's models {missing}")
    return pool


def _eval(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import BASELINES, evaluate

    _check_out_file(args.json, "--json")
    _check_out_file(args.plot, "--plot")
    train = _limit(_prepared(_load(args.train, "training data"), args), args.limit, args.seed)
    if args.test is not None:
        test = _limit(_prepared(_load(args.test, "test data"), args), args.limit, args.seed + 1)
    else:
        train, test = train.split(args.split, args.seed)
    pool = _pool_for(args, train)
    baselines = BASELINES if args.baselines is None else tuple(args.baselines)
    online = args.feedback if args.online else None
    report = evaluate(train, test, args.reference, pool=pool, config=_config(args),
                      encoder=_encoder(args), online=online,
                      tau=math.inf if args.tau is None else args.tau, baselines=baselines,
                      seed=args.seed, progress=not args.quiet)
    _print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    if args.plot:
        from .evaluation.plot import plot_report

        plot_report(report, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _fmt(v: Any) -> str:
    return "   -  " if v is None else f"{v:6.1f}"


def _print_report(report: dict[str, Any]) -> None:
    ref = report["reference"]
    dropped = report.get("n_test_dropped", 0)
    n_all = report["n_test"] + dropped
    print(f"reference: {ref}   train n={report['n_train']}  test n={report['n_test']}"
          + (f" ({dropped} of {n_all} test prompts left out: some LLM's quality or cost is "
             f"missing)" if dropped else ""))
    online = report["online"]
    tau = report["tau"]
    print(f"online learning over the test stream: {online or 'off'}   latency tolerance: "
          + ("none" if tau == "inf" else f"{tau} s"))
    print(f"{'router':36s} {'AIQ':>6s} {'gap':>6s} {'AIQ - mixllm [95% CI]':>26s}   "
          f"cost % of {ref} to reach quality % of it:")
    print(f"{'':36s} {'':6s} {'closed':>6s} {'':26s}   {'90':>6s} {'95':>6s} {'97.25':>6s} {'100':>6s}")
    for name, r in sorted(report["routers"].items(), key=lambda kv: -kv[1]["aiq"]):
        reach = r["cost_to_reach"]
        gap = r.get("oracle_gap_closed")
        vs = r.get("vs_mixllm")
        diff = "" if vs is None or name == "mixllm" else (
            f"{vs['aiq_diff']:+.3f} [{vs['ci95_low']:+.3f}, {vs['ci95_high']:+.3f}]")
        print(f"{name[:36]:36s} {r['aiq']:6.3f} {'' if gap is None else f'{gap:6.2f}':>6s} "
              f"{diff:>26s}   " + " ".join(_fmt(reach[k]) for k in reach))
    print("gap closed: (AIQ - best single LLM's) / (oracle's - best single LLM's); "
          "95% CI: paired bootstrap over test prompts")
    print("AIQ: the area under a router's cost-quality frontier (quality as a fraction of the "
          "reference's,\n     over the single LLMs' cost range); higher is better. "
          "'-': the router never reaches that quality.")


def _fit(args: argparse.Namespace) -> int:
    import numpy as np

    from .text.pipeline import TextRouter

    _check_out_dir(args.out, "--out")
    train = _prepared(_load(args.train, "training data"), args)
    pool = [m for m in _pool_for(args, train) if m.name in train.models]
    tr = TextRouter(pool, _config(args), _encoder(args))
    tr.fit_data(train, progress=not args.quiet)
    # The proxy takes quality feedback in this range: [0, 1], widened to the data's own.
    q = train.quality[np.isfinite(train.quality)]
    tr.router.metadata["quality_range"] = [min(0.0, float(q.min(initial=0.0))),
                                           max(1.0, float(q.max(initial=1.0)))]
    tr.save(args.out)
    print(f"fitted {len(pool)} LLMs on {len(train)} prompts; saved to {args.out}")
    return 0


def _route(args: argparse.Namespace) -> int:
    from .text.pipeline import TextRouter

    for i, text in enumerate(args.text):
        if not text.strip():
            raise ValueError(f"prompt {i + 1} is empty: give the text to route")
    if not (args.state / "manifest.json").is_file():
        raise FileNotFoundError(f"no router in {args.state} (no manifest.json there); write "
                                f"one with 'mixllm fit --train DATA --out {args.state}'")
    tr = TextRouter.load(args.state)
    for text in args.text:
        d = tr.route(text, lam=args.lam)
        if args.json:
            print(json.dumps(d.as_dict()))
            continue
        print(f"{d.llm}")
        print(f"  {'LLM':38s} {'quality':>8s} {'out tok':>8s} {'cost $':>10s} {'bonus':>7s} "
              f"{'penalty':>7s} {'score':>9s}")
        for k, n in enumerate(d.names):
            mark = "*" if k == d.index else " "
            print(f" {mark}{n[:38]:38s} {d.quality[k]:8.3f} {d.output_tokens[k]:8.0f} "
                  f"{d.cost[k]:10.6f} {d.bonus[k]:7.3f} {d.penalty[k]:7.3f} {d.score[k]:9.4f}")
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from .evaluation.experiments import run_experiment, to_markdown

    _check_out_file(args.json, "--json")
    _check_out_file(args.markdown, "--markdown")
    data = _limit(_prepared(_load(args.data, "data"), args), args.limit, args.seed)
    pool = _pool_for(args, data) if args.pool else None
    res = run_experiment(args.name, data, args.reference, encoder=_encoder(args),
                         config=_config(args), folds=args.folds, seed=args.seed,
                         tau=args.tau_s, alpha=args.explore, new=args.new or (),
                         progress=not args.quiet, replays=args.replays, pool=pool)
    md = to_markdown(res)
    print(md)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    if args.markdown:
        args.markdown.write_text(md + "\n")
    return 0


def _ope(args: argparse.Namespace) -> int:
    from .decision_log import read_log
    from .evaluation.ope import RouterPolicy, TermsPolicy, evaluate_log

    log = read_log(args.log)
    if args.router is not None:
        from .router import Router

        path = args.router
        if path.is_dir():  # a TextRouter folder ('mixllm fit --out'): its router
            from .text.pipeline import TextRouter

            router = TextRouter.load(path).router
        else:
            router = Router.load(path)
        if args.alpha is not None or args.beta is not None:
            raise ValueError("--alpha/--beta apply to the logged terms; with --router, set "
                             "them on the router before saving it")
        policy = RouterPolicy(router, lam=args.lam, temperature=args.temperature,
                              epsilon=args.epsilon)
    else:
        policy = TermsPolicy(lam=args.lam, alpha=args.alpha, beta=args.beta,
                             temperature=args.temperature, epsilon=args.epsilon)
    res = evaluate_log(log, policy, direct=args.direct, n_boot=args.n_boot, level=args.level,
                       seed=args.seed)
    print(f"log: {args.log}  decisions: {res['n_decisions']}  LLMs: {len(res['llms'])}  "
          f"candidate: {json.dumps(res['policy'])}")
    print(f"{'outcome':8s} {'estimator':9s} {'estimate':>12s}   {int(args.level * 100)}% "
          f"interval")
    for o in ("quality", "cost"):
        r = res[o]
        for k in ("logged", "ips", "snips", "dr"):
            e = r[k]
            label = "(logging)" if k == "logged" else k
            print(f"{o:8s} {label:9s} {e['estimate']:12.6g}   [{e['low']:.6g}, {e['high']:.6g}]")
        note = "  (few rows agree with the candidate: intervals unreliable)" \
            if r["ess"] < 50 else ""
        print(f"{o:8s} rows used {r['n']} (left out, no {o} observed: {r['n_left_out']}); "
              f"effective sample {r['ess']:.0f}; largest weight {r['max_weight']:.3g}{note}")
    share = ", ".join(f"{n} {v:.1%}" for n, v in res["target_share"].items() if v > 0)
    print(f"candidate's traffic: {share}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
        print(f"wrote {args.json}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        from .serving.proxy import require_serve_extra, run
        require_serve_extra()
    except ModuleNotFoundError as exc:
        raise SystemExit(f"mixllm serve: {exc}") from exc
    encoder = None
    if args.state is None or not (args.state / "manifest.json").is_file():
        encoder = _encoder(args)  # a cold start; a saved state names its own encoder
    from .serving.proxy import ServeConfig

    config = ServeConfig(decision_log=None if args.decision_log is None else str(args.decision_log),
                         explore_temperature=args.explore_temperature,
                         explore_epsilon=args.explore_epsilon, explore_seed=args.explore_seed)
    run(args.pool, args.state, host=args.host, port=args.port, encoder=encoder, config=config)
    return 0


def _info(_: argparse.Namespace) -> int:
    print(json.dumps({"version": __version__, "simd_backend": simd_backend(),
                      "available_backends": available_backends()}, indent=2))
    return 0


class _Help(argparse.HelpFormatter):
    """Shows every option's default (unless its help already says it, or there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or "default:" in text or action.default is None or action.default is False \
                or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mixllm", description="MixLLM LLM router",
                                     formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"mixllm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, formatter_class=_Help)

    p = add("eval", "fit on training data, replay a test stream, compare routers")
    p.add_argument("--train", type=Path, required=True, help="training data (file or folder)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--test", type=Path, help="test data (default: a split of --train)")
    g.add_argument("--split", type=float, default=0.2, help="test fraction of --train")
    p.add_argument("--reference", required=True, help="LLM that defines 100%% quality and cost")
    p.add_argument("--online", action="store_true", help="learn online over the test stream")
    p.add_argument("--feedback", choices=("refined", "thumbs"), default="refined",
                   help="what --online reveals (refined: quality and length; thumbs: up/down)")
    p.add_argument("--tau", type=float, help="latency tolerance in seconds, with the queue "
                                             "simulation (default: none)")
    p.add_argument("--baselines", nargs="*", help="subset of baselines to run (default: all)")
    p.add_argument("--limit", type=int, help="use at most this many prompts of each file "
                                             "(default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the baselines")
    p.add_argument("--json", type=Path, help="write the report as JSON")
    p.add_argument("--plot", type=Path, help="write the cost-quality plot (PNG)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _config_args(p)
    p.set_defaults(func=_eval)

    p = add("fit", "fit a router on data and save it")
    p.add_argument("--train", type=Path, required=True, help="training data (file or folder)")
    p.add_argument("--out", type=Path, required=True, help="folder to save the router to")
    p.add_argument("--lam", type=_positive_lam, default=DEFAULT_LAM,
                   help="default willingness to pay saved with the router, USD per unit of "
                        "quality (0-1 scale): a small lam favours cheap LLMs, 'inf' routes on "
                        "predicted quality alone; a request's 'mixllm:lam=X' or the pool "
                        "file's lam overrides it")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    # The router `mixllm serve --state` loads routes with the encoder it was fitted with:
    # static by default, so that serving featurises in ~0.15 ms, not MiniLM's ~11 ms.
    _config_args(p, encoder="static")
    p.set_defaults(func=_fit)

    p = add("route", "route prompts with a saved router")
    p.add_argument("--state", type=Path, required=True, help="folder written by 'mixllm fit'")
    p.add_argument("--lam", type=_positive_lam,
                   help="willingness to pay, USD per unit quality (default: the router's)")
    p.add_argument("--json", action="store_true", help="one JSON decision per line")
    p.add_argument("text", nargs="+", help="prompt(s) to route")
    p.set_defaults(func=_route)

    p = add("experiment", "run one of the experiments of docs/RESULTS.md")
    p.add_argument("name", choices=("main", "continual", "tags", "newllm", "unseen", "signal",
                                    "budget", "ope", "drift", "repeats"), help="the experiment")
    p.add_argument("--data", type=Path, required=True, help="routing data (file or folder)")
    p.add_argument("--reference", required=True, help="LLM that defines 100%% quality and cost")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds")
    p.add_argument("--tau-s", type=float, default=2.0, help="latency tolerance for 'main', s")
    p.add_argument("--explore", type=float, default=0.05,
                   help="LinUCB alpha for the online experiments")
    p.add_argument("--new", nargs="*", help="LLMs to add mid-stream ('newllm'; default: its "
                                            "own choice)")
    p.add_argument("--replays", type=int, default=50,
                   help="seeded replays per log size ('ope')")
    p.add_argument("--limit", type=int, help="use at most this many prompts (a seeded sample; "
                                             "default: all)")
    p.add_argument("--json", type=Path, help="write the results as JSON")
    p.add_argument("--markdown", type=Path, help="write the results as a Markdown table")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _config_args(p)
    p.set_defaults(func=_experiment)

    p = add("ope", "estimate a candidate policy's quality and cost from a decision log "
                   "(off-policy evaluation)")
    p.add_argument("--log", type=Path, required=True, help="decision log (JSONL)")
    p.add_argument("--lam", type=float, help="candidate's willingness to pay (default: logged)")
    p.add_argument("--alpha", type=float, help="candidate's bonus weight (default: logged)")
    p.add_argument("--beta", type=float, help="candidate's latency weight (default: logged)")
    p.add_argument("--router", type=Path, help="another fitted router (Router file or "
                                               "'mixllm fit' folder) applied to the logged x")
    p.add_argument("--temperature", type=float, default=0.0,
                   help="candidate's softmax temperature (default 0: deterministic)")
    p.add_argument("--epsilon", type=float, default=0.0, help="candidate's uniform mixing")
    p.add_argument("--direct", choices=("logged", "policy"), default="logged",
                   help="DR direct model: the logged predictions (default) or --router's")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--level", type=float, default=0.95, help="interval coverage")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--json", type=Path, help="write the estimates as JSON")
    p.set_defaults(func=_ope)

    p = add("static-table", "distil the static encoder's token table from MiniLM (done at "
                            "first use otherwise)")
    p.add_argument("--dim", type=int, help="PCA components (default 256)")
    p.add_argument("--out", type=Path, help="table file (default: the user cache, where "
                                            "--encoder static looks)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_static_table)

    p = add("serve", "OpenAI-compatible routing proxy over a pool file (needs mixllm[serve]; "
                     "see docs/SERVING.md)")
    p.add_argument("--pool", type=Path, required=True,
                   help="pool file whose LLMs give base_url (and model, api_key_env); its "
                        "top-level 'lam' sets the default willingness to pay")
    p.add_argument("--state", type=Path,
                   help="router folder ('mixllm fit --out'): loaded if present, saved "
                        "periodically and on shutdown (default: none, nothing saved)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--encoder", choices=("minilm", "static"), default="static",
                   help="prompt encoder of a cold start; a saved --state uses the encoder it "
                        "was fitted with (static: ~0.15 ms a prompt against MiniLM's ~11 ms, "
                        "the same RouterBench routing quality)")
    p.add_argument("--cache-dir", type=Path, default=Path("none"),
                   help="embedding cache folder for --encoder minilm (default: none)")
    p.add_argument("--decision-log", type=Path,
                   help="append every decision and its observed cost/quality to this JSONL "
                        "file (the input of 'mixllm ope')")
    p.add_argument("--explore-temperature", type=float, default=0.0,
                   help="sample the LLM from softmax(score / T) and log its propensity")
    p.add_argument("--explore-epsilon", type=float, default=0.0,
                   help="mix this share of uniform choices in (logged propensities)")
    p.add_argument("--explore-seed", type=int, help="seed of the exploration (reproducible)")
    p.set_defaults(func=_serve)

    p = add("info", "print the version and the SIMD kernels in use")
    p.set_defaults(func=_info)
    from .bench import register

    register(sub, formatter_class=_Help)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, KeyError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"mixllm {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
