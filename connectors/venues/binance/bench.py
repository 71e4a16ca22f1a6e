"""Depth-path throughput of :class:`BinanceProtocol` on a real recording.

Measures what one core sustains on the hot path: ``receive_frame`` on depth frames
(decode + sequencing + book update + BookDelta), after the book is synced, with the
frames pre-loaded in memory. Run as::

    python -m connectors.venues.binance.bench 'tests/data/binance/spot/btcusdt_*.gz' spot
"""

from __future__ import annotations

import glob
import gzip
import json
import statistics
import sys
import time
from collections.abc import Iterable
from typing import Any

from connectors.record.frames import Frame
from connectors.venues.binance import parse
from connectors.venues.binance.protocol import BinanceProtocol, MarketName


def load_hftbacktest(paths: Iterable[str]) -> list[Frame]:
    """Frames of hftbacktest ``<recv_ns> <json>`` gzip files, read as one connection.

    The inline REST snapshot line (``{"lastUpdateId":...}``, no symbol) becomes a
    ``rest`` frame whose URL names the symbol of the file's first stream.
    """
    frames: list[Frame] = []
    symbol = ""
    for path in paths:
        with gzip.open(path, "rb") as f:
            for line in f:
                ts_text, _, payload = line.rstrip(b"\n").partition(b" ")
                ts = int(ts_text)
                if payload.startswith(b'{"lastUpdateId"'):
                    frames.append(Frame(ts, path, "rest", payload, f"/depth?symbol={symbol}"))
                    continue
                if not frames:
                    symbol = json.loads(payload)["stream"].partition("@")[0].upper()
                    frames.append(Frame(ts, path, "open", b"", None))
                frames.append(Frame(ts, path, "recv", payload))
    return frames


def depth_throughput(
    path_glob_or_frames: str | Iterable[Frame], market: MarketName, *, runs: int = 5, **options: Any
) -> dict[str, Any]:
    """Depth messages per second through ``receive_frame`` on one core.

    Parameters
    ----------
    path_glob_or_frames
        A glob of hftbacktest ``.gz`` files (sorted, read as one connection), or
        frames of one connection with one symbol.
    market
        ``"spot"``, ``"usdm"`` or ``"coinm"``.
    runs
        Timed passes, each on a freshly synced protocol; the best is reported.
    options
        Passed to :class:`BinanceProtocol` (e.g. ``book_view_depth=20``).
    """
    if isinstance(path_glob_or_frames, str):
        frames = load_hftbacktest(sorted(glob.glob(path_glob_or_frames)))
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
    }


if __name__ == "__main__":
    print(json.dumps(depth_throughput(sys.argv[1], sys.argv[2]), indent=2))  # type: ignore[arg-type]
