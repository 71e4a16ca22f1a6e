"""connectors/ never imports bytewax or model; asyncio and sockets only in its I/O shells."""

from __future__ import annotations

import ast
import pathlib

import pytest

CONNECTORS = pathlib.Path(__file__).resolve().parents[2] / "connectors"
NEVER = ("bytewax", "model", "flows")
IO_ONLY = ("asyncio", "websockets", "httpx")
# The asyncio shells: the generic session, the replay server and the sinks' publishers.
IO_PACKAGES = ("io", "replay", "sinks")


def imported_modules(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _matches(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


@pytest.mark.parametrize("path", sorted(CONNECTORS.rglob("*.py")), ids=lambda p: str(p.relative_to(CONNECTORS)))
def test_connectors_import_direction(path):
    in_shell = path.relative_to(CONNECTORS).parts[0] in IO_PACKAGES
    for name in imported_modules(path):
        assert not _matches(name, NEVER), f"{path.name} imports {name}"
        if not in_shell:
            assert not _matches(name, IO_ONLY), f"{path.name} imports {name} outside connectors/io"
