"""Depth-path throughput of :class:`BinanceProtocol` on a real recording.

Measures what one core sustains on the hot path: ``receive_frame`` on depth frames
(decode + sequencing + book update + BookDelta), after the book is synced, with the
frames pre-loaded in memory. Run as::

    python -m connectors.venues.binance.bench 'data/binance/hftbacktest/spot/btcusdt_*.gz' spot

The book kernel in use (compiled or pure Python, see :mod:`connectors.book.l2`) is
reported; ``VOLCAST_PURE_PYTHON=1`` measures the pure-Python one.
"""

from __future__ import annotations

import glob
import json
import statistics
import sys
import time
from collections.abc import Iterable
from typing import Any

from connectors.book import l2
from connectors.record.detect import merge_recordings
from connectors.record.frames import Frame
from connectors.venues.binance import parse
from connectors.venues.binance.protocol import BinanceProtocol, MarketName


def depth_throughput(
    path_glob_or_frames: str | Iterable[Frame], market: MarketName, *, runs: int = 5, **options: Any
) -> dict[str, Any]:
    """Depth messages per second through ``receive_frame`` on one core.

    Parameters
    ----------
    path_glob_or_frames
        A glob of recordings of one connection with one symbol (e.g. hftbacktest's
        ``.gz`` files of consecutive days, merged by receive time), or its frames.
    market
        ``"spot"``, ``"usdm"`` or ``"coinm"``.
    runs
        Timed passes, each on a freshly synced protocol; the best is reported.
    options
        Passed to :class:`BinanceProtocol` (e.g. ``book_view_depth=20``).
    """
    if isinstance(path_glob_or_frames, str):
        paths = sorted(glob.glob(path_glob_or_frames))
        if not paths:
            raise ValueError(f"no file matches {path_glob_or_frames!r}")
        frames = list(merge_recordings(paths))
    else:
        frames = list(path_glob_or_frames)
    def is_depth(f: Frame) -> bool:
        return f.kind == "recv" and b"@depth" in f.payload[:48]

    depth = [f for f in frames if is_depth(f)]
    if not depth:
        raise ValueError("no depth frames in the input")
    stream = parse.ENVELOPE.decode(depth[0].payload).stream or ""
    symbol, channel = parse.split_stream(stream)
    # Untimed warm-up: everything up to and including the frame that synced the book.
    cut = 0
    for i, f in enumerate(frames):
        if f.kind == "rest":
            cut = i + 1
            break
    warmup = [f for f in frames[:cut] if f.kind != "recv" or is_depth(f)]
    timed = [(f.payload, f.ts_recv_ns) for f in frames[cut:] if is_depth(f)]
    levels = sum(len(m.b) + len(m.a) for m in (parse.DEPTH_ENVELOPE.decode(p).data for p, _ in timed))

    rates = []
    stats = None
    for _ in range(runs):
        proto = BinanceProtocol(market, [symbol], depth_stream=channel, **options)
        if not any(f.kind == "open" for f in warmup):  # hftbacktest files record none
            proto.connection_opened(frames[0].ts_recv_ns)
        for f in warmup:
            proto.feed_frame(f)
        receive = proto.receive_frame
        t0 = time.perf_counter()
        for payload, ts in timed:
            receive(payload, ts)
        rates.append(len(timed) / (time.perf_counter() - t0))
        stats = proto.stats().instruments[symbol]
    assert stats is not None
    if stats.state != "synced" or stats.gaps:
        raise RuntimeError(f"book did not stay synced during the benchmark: {stats}")

    t0 = time.perf_counter()
    for payload, _ in timed:
        parse.DEPTH_ENVELOPE.decode(payload)
    decode_rate = len(timed) / (time.perf_counter() - t0)
    return {
        "market": market,
        "symbol": symbol,
        "stream": stream,
        "messages": len(timed),
        "levels_per_message": round(levels / len(timed), 1),
        "msgs_per_s": round(max(rates)),
        "msgs_per_s_median": round(statistics.median(rates)),
        "decode_only_msgs_per_s": round(decode_rate),
        "runs": runs,
        "options": options,
        "book_kernel": "compiled" if l2.COMPILED else "python",
    }


if __name__ == "__main__":
    print(json.dumps(depth_throughput(sys.argv[1], sys.argv[2]), indent=2))  # type: ignore[arg-type]
