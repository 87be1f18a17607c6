"""python/mixllm/_core.pyi, the committed type stub of the native module, matches the module.

Regenerate it after changing a binding (pybind11-stubgen, in the test extra):
``pybind11-stubgen mixllm._core -o python`` with the freshly built module on the path.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from mixllm import _core

STUB = Path(__file__).resolve().parents[1] / "python" / "mixllm" / "_core.pyi"


def _stub_names():
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    top, pool = set(), set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            top.add(node.name)
        elif isinstance(node, ast.ClassDef):
            top.add(node.name)
            if node.name == "Pool":
                pool = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        elif isinstance(node, (ast.AnnAssign, ast.Assign)):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            top.update(t.id for t in targets if isinstance(t, ast.Name) and t.id != "__all__")
    return top, pool


def test_stub_lists_exactly_the_module():
    top, pool = _stub_names()
    assert top == {n for n in dir(_core) if not n.startswith("_")}
    public_pool = {n for n in dir(_core.Pool) if not n.startswith("_")}
    assert public_pool <= pool  # properties and methods alike
    assert pool - {"__init__", "__len__"} <= public_pool


def test_stub_is_what_the_generator_writes_for_the_built_module(tmp_path):
    pytest.importorskip("pybind11_stubgen", reason="pybind11-stubgen (the test extra) is not installed")
    subprocess.run([sys.executable, "-m", "pybind11_stubgen", "mixllm._core", "-o", str(tmp_path)],
                   check=True, capture_output=True)
    generated = (tmp_path / "mixllm" / "_core.pyi").read_text(encoding="utf-8")
    assert generated == STUB.read_text(encoding="utf-8"), (
        "python/mixllm/_core.pyi is stale: regenerate it with "
        "'pybind11-stubgen mixllm._core -o python'")
