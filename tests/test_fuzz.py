"""Fuzzing of the state loaders and the data loaders (tools/fuzz_state.py).

Two bounded drivers of the same entry point: hypothesis-generated inputs (always), and a short
atheris run (coverage-guided) when atheris is installed (``pip install atheris``; the longer
reported runs are in docs/RELIABILITY.md). A crash is any exception other than the documented
typed errors, or a hang.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TOOL = Path(__file__).resolve().parents[1] / "tools" / "fuzz_state.py"
_spec = importlib.util.spec_from_file_location("fuzz_state", TOOL)
fuzz_state = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_state)


@pytest.mark.parametrize("target", fuzz_state.TARGETS)
@settings(max_examples=150, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.binary(min_size=0, max_size=600))
def test_loaders_survive_generated_inputs(target, data):
    fuzz_state.one_input(target, data, fuzz_state.BytesProvider)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
@pytest.mark.parametrize("target", fuzz_state.TARGETS)
def test_atheris_bounded_run(tmp_path, target):
    import mixllm

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(mixllm.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, str(TOOL), target, "-runs=400", "-seed=1", "-timeout=10",
         "-rss_limit_mb=4096", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 400 runs" in proc.stderr
