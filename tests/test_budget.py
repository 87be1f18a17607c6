"""The spend controller holds a target on a synthetic cost-vs-lam world."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixllm.evaluation.budget import SpendController


def _world_cost(lam: float, rng) -> float:
    # Spend rises with the willingness to pay, from $0.0001 to $0.01 a query, plus noise.
    base = 1e-4 + 1e-2 / (1.0 + math.exp(-(math.log10(lam) + 3.0) * 2.0))
    return base * rng.lognormal(0.0, 0.3)


@pytest.mark.parametrize("target", [3e-4, 2e-3, 6e-3])
@pytest.mark.parametrize("start", [1e-6, 1e-1])
def test_converges_to_the_target_from_either_side(target, start):
    rng = np.random.default_rng(0)
    ctl = SpendController(target, lam=start)
    costs = []
    for _ in range(6000):
        c = _world_cost(ctl.lam, rng)
        costs.append(c)
        ctl.observe(c)
    late = float(np.mean(costs[-2000:]))
    assert late == pytest.approx(target, rel=0.15)


def test_direction_and_bounds():
    ctl = SpendController(1e-3, lam=0.01, lam_min=1e-4, lam_max=0.02)
    before = ctl.lam
    ctl.observe(5e-3)                    # overspending lowers lam
    assert ctl.lam < before
    for _ in range(10_000):
        ctl.observe(0.0)                 # underspending raises it, up to lam_max
    assert ctl.lam == 0.02
    assert ctl.mean_cost_usd == pytest.approx(5e-3 / 10_001)


@pytest.mark.parametrize("kwargs", [{"target_usd": 0.0}, {"target_usd": 1e-3, "eta": -1.0},
                                    {"target_usd": 1e-3, "smoothing": 2.0},
                                    {"target_usd": 1e-3, "lam_min": 1.0, "lam_max": 0.5},
                                    {"target_usd": float("nan")}])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        SpendController(**kwargs)


def test_bad_observation_leaves_state():
    ctl = SpendController(1e-3)
    lam, n = ctl.lam, ctl.n
    for bad in (-1.0, float("inf"), "0.1", True):
        with pytest.raises(ValueError):
            ctl.observe(bad)
    assert (ctl.lam, ctl.n) == (lam, n)
