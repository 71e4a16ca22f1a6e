"""model/ is pure numerics: it never imports the runtime, the network, flows or connectors' I/O."""

from __future__ import annotations

import ast
import pathlib

import pytest

MODEL = pathlib.Path(__file__).resolve().parents[2] / "model"
FORBIDDEN = ("bytewax", "asyncio", "websockets", "httpx", "flows", "connectors")
ALLOWED = ("connectors.events",)


def imported_modules(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("path", sorted(MODEL.rglob("*.py")), ids=lambda p: str(p.relative_to(MODEL)))
def test_model_imports_only_what_it_may(path):
    for name in imported_modules(path):
        if name in ALLOWED:
            continue
        assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), f"{path.name} imports {name}"
