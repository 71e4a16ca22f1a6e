"""``volcast record``, ``replay-server`` and ``tap`` together, as a user chains them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.record.detect import merge_recordings

ROOT = Path(__file__).resolve().parents[2]
USDM_BTC = ROOT / "data" / "binance" / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
pytestmark = pytest.mark.slow


@pytest.fixture
def replay_server():
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "replay-server", "--speed", "0", "--from", str(USDM_BTC)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
    assert match, line
    yield int(match.group(1))
    proc.terminate()
    proc.wait(timeout=10)


def volcast(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


def test_record_from_the_replay_server_then_inspect_the_recording(replay_server, tmp_path):
    # Act: record the whole replay (the server ends it with "end of recording")
    rec = volcast("record", "--venue", "binance", "--market", "usdm", "--symbols", "btcusdt",
                  "--depth-stream", "depth@0ms", "--trade-stream", "trade", "--out", str(tmp_path), "--ws-url", f"ws://127.0.0.1:{replay_server}/usdm",
                  "--rest-url", f"http://127.0.0.1:{replay_server}/usdm")
    # Assert: complete files only, holding the REST snapshot and every recorded frame
    assert rec.returncode == 0, rec.stderr
    files = sorted(tmp_path.glob("*.vcr.gz"))
    assert files and not list(tmp_path.glob("*.part"))
    frames = list(merge_recordings(files))
    kinds = [f.kind for f in frames]
    assert kinds.count("rest") == 1 and kinds[0] == "open"
    source = [f.payload for f in merge_recordings([USDM_BTC]) if f.kind == "recv"]
    assert [f.payload for f in frames if f.kind == "recv"] == source  # byte-exact, in order

    report = json.loads(volcast("inspect", "--json", *map(str, files)).stdout)
    inst = report["instruments"]["binance_usdm:BTCUSDT"]
    assert report["errors"] == []
    assert inst["syncs"] == 1 and inst["gaps"] == 0 and inst["crossed"] == 0


def test_tap_prints_n_normalized_events_as_json(replay_server):
    proc = volcast("tap", "binance", "--market", "usdm", "--symbols", "btcusdt", "--count", "50", "--json",
                   "--url", f"ws://127.0.0.1:{replay_server}/usdm")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 50
    events = [json.loads(line) for line in lines]
    assert {e["kind"] for e in events} >= {"feed_status", "bbo"}
    assert all(e["venue"] == "binance_usdm" for e in events)
