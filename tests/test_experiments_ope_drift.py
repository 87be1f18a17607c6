"""The ope and drift experiments, at a small scale on generated data (the real figures are in
docs/RESULTS.md, made by ``mixllm experiment ope|drift`` on ../shared/data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fakes import HashEncoder
from mixllm.evaluation.experiments import _Context, _drift, _ope_replay, _settle, to_markdown
from mixllm.text.pipeline import PipelineConfig
from test_evaluate import make_data


@pytest.fixture(scope="module")
def ctx():
    return _Context(make_data(120, seed=7), "big", HashEncoder(), 2, 0, False)


def test_settle_is_the_last_time_out_of_the_band():
    share = np.array([0.9, 0.5, 0.2, 0.35, 0.1, 0.12, 0.08])
    assert _settle(share, 0.1, 0.05) == 4
    assert _settle(share, 0.1, 0.5) == 1
    assert _settle(share, 0.9, 0.05) is None
    assert _settle(np.full(3, 0.1), 0.1, 0.01) == 0


def test_ope_replay_small(ctx):
    res = _ope_replay(ctx, PipelineConfig(ridge=1.0), sizes=(100,), replays=4, n_boot=100)
    assert set(res["candidates"]) >= {"lam inf (quality only)",
                                      "another fitted router (ridge 100)"}
    for c in res["candidates"].values():
        e = c["by_size"]["100"]
        for key in ("quality/ips", "quality/snips", "quality/dr", "cost/dr"):
            assert 0.0 <= e[key]["coverage"] <= 1.0 and e[key]["rmse"] >= 0.0
        assert 0.0 <= c["truth_quality"] <= 1.0
    md = to_markdown({"experiment": "ope", "results": res})
    assert md.count("| lam") >= 3 and "coverage" in md
    json.dumps(res)


def test_drift_small(ctx):
    res = _drift(ctx, PipelineConfig(ridge=1.0), 0.05, length=160, window=20,
                 discounts=(1.0, 0.9))
    for scenario in ("drop", "rise"):
        block = res[scenario]
        assert set(block) == {"no forgetting", "discount 0.9", "no forgetting, epsilon 0.05",
                              "discount 0.9, epsilon 0.05"}
        for v in block.values():
            assert len(v["per_fold"]) == 2
            assert 0.0 <= v["share_before"] <= 1.0 and 0.0 <= v["right_share"] <= 1.0
    md = to_markdown({"experiment": "drift", "results": res})
    assert "#### drop" in md and "#### rise" in md
    json.dumps(res)


def test_drift_figures_do_not_depend_on_the_engine(ctx):
    # The experiment runs every variant on the native engine; the reference engine (the NumPy
    # specification) makes the same choices, so every figure agrees to rounding.
    kw = dict(length=160, window=20, discounts=(1.0, 0.9))
    nat = _drift(ctx, PipelineConfig(ridge=1.0), 0.05, **kw)
    ref = _drift(ctx, PipelineConfig(ridge=1.0), 0.05, engine="reference", **kw)
    assert (nat["settings"]["engine"], ref["settings"]["engine"]) == ("native", "reference")
    for scenario in ("drop", "rise"):
        assert set(nat[scenario]) == set(ref[scenario])
        for name, v in nat[scenario].items():
            assert len(v["per_fold"]) == len(ref[scenario][name]["per_fold"]) == 2
            for fn, fr in zip(v["per_fold"], ref[scenario][name]["per_fold"]):
                assert fn.keys() == fr.keys()
                for key, x in fn.items():
                    if isinstance(x, float):
                        assert x == pytest.approx(fr[key], rel=1e-9, abs=1e-12), (name, key)
                    else:
                        assert x == fr[key], (name, key)


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_forgetting_copy_is_the_fitted_state_on_the_engine_asked(engine, rng):
    from mixllm import LLM, Router
    from mixllm.evaluation.experiments import _forgetting_copy

    pool = [LLM("a", 1.0, 2.0), LLM("b", 0.5, 1.0)]
    base = Router(pool, 4, alpha=0.1, ridge=3.0)
    X = rng.normal(size=(30, 4))
    base.fit(X, {"a": rng.random(30), "b": rng.random(30)}, {"a": 10 + X[:, 0] ** 2,
                                                              "b": 20 + X[:, 1] ** 2})
    r = _forgetting_copy(base, 0.99, 0.01, engine)
    assert (r.engine, r.discount, r.lam) == (engine, 0.99, 0.01)
    for name in ("a", "b"):
        got, want = r._pool.arm(name), base._pool.arm(name)
        np.testing.assert_allclose(got["A"], want["A"], rtol=1e-12)
        np.testing.assert_allclose(got["theta"], want["theta"], rtol=1e-9, atol=1e-12)
