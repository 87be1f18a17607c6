"""Shared fixtures: every test that touches the kernels runs on every backend this CPU has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mixllm

BACKENDS = mixllm.available_backends()
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Force one SIMD backend for the test, then restore the previous one."""
    before = mixllm.simd_backend()
    mixllm.set_simd_backend(request.param)
    yield request.param
    mixllm.set_simd_backend(before)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the repository, or a skip with the reason."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real routing data not present at {SHARED_DATA} (fresh clone without ../shared)")
    return SHARED_DATA
