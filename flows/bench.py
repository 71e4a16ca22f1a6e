"""``volcast bench``: the benchmark suite (speed targets are checked here, never by timed tests).

1. Binance depth messages per second through decode + sync + book (the connector's
   hot path, one core, frames pre-loaded) on the bundled BTCUSDT recordings, both as
   the connector runs by default and as the flow runs it (top-5 views, no deltas).
2. Normalized events per second through the whole demo flow at ``--speed 0``:
   replay server -> websocket -> connector -> Bytewax -> features -> forecasts -> sink.
3. Forecast records per second through the flow with the attention model on.
4. Pending Ethereum transactions per second through parse and mempool features.
"""

from __future__ import annotations

import math
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.venues.binance.bench import depth_throughput
from flows import metrics
from flows.config import AppConfig

DATA = Path(__file__).resolve().parent.parent / "data" / "binance" / "hftbacktest"
CHAIN = Path(__file__).resolve().parent.parent / "tests" / "data" / "deribit" / "schepal_options_data.csv"
FLOW_VIEW = {"book_view_depth": 5, "emit_deltas": False}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def depth_benchmarks(runs: int) -> list[dict[str, Any]]:
    cases = [
        (str(DATA / "spot" / "btcusdt_2024080*.gz"), "spot"),
        (str(DATA / "usdm" / "btcusdt_20240808.gz"), "usdm"),
    ]
    out = []
    for pattern, market in cases:
        out.append(depth_throughput(pattern, market, runs=runs))
        out.append(depth_throughput(pattern, market, runs=runs, **FLOW_VIEW))
    return out


class _CountingPartition(StatelessSinkPartition[Any]):
    def __init__(self, counter: list[int]) -> None:
        self._counter = counter

    def write_batch(self, items: list[Any]) -> None:
        self._counter[0] += len(items)


class _CountingSink(DynamicSink[Any]):
    def __init__(self) -> None:
        self.records = [0]

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountingPartition:
        return _CountingPartition(self.records)


def flow_benchmark() -> dict[str, Any]:
    """The demo daemon at replay speed 0, timed from start to the end of the data.

    The replay server runs in its own process, as an exchange would, so it does not
    share this process's GIL with the flow being measured.
    """
    import argparse

    from flows.commands import demo_config, demo_recordings
    from flows.runner import run_daemon

    server = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "replay-server", "--speed", "0", "--from",
         *map(str, demo_recordings())],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        ready = server.stdout.readline() if server.stdout else ""
        match = re.search(r":(\d+)\s*$", ready)
        if match is None:
            raise RuntimeError(f"replay server did not start: {ready!r}")
        cfg: AppConfig = demo_config(
            # The model runs once a minute per underlying: its load time would only blur events/s.
            int(match.group(1)), argparse.Namespace(metrics_port=None, metrics_host="127.0.0.1", checkpoint="none")
        )
        sink = _CountingSink()
        t0 = time.perf_counter()
        run_daemon(cfg, [sink], stop=threading.Event())
        elapsed = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=10)
    events = frames = 0
    for proto in metrics.FEEDS.protocols().values():
        stats = proto.stats()
        frames += stats.frames
        events += sum(sum(i.events.values()) for i in stats.instruments.values())
    return {
        "seconds": round(elapsed, 2),
        "frames": frames,
        "events": events,
        "records": sink.records[0],
        "frames_per_s": round(frames / elapsed),
        "events_per_s": round(events / elapsed),
    }


def model_flow_benchmark(underlyings: int = 4, hours: float = 4.5) -> dict[str, Any]:
    """Forecast records per second through the flow with the attention model on, from events in memory.

    SYNTHETIC books (:mod:`flows.synthetic`), since the model needs 4 h of bars
    before its first window: ``underlyings`` instruments of ``hours`` of 1 s
    snapshots, interleaved in time, through features, baselines, the batched
    model and a counting sink.
    """
    from bytewax.testing import TestingSource, run_main

    from flows.config import FeedConfig
    from flows.dataflow import build_flow
    from flows.runner import load_model
    from flows.synthetic import synthetic_book_snapshots

    symbols = tuple(f"X{i}USDT" for i in range(underlyings))
    cfg = AppConfig(feeds=(FeedConfig(market="spot", symbols=symbols),))
    model = load_model(cfg)
    steps = int(hours * 3600)
    streams = [synthetic_book_snapshots(steps, symbol=sym, seed=i) for i, sym in enumerate(symbols)]
    events = [ev for group in zip(*streams) for ev in group]
    sink = _CountingSink()
    batches_before = metrics.MODEL_BATCH_SIZE.labels("attention")._sum.get()  # noqa: SLF001
    t0 = time.perf_counter()
    run_main(build_flow(cfg, [sink], source=TestingSource(events, batch_size=1024), model=model))
    elapsed = time.perf_counter() - t0
    windows = metrics.MODEL_BATCH_SIZE.labels("attention")._sum.get() - batches_before  # noqa: SLF001
    return {
        "synthetic": True,
        "underlyings": underlyings,
        "events": len(events),
        "records": sink.records[0],
        "model_windows": int(windows),
        "seconds": round(elapsed, 2),
        "events_per_s": round(len(events) / elapsed),
        "records_per_s": round(sink.records[0] / elapsed),
    }


def mempool_benchmark(n: int = 50_000, runs: int = 3) -> dict[str, Any]:
    """Pending Ethereum transactions per second through parse (EthereumProtocol) + features (MempoolFeatures).

    SYNTHETIC notifications shaped like a node's full-object ``newPendingTransactions``
    (no recording of such a stream exists offline): EIP-1559 transfers, and every
    tenth a Uniswap V2 ``swapExactETHForTokens`` call; one block head first, so the
    effective tip is computed.
    """
    import json

    from connectors.record.frames import Frame
    from connectors.venues.ethereum import EthereumProtocol
    from model.mempool import MempoolFeatures

    pending, heads = "0x239b" + "0" * 28, "0xcd0c" + "0" * 28
    router, swap = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d", "0x7ff36ab5" + "00" * 128

    def note(sub: str, result: dict) -> bytes:
        return json.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                           "params": {"subscription": sub, "result": result}}).encode()

    frames = [note(heads, {"number": "0x1", "hash": "0x" + "11" * 32, "parentHash": "0x" + "00" * 32,
                           "timestamp": "0x6553f100", "baseFeePerGas": hex(20 * 10**9), "gasUsed": "0xe4e1c0",
                           "gasLimit": "0x1c9c380", "miner": "0x" + "00" * 20})]
    for i in range(n):
        is_swap = i % 10 == 0
        frames.append(note(pending, {
            "blockHash": None, "blockNumber": None, "from": f"0x{i:040x}", "gas": "0x30d40" if is_swap else "0x5208",
            "maxFeePerGas": hex(40 * 10**9), "maxPriorityFeePerGas": hex((1 + i % 3) * 10**9),
            "gasPrice": hex(40 * 10**9), "hash": f"0x{i:064x}", "input": swap if is_swap else "0x",
            "nonce": hex(i % 50), "to": router if is_swap else f"0x{i + 1:040x}", "transactionIndex": None,
            "value": hex(10**17 * (1 + i % 7)), "type": "0x2"}))
    best = math.inf
    rows = 0
    for _ in range(runs):
        proto = EthereumProtocol()
        proto.connection_opened(0)
        proto.frames_to_send()
        proto.receive_frame(b'{"jsonrpc":"2.0","id":1,"result":"%s"}' % pending.encode(), 1)
        proto.receive_frame(b'{"jsonrpc":"2.0","id":2,"result":"%s"}' % heads.encode(), 2)
        features = MempoolFeatures("ethereum")
        t0 = time.perf_counter()
        rows = 0
        for k, payload in enumerate(frames):
            # 2,000 transactions a second of receive time: a busy mainnet mempool.
            for ev in proto.feed_frame(Frame(10 + k * 500_000, "bench", "recv", payload)):
                rows += len(features.on_event(ev))
        best = min(best, time.perf_counter() - t0)
    return {"synthetic": True, "transactions": n, "feature_rows": rows, "best_s": round(best, 3),
            "tx_per_s": round(n / best)}


def surface_benchmarks(quick: bool) -> dict[str, Any]:
    """Full-chain SVI refits on the real 2020-05-21 Deribit BTC chain (326 options)."""
    from connectors.chains import read_chain
    from model.surface.bench import surface_benchmark

    chain = read_chain(CHAIN)
    return surface_benchmark(chain.quotes, chain.now_ns, runs=3 if quick else 7)


def run_all(quick: bool = False) -> dict[str, Any]:
    from flows.bench_sinks import sink_benchmark
    from model.nn.bench import inference_benchmark

    return {
        "machine": machine(),
        "binance_depth": depth_benchmarks(runs=3 if quick else 7),
        "demo_flow_speed0": flow_benchmark(),
        "model_flow": model_flow_benchmark(hours=4.5 if not quick else 4.4),
        "mempool": mempool_benchmark(n=20_000 if quick else 50_000),
        "surface": surface_benchmarks(quick),
        "sinks": sink_benchmark(quick=quick),
        "inference": inference_benchmark(repeats=3 if quick else 7),
    }


def render_text(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}", "",
             "Binance depth: decode + sync + book, one core, frames in memory"]
    for r in results["binance_depth"]:
        mode = "flow (top-5 views)" if r["options"] else "default (deltas)"
        lines.append(f"  {r['market']:<5} {r['symbol']:<8} {mode:<19} {r['msgs_per_s']:>9,} msgs/s "
                     f"({r['levels_per_message']} levels/msg, decode alone {r['decode_only_msgs_per_s']:,}/s)")
    f = results["demo_flow_speed0"]
    lines += ["", "Demo flow at --speed 0 (replay server -> connectors -> Bytewax -> forecasts)",
              f"  {f['events_per_s']:,} events/s, {f['frames_per_s']:,} frames/s "
              f"({f['events']:,} events, {f['records']:,} records in {f['seconds']} s)"]
    mf = results["model_flow"]
    lines += ["", f"Flow with the attention model on (SYNTHETIC books, {mf['underlyings']} underlyings, events in memory)",
              f"  {mf['records_per_s']:,} forecast records/s, {mf['events_per_s']:,} events/s "
              f"({mf['records']:,} records, {mf['model_windows']:,} model windows in {mf['seconds']} s)"]
    mp = results["mempool"]
    lines += ["", "Pending Ethereum transactions through parse + mempool features (SYNTHETIC notifications)",
              f"  {mp['tx_per_s']:,} tx/s ({mp['transactions']:,} transactions, {mp['feature_rows']:,} rows)"]
    surf = results["surface"]
    lines += ["", f"Surface refit, real Deribit BTC chain ({surf['chain']['options']} options; and each expiry "
                  "also copied to +12 h), best ms: cold, warm from the same chain, warm from the chain N s earlier"]

    def warm(r: dict) -> str:
        return "   ".join([f"same {r['warm_same']['best_ms']}"]
                          + [f"{lag} {c['best_ms']}" for lag, c in r.get("warm_stream", {}).items()])

    for backend, r in surf["backends"].items():
        rep = r["replicated"]
        lines.append(f"  {backend:<6} {r['cold']['options']:>4} options: cold {r['cold']['best_ms']} ms   warm {warm(r)}   "
                     f"first call {r['first_call_ms']} ms")
        lines.append(f"  {'':<6} {rep['cold']['options']:>4} options: cold {rep['cold']['best_ms']} ms   warm {warm(rep)}")
    sinks = results["sinks"]
    lines += ["", f"Sinks: records/s ({sinks['records']:,} records of ~{sinks['record_bytes']} bytes)"]
    for name, r in sinks["sinks"].items():
        lines.append(f"  {name:<18} {r['records_per_s']:>9,} records/s")
    lines.extend(f"  {name:<18} skipped: {why}" for name, why in sinks["skipped"].items())
    inf = results["inference"]
    lines += ["", "Forecaster inference (shipped checkpoint, one jax.jit over the split state)"]
    for key in ("batch_1", "batch_8", "batch_64"):
        r = inf[key]
        lines.append(f"  {key:<9} {r['us_per_window']:>8} us/window   p99 {r['p99_ms']} ms/batch")
    return "\n".join(lines)
