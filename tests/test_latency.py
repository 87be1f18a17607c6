"""The queueing model against hand-computed schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixllm import LLM
from mixllm.evaluation.latency import QueueSimulator, arrival_times


def test_single_slot_queue_by_hand():
    sim = QueueSimulator([LLM("m", 1, 1, ttft_s=1.0, tokens_per_s=10.0, slots=1)])
    assert sim.submit("m", 0.0, 20) == (0.0, 3.0)          # busy until 3.0
    assert sim.submit("m", 1.0, 10) == (2.0, 4.0)          # waits 2, runs 3..5
    assert sim.wait_now("m", 4.0) == pytest.approx(1.0)
    assert sim.submit("m", 10.0, 0) == (0.0, 1.0)          # queue drained


def test_slots_serve_in_parallel():
    sim = QueueSimulator([LLM("m", 1, 1, ttft_s=0.0, tokens_per_s=1.0, slots=2)])
    assert sim.submit("m", 0.0, 5)[0] == 0.0
    assert sim.submit("m", 0.0, 5)[0] == 0.0
    assert sim.submit("m", 0.0, 5)[0] == 5.0


def test_estimates_refresh_on_period_only():
    sim = QueueSimulator([LLM("m", 1, 1, ttft_s=0.0, tokens_per_s=1.0, slots=1)], refresh_s=10.0)
    assert sim.estimates(0.0) == {"m": 0.0}
    sim.submit("m", 0.5, 30)                               # busy until 30.5
    assert sim.estimates(5.0) == {"m": 0.0}                # stale until the next refresh
    assert sim.estimates(10.0) == {"m": pytest.approx(20.5)}
    assert sim.estimates(15.0) == {"m": pytest.approx(20.5)}
    assert sim.estimates(20.0) == {"m": pytest.approx(10.5)}


def test_add_remove_and_errors():
    sim = QueueSimulator([LLM("a", 1, 1)])
    sim.add_llm(LLM("b", 1, 1, slots=3), now=5.0)
    assert sim.names == ["a", "b"] and sim.wait_now("b", 0.0) == 5.0
    sim.remove_llm("a")
    with pytest.raises(KeyError):
        sim.submit("a", 0.0, 1)
    with pytest.raises(ValueError):
        sim.add_llm(LLM("b", 1, 1))
    with pytest.raises(ValueError):
        sim.submit("b", math.nan, 1)
    with pytest.raises(ValueError):
        QueueSimulator([], refresh_s=0.0)


def test_arrival_times_rate_and_determinism():
    t = arrival_times(5000, per_window=100, window_s=10.0, seed=3)
    assert t[0] == 0.0 and np.all(np.diff(t) >= 0)
    assert 5000 / t[-1] == pytest.approx(10.0, rel=0.05)
    np.testing.assert_array_equal(t, arrival_times(5000, seed=3))
    np.testing.assert_allclose(arrival_times(4, poisson=False), [0.0, 0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        arrival_times(-1)


def test_wait_tracker_adds_own_dispatches_and_drains():
    from mixllm.waiting import WaitTracker

    llm = LLM("m", 1, 1, ttft_s=1.0, tokens_per_s=10.0, slots=2)
    t = WaitTracker([llm])
    t.refresh(0.0, {"m": 0.0})
    assert t.estimate("m", 0.0) == 0.0
    t.dispatched("m", 30)            # (1 + 30/10) / 2 slots = 2 s of backlog
    assert t.estimate("m", 0.0) == pytest.approx(2.0)
    assert t.estimate("m", 1.5) == pytest.approx(0.5)   # drains one second per second
    assert t.estimate("m", 5.0) == 0.0
    t.refresh(10.0, {"m": 4.0})      # a measurement replaces the belief
    assert t.estimate("m", 10.0) == pytest.approx(4.0)
    assert t.estimates(12.0) == {"m": pytest.approx(2.0)}
