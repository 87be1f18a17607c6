"""Routing quality of the static encoder against MiniLM on RouterBench, 5-fold CV.

Both encoders embed the same prompt views; :func:`mixllm.evaluation.evaluate.evaluate` then runs per fold
(task-stratified folds, seed 0, as ``mixllm experiment tags``) on the precomputed embeddings,
with the tag transform (the default pipeline) and without it (plain embeddings, where the
encoder matters most). Prints a markdown table of fold means; writes JSON with ``--json``.

    PYTHONPATH=python python benchmarks/static_quality.py --data ../shared/data/routerbench_subset
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from mixllm import data as D
from mixllm.text.onnx import OnnxEncoder
from mixllm.evaluation.evaluate import evaluate
from mixllm.evaluation.experiments import _aggregate
from mixllm.text.pipeline import PipelineConfig, prompt_view
from mixllm.text.static import StaticEncoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--reference", default="gpt-4-1106-preview")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "mixllm" / "embeddings")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = D.load_data(args.data)
    config = PipelineConfig(features="tags", ridge=10.0)  # the pipeline these figures were taken on
    texts = [prompt_view(p, config.view) for p in data.prompts]
    emb, secs = {}, {}
    for name, enc in (("minilm", OnnxEncoder(cache_dir=args.cache_dir)),
                      ("static", StaticEncoder(progress=True))):
        t = time.perf_counter()
        emb[name] = enc.encode(texts, progress=True)
        secs[name] = time.perf_counter() - t
    folds = list(data.kfold_indices(args.folds, 0))
    pool = data.match_pool()
    res: dict[str, dict] = {}
    for cname, cfg in (("tag-enhanced (default)", config),
                       ("plain embedding (no tags)", replace(config, features="embedding"))):
        for name, E in emb.items():
            per = []
            for tr, te in folds:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    rep = evaluate(data.subset(tr), data.subset(te), args.reference, pool=pool,
                                   config=cfg, embeddings=(E[tr], E[te]), baselines=(),
                                   n_boot=0)
                per.append(rep["routers"]["mixllm"])
            res[f"{cname} / {name}"] = _aggregate(per)
    print(f"embedding {len(texts)} prompt views: " +
          ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()))
    print("| pipeline / encoder | AIQ (mean ± sd) | cost % to 95% | to 97.25% | to 100% |")
    print("|---|---:|---:|---:|---:|")
    for k, v in res.items():
        r = [v[f"reach_{t}"]["mean"] for t in ("95", "97.25", "100")]
        f = " | ".join("-" if x is None else f"{x:.1f}" for x in r)
        print(f"| {k} | {v['aiq_mean']:.4f} ± {v['aiq_std']:.4f} | {f} |")
    if args.json:
        args.json.write_text(json.dumps({"seconds": secs, "results": res}, indent=1))


if __name__ == "__main__":
    main()
