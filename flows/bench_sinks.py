"""Records per second through each sink, with real local servers where one is needed.

:func:`sink_benchmark` drives each sink as Bytewax does (``build`` a partition, then
``write_batch`` in batches of 256, then ``close``) and times until every record is
written (file, stdout to /dev/null), acknowledged by the broker (Redis, NATS), or
received by a connected client (websocket). It also reports the worker's own cost,
the time spent inside ``write_batch``, which for network sinks is only the hand-off
to the delivery pump. ``redis-server``/``nats-server`` run on random loopback ports;
one that is not installed is skipped and named in ``skipped``.

The records are real: the forecast and score records the flow makes from the bundled
Binance spot recordings (2024-08-08), repeated with shifted timestamps and ids to
reach the requested count.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from connectors.sinks.localserver import NatsServer, RedisServer, free_port
from flows.sink_urls import parse_sink_url
from flows.sinks import build_sinks

DATA = Path(__file__).resolve().parent.parent / "data" / "binance" / "hftbacktest" / "spot"
BATCH = 256


@functools.cache
def demo_records() -> tuple[dict[str, Any], ...]:
    """The records the flow makes from the bundled spot BTC and ETH recordings of 2024-08-08."""
    from bytewax.testing import TestingSink, TestingSource, run_main

    from connectors.record.detect import merge_recordings
    from connectors.venues.binance.protocol import BinanceProtocol
    from flows.config import AppConfig, FeedConfig
    from flows.dataflow import build_flow

    proto = BinanceProtocol("spot", ["BTCUSDT", "ETHUSDT"], book_view_depth=5, emit_deltas=False)
    events = []
    for frame in merge_recordings([DATA / "btcusdt_20240808.gz", DATA / "ethusdt_20240808.gz"]):
        events.extend(proto.feed_frame(frame))
    cfg = AppConfig(feeds=(FeedConfig(market="spot", symbols=("BTCUSDT", "ETHUSDT")),))
    records: list[dict[str, Any]] = []
    run_main(build_flow(cfg, [TestingSink(records)], source=TestingSource(events, batch_size=256)))
    return tuple(records)


def restamped(n: int) -> list[dict[str, Any]]:
    """``n`` records: the demo records repeated, each round shifted past the last in time."""
    base = demo_records()
    t0 = min(r["ts_ns"] for r in base)
    span = max(r["ts_ns"] for r in base) - t0 + 1_000_000_000
    out: list[dict[str, Any]] = []
    k = 0
    while len(out) < n:
        for r in base:
            if len(out) == n:
                break
            ts = r["ts_ns"] + k * span
            rec = dict(r, ts_ns=ts)
            rec["id"] = r["id"].replace(str(r["ts_ns"]), str(ts), 1)
            out.append(rec)
        k += 1
    return out


@contextlib.contextmanager
def _stdout_to_devnull() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


class _WsCounter:
    """A websocket client in a thread that counts record frames."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.count = 0
        self._ws = connect(url + "/?topics=*", max_size=2**24).__enter__()
        json.loads(self._ws.recv())  # {"type": "subscribed", ...}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for _frame in self._ws:
                self.count += 1
        except Exception:
            pass

    def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count < n and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> None:
        self._ws.close()


def _drive(url: str, records: list[dict[str, Any]], *, ws_client: bool = False) -> dict[str, Any]:
    (sink,) = build_sinks([parse_sink_url(url)])
    if hasattr(sink, "build_part"):
        part = sink.build_part("bench", sink.list_parts()[0], None)  # type: ignore[attr-defined]
    else:
        part = sink.build("bench", 0, 1)  # type: ignore[attr-defined]
    wait_client = None
    if ws_client:
        port = sink.server.port  # type: ignore[attr-defined]
        wait_client = _WsCounter(f"ws://127.0.0.1:{port}")
    pump = getattr(part, "pump", None)
    in_write = 0.0
    t0 = time.perf_counter()
    for i in range(0, len(records), BATCH):
        w0 = time.perf_counter()
        part.write_batch(records[i : i + BATCH])
        in_write += time.perf_counter() - w0
    if pump is not None:
        pump.wait_idle(120)
    if wait_client is not None and pump is not None:
        wait_client.wait_for(pump.stats().delivered, 60)
    elapsed = time.perf_counter() - t0
    if pump is not None:
        stats = pump.stats()
        delivered, dropped = stats.delivered, stats.dropped
    else:
        delivered, dropped = len(records), 0
    received = wait_client.count if wait_client is not None else None
    part.close()
    if wait_client is not None:
        wait_client.close()
    n = received if received is not None else delivered
    return {
        "records": len(records),
        "delivered": delivered,
        "dropped": dropped,
        **({"received_by_client": received} if received is not None else {}),
        "seconds": round(elapsed, 4),
        "records_per_s": round(n / elapsed) if elapsed > 0 else None,
        "write_batch_us_per_record": round(in_write / len(records) * 1e6, 3),
    }


def sink_benchmark(n: int = 20_000, *, quick: bool = False) -> dict[str, Any]:
    """Records per second per sink: file, stdout (to /dev/null), ws, redis, nats.

    Returns ``{"records": n, "record_bytes": mean JSON size, "sinks": {name: {...}},
    "skipped": {name: why}}``.
    """
    if quick:
        n = min(n, 5_000)
    records = restamped(n)
    out: dict[str, Any] = {
        "records": n,
        "record_bytes": round(sum(len(json.dumps(r, separators=(",", ":"))) for r in records[:500]) / min(n, 500)),
        "batch": BATCH,
        "sinks": {},
        "skipped": {},
    }
    sinks = out["sinks"]
    with tempfile.TemporaryDirectory(prefix="volcast-bench-") as tmp:
        sinks["file"] = _drive(f"file://{tmp}/bench.jsonl", records)
        sinks["file_fsync_always"] = _drive(f"file://{tmp}/bench-sync.jsonl?fsync=always", records)
    with _stdout_to_devnull():
        sinks["stdout"] = _drive("stdout", records)
    # Buffers as large as the run: this measures throughput, not the drop policy.
    sized = f"buffer={n}"
    sinks["ws"] = _drive(f"ws://127.0.0.1:{free_port()}?queue={n + 16}&{sized}", records, ws_client=True)
    for name, server_cls in (("redis", RedisServer), ("nats", NatsServer)):
        if not server_cls.available():
            out["skipped"][name] = f"{server_cls.binary} is not installed (make test-deps installs it)"
            continue
        server = RedisServer(durable=False) if server_cls is RedisServer else server_cls()
        with server:
            sinks[name] = _drive(f"{server.url}?{sized}", records)
            if name == "redis":
                sinks["redis_msgpack"] = _drive(f"{server.url}/1?format=msgpack&{sized}", records)
    return out


if __name__ == "__main__":
    print(json.dumps(sink_benchmark(quick="--quick" in sys.argv), indent=2))
