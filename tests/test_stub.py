"""python/mixllm/_core.pyi, the committed type stub of the native module, matches the module.

Regenerate it after changing a binding (pybind11-stubgen, in the dev extra):
``pybind11-stubgen mixllm._core -o python`` with the freshly built module on the path.
"""

from __future__ import annotations

import ast
from pathlib import Path

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
