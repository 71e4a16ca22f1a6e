"""``volcast demo`` with every network sink, as a user runs it, against real local servers.

A real consumer on each sink must see exactly the records of the JSONL file, each valid
against its schema; an unreachable broker is a warning and stops nothing; a broker
killed mid-run and restarted gets every record once delivery resumes, and the counters
say what was retried.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import msgspec
import nats
import pytest
import redis
from websockets.sync.client import connect

from connectors.sinks.localserver import NatsServer, RedisServer, free_port
from flows.cli import main as volcast_main
from flows.schemas import validate

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (RedisServer.available() and NatsServer.available()),
                       reason="redis-server and nats-server needed (make test-deps)"),
]
_VALID: set[bytes] = set()


def demo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "demo", "--speed", "10", "--quiet", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def valid_ids(records: list[dict]) -> list[str]:
    for r in records:
        key = msgspec.json.encode(r)
        if key not in _VALID:
            validate(r)
            _VALID.add(key)
    return [r["id"] for r in records]


def jsonl_ids(path: Path) -> list[str]:
    return valid_ids([json.loads(line) for line in path.read_text().splitlines()])


def redis_ids(port: int) -> list[str]:
    r = redis.Redis(port=port)
    recs = [json.loads(f[b"data"]) for k in sorted(r.keys("volcast.*")) for _sid, f in r.xrange(k)]
    return valid_ids(recs)


def nats_ids(url: str) -> list[str]:
    async def main():
        nc = await nats.connect(url)
        sub = await nc.jetstream().subscribe("volcast.>", ordered_consumer=True)
        out = []
        try:
            while True:
                out.append(json.loads((await sub.next_msg(timeout=0.5)).data))
        except nats.errors.TimeoutError:
            pass
        await nc.close()
        return out

    return valid_ids(asyncio.run(main()))


class WsConsumer(threading.Thread):
    """Connects as soon as the sink listens, asks for everything (replay from 0), keeps it all."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"ws://127.0.0.1:{port}/?topics=*&since_ts_ns=0"
        self.records: list[dict] = []
        self.start()

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                ws = connect(self.url).__enter__()
                break
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)
        try:
            for frame in ws:
                msg = json.loads(frame)
                if msg["type"] == "record":
                    self.records.append(msg["data"])
        except Exception:
            pass


def same_records(got: list[str], want: list[str]) -> None:
    assert len(got) == len(set(got)), "duplicates"
    assert sorted(got) == sorted(want)


def summary(stderr: str, label: str) -> dict[str, int]:
    m = re.search(re.escape(f"sink {label}: ") + r"delivered (\d+), retried (\d+), dropped (\d+)", stderr)
    assert m, stderr
    return dict(zip(("delivered", "retried", "dropped"), map(int, m.groups())))


def test_demo_delivers_every_record_to_each_sink_and_an_unreachable_broker_stops_nothing(tmp_path):
    # Arrange
    out = tmp_path / "f.jsonl"
    ws_port, dead_port = free_port(), free_port()
    with RedisServer() as rs, NatsServer() as ns:
        dead = f"redis://127.0.0.1:{dead_port}/0"
        # Act
        proc = demo("--duration", "6", "--sink", rs.url, "--sink", ns.url, "--sink", f"ws://127.0.0.1:{ws_port}",
                    "--sink", f"{dead}?drain_s=0.5", "--out", str(out))
        ws = WsConsumer(ws_port)
        _, stderr = proc.communicate(timeout=90)
        ws.join(10)
        # Assert: a clean run; one warning line for the unreachable broker.
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
        warnings = [line for line in stderr.splitlines() if " WARNING " in line]
        assert [w for w in warnings if dead in w and "retrying with back-off" in w], stderr
        assert not [w for w in warnings if dead not in w], warnings
        want = jsonl_ids(out)
        assert len(want) > 40
        same_records(redis_ids(rs.port), want)
        same_records(nats_ids(ns.url), want)
        same_records(valid_ids(ws.records), want)
        for label in (f"{rs.url}/0", ns.url, f"ws://127.0.0.1:{ws_port}"):
            assert summary(stderr, label) == {"delivered": len(want), "retried": 0, "dropped": 0}
        dead_summary = summary(stderr, dead)
        assert dead_summary["delivered"] == 0 and dead_summary["dropped"] == len(want)


def test_brokers_killed_mid_run_get_every_record_after_restart(tmp_path):
    out = tmp_path / "f.jsonl"
    part = tmp_path / "f.jsonl.part"
    metrics_port = free_port()
    with RedisServer() as rs, NatsServer() as ns:
        proc = demo("--duration", "8", "--sink", rs.url, "--sink", ns.url, "--out", str(out),
                    "--metrics-port", str(metrics_port))
        # Act: once records flow, SIGKILL both brokers; restart them 1.5 s later.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not part.exists() or part.read_text().count("\n") < 20):
            time.sleep(0.05)
        rs.kill()
        ns.kill()
        time.sleep(1.5)
        rs.start()
        ns.start()
        labels = (f"{rs.url}/0", ns.url)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # until both say they are up again
            scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
            if all(f'volcast_sink_up{{sink="{label}"}} 1.0' in scraped for label in labels):
                break
            time.sleep(0.2)
        _, stderr = proc.communicate(timeout=90)
        # Assert
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
        want = jsonl_ids(out)
        same_records(redis_ids(rs.port), want)
        same_records(nats_ids(ns.url), want)
        for label in labels:
            counts = summary(stderr, label)
            assert counts["delivered"] == len(want) and counts["dropped"] == 0 and counts["retried"] > 0
            assert f"sink {label}: delivery resumed after" in stderr
            retries = re.search(re.escape(f'volcast_sink_retries_total{{sink="{label}"}} ') + r"(\S+)", scraped)
            assert retries and float(retries.group(1)) > 0, scraped
            assert f'volcast_sink_dropped_total{{sink="{label}"}} 0.0' in scraped
            assert f'volcast_sink_up{{sink="{label}"}} 1.0' in scraped


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        ("amqp://127.0.0.1:5672", "volcast demo: error: 'amqp://127.0.0.1:5672': unknown sink scheme 'amqp'"),
        ("redis://127.0.0.1:63x79", "volcast demo: error: 'redis://127.0.0.1:63x79': port must be a number"),
        ("nats://127.0.0.1:4222?strem=X", "volcast demo: error: 'nats://127.0.0.1:4222?strem=X': unknown parameter"),
    ],
)
def test_a_bad_sink_url_is_one_clear_line_and_exit_2(capsys, sink, expected):
    assert volcast_main(["demo", "--sink", sink, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(expected), err


def test_a_websocket_port_in_use_is_one_clear_line(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert volcast_main(["demo", "--sink", f"ws://127.0.0.1:{port}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"volcast demo: error: ws://127.0.0.1:{port}: cannot listen on 127.0.0.1:{port}: address already in use"]


def test_run_takes_sinks_from_the_config_and_an_unreachable_broker_is_a_warning(tmp_path):
    # The feed is unreachable too (nothing listens): the daemon runs, retries, stops cleanly.
    feed_port, dead_port = free_port(), free_port()
    out = tmp_path / "f.jsonl"
    cfg = tmp_path / "volcast.toml"
    cfg.write_text(
        f'sinks = ["file://{out}", "nats://127.0.0.1:{dead_port}?drain_s=0.2"]\n'
        f'[[feeds]]\nmarket = "spot"\nsymbols = ["btcusdt"]\n'
        f'ws_url = "ws://127.0.0.1:{feed_port}"\nrest_url = "http://127.0.0.1:{feed_port}"\n'
    )
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--config", str(cfg), "--duration", "3", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    sink_warnings = [line for line in proc.stderr.splitlines() if f"sink nats://127.0.0.1:{dead_port}" in line
                     and " WARNING " in line]
    assert len(sink_warnings) == 1 and "retrying with back-off" in sink_warnings[0], proc.stderr
    assert not out.with_name(out.name + ".part").exists()  # no records: Bytewax never builds the file
