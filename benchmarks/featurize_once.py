"""A multi-block prompt tokenised once: ``TextRouter.decide`` on RouterBench's few-shot prompts.

The default view embeds a prompt's last block and the decision prices the whole prompt. The
path of ``TextRouter.featurize`` (``encode_with_counts`` on the view, ``count_tokens`` on the
other blocks alone, exact for MiniLM's WordPiece) against the one before it (the view embedded,
the whole prompt counted apart), timed alternately in one process on the same prompts. Static
encoder on a random MiniLM-sized table (30,522 x 256 with MiniLM's tokenizer.json: the same
tokenisation and pooling work as the default table, without building it), embedding features,
K = 11. Both paths give the same features and counts (checked first).

Usage::

    PYTHONPATH=python python benchmarks/featurize_once.py [REPEATS] [--data ../shared/data]
"""

import argparse
import time
from pathlib import Path

import numpy as np
from mixllm import LLM, PipelineConfig, TextRouter
from mixllm.data import load_routerbench
from mixllm.text.static import StaticEncoder, StaticTable
from mixllm.text.tokens import DEFAULT_TOKENIZER_FILE, package_file

class Old(StaticEncoder):
    additive_counts = False  # featurize takes the old path: encode(view) + count_tokens(prompt)

rng = np.random.default_rng(0)
tab = StaticTable(rng.normal(size=(30522, 256)).astype(np.float16).astype(np.float32),
                  rng.uniform(0, 1, 30522).astype(np.float32),
                  package_file(DEFAULT_TOKENIZER_FILE).read_bytes())
ap = argparse.ArgumentParser()
ap.add_argument("repeats", nargs="?", type=int, default=3)
ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
args = ap.parse_args()
data = load_routerbench(Path(args.data) / "routerbench_subset")
prompts = [p for p in data.prompts if "\n\n" in p.strip()][:1000]
print(len(prompts), "multi-block prompts, mean tokens",
      np.mean(StaticEncoder(tab).count_tokens(prompts)))
pool = [LLM(f"m{i}", 1.0 + i, 2.0 + i) for i in range(11)]
cfg = PipelineConfig(features="embedding", tags=False, ridge=1.0, lam=1e-3)
routers = {}
for name, cls in (("new", StaticEncoder), ("old", Old)):
    tr = TextRouter(pool, cfg, cls(tab))
    tr.fit(rng.normal(size=(50, 256)), rng.random((50, 11)), np.full((50, 11), 100.0), None)
    routers[name] = tr
tr_new, tr_old = routers["new"], routers["old"]
tr_old.router = tr_new.router
for p in prompts[:200]:
    a, b = tr_new.featurize(p), tr_old.featurize(p)
    assert a[1] == b[1] and np.array_equal(a[0], b[0])
lat = {"new": [], "old": []}
for rep in range(args.repeats):
    for name in ("old", "new"):  # alternated
        tr = routers[name]
        for p in prompts:
            t0 = time.perf_counter_ns(); tr.decide(p); lat[name].append(time.perf_counter_ns() - t0)
for name in ("old", "new"):
    v = np.array(lat[name]) / 1e3
    print(f"{name}: decide p50 {np.median(v):.0f} us, p99 {np.percentile(v, 99):.0f} us, n={len(v)}")
