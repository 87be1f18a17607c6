"""The C++ core under ThreadSanitizer and AddressSanitizer + UndefinedBehaviorSanitizer.

Builds cpp/tests/stress_pool.cpp against the Python-free core (CMake: MIXLLM_BUILD_TESTS=ON,
MIXLLM_BUILD_PYTHON=OFF, MIXLLM_SANITIZE=...) and runs a bounded stress: concurrent
score / predict / update / update_batch / add / remove / refactor / snapshot / clone, then a
check that no update was lost. Any sanitizer report fails the run. Skipped where there is no
cmake or C++ compiler. The longer runs are in docs/RELIABILITY.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CMAKE = shutil.which("cmake")
CXX = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CMAKE is None or CXX is None, reason="needs cmake and a C++ compiler"),
]


@pytest.mark.parametrize("sanitizer,env", [
    ("thread", {"TSAN_OPTIONS": "halt_on_error=1 exitcode=66"}),
    ("address,undefined", {"ASAN_OPTIONS": "detect_leaks=1 halt_on_error=1 exitcode=66",
                           "UBSAN_OPTIONS": "halt_on_error=1 print_stacktrace=1 exitcode=66"}),
])
def test_stress_driver_is_clean_under_sanitizer(tmp_path, sanitizer, env):
    build = tmp_path / "build"
    cfg = subprocess.run(
        [CMAKE, "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
         "-DMIXLLM_BUILD_PYTHON=OFF", "-DMIXLLM_BUILD_TESTS=ON", f"-DMIXLLM_SANITIZE={sanitizer}"],
        capture_output=True, text=True, timeout=300, check=False)
    if cfg.returncode != 0:
        pytest.skip(f"cannot configure a {sanitizer} build here: {cfg.stderr[-500:]}")
    make = subprocess.run([CMAKE, "--build", str(build), "-j2", "--target", "stress_pool"],
                          capture_output=True, text=True, timeout=600, check=False)
    if make.returncode != 0 and "sanitize" in make.stderr and "cannot find" in make.stderr:
        pytest.skip(f"the toolchain has no {sanitizer} runtime")
    assert make.returncode == 0, make.stderr[-3000:]
    for discount in ("1", "0.97"):  # and with forgetting (each arm's scale, its folds)
        run = subprocess.run([str(build / "stress_pool"), "2", "300", "17", discount],
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, **env}, check=False)
        report = run.stdout + run.stderr
        assert run.returncode == 0, report[-4000:]
        assert "WARNING: ThreadSanitizer" not in report and "ERROR: AddressSanitizer" not in report
        assert "runtime error" not in report  # UBSan
        assert "failures=0" in run.stdout
