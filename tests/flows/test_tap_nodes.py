"""``volcast tap ethereum`` against a real anvil node, and the refusals of ``tap`` for nodes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's default account 0
DEV1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_tap_ethereum_prints_the_pending_transaction_sent_to_the_node(anvil, anvil_rpc):
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "tap", "ethereum", "--url", f"ws://127.0.0.1:{anvil}", "--json",
         "--count", "20"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        sent = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(json.loads(line))
            if sent is None and lines[-1]["kind"] == "feed_status" and lines[-1]["state"] == "synced":
                sent = anvil_rpc(anvil, "eth_sendTransaction", [{
                    "from": DEV0, "to": DEV1, "value": hex(12345), "gas": hex(21000), "gasPrice": hex(3 * 10**9)}])
            if sent and any(e["kind"] == "mempool_tx" and e["txid"] == sent for e in lines):
                break
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    (tx,) = [e for e in lines if e["kind"] == "mempool_tx" and e["txid"] == sent]
    assert tx["value"] == 12345 and tx["tx_type"] == 0 and tx["gas_price_reported"] == 3 * 10**9
    assert tx["sender"].lower() == DEV0.lower()


def test_tap_ethereum_without_a_url_is_one_clear_line():
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "tap", "ethereum"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("tap ethereum needs --url ws://HOST:PORT: your node's websocket "
                                        "(public endpoints need a key)")
