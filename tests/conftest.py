"""Fixtures shared across the test packages: a real anvil Ethereum dev node on loopback.

anvil comes from npm ``@foundry-rs/anvil`` (1.7.1 ships the binary in the
``@foundry-rs/anvil-linux-amd64`` sub-package); ``make test`` installs it under
``.tools/`` and puts it on ``PATH``. It is looked for in ``$VOLCAST_ANVIL``, then on
``PATH``; outside CI a test that needs it is skipped when it is not there, in CI
(``CI`` set) it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import httpx
import pytest

ANVIL = os.environ.get("VOLCAST_ANVIL") or shutil.which("anvil")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AnvilNode:
    """An anvil process on a fixed loopback port, which a test may kill and start again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [ANVIL, "--host", "127.0.0.1", "--port", str(self.port), "--no-mining", "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    pytest.fail("anvil did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc = None


@pytest.fixture
def anvil_node():
    """A started :class:`AnvilNode` with ``--no-mining``: sent transactions stay pending."""
    if not ANVIL:
        message = "anvil not installed (make test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    node = AnvilNode(free_port())
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def anvil(anvil_node):
    """The port of a fresh anvil on 127.0.0.1."""
    return anvil_node.port


def _rpc(port: int, method: str, params: list):
    r = httpx.post(f"http://127.0.0.1:{port}", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    body = r.json()
    assert "error" not in body, body
    return body["result"]


@pytest.fixture
def anvil_rpc():
    """``anvil_rpc(port, method, params)``: one JSON-RPC call over HTTP; an error answer fails the test."""
    return _rpc
