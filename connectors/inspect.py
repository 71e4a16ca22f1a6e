"""Run the sans-I/O cores over recordings and report each book's integrity.

Two passes over the files: the first learns, per connection, the venue and market
and which symbols and stream variants the recording holds (so each core subscribes
exactly what was recorded); the second feeds every frame, merged by receive time,
to its core. The report is what ``volcast inspect --json`` prints.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from connectors.errors import ConnectorError
from connectors.record.detect import detect_venue, merge_recordings, open_recording
from connectors.record.frames import Frame
from connectors.record.hftbacktest import decode_envelope
from connectors.venues.binance.protocol import BinanceProtocol

# Event venue names (what users pass to --venue) -> (venue, market) of the detector.
VENUES: dict[str, tuple[str, str]] = {
    "binance": ("binance", "spot"),
    "binance_usdm": ("binance", "usdm"),
    "binance_coinm": ("binance", "coinm"),
}
_NAME_OF = {v: k for k, v in VENUES.items()}
_DIFF_DEPTH = re.compile(r"depth(@\d+ms)?")


class InspectError(ConnectorError):
    """Nothing in the given files is something volcast can inspect."""


class _Feed:
    """What pass one learned about one venue/market of the recordings."""

    def __init__(self) -> None:
        self.symbols: dict[str, None] = {}  # ordered set
        self.depth_streams: Counter[str] = Counter()
        self.trade_streams: Counter[str] = Counter()

    def learn(self, frame: Frame) -> None:
        if frame.kind == "rest" and frame.url:
            for sym in parse_qs(urlsplit(frame.url).query).get("symbol", []):
                self.symbols.setdefault(sym.upper())
            return
        if frame.kind != "recv":
            return
        env = decode_envelope(frame.payload)
        if env is None or not env.stream:
            return
        sym, _, channel = env.stream.partition("@")
        if _DIFF_DEPTH.fullmatch(channel):  # not depth20@100ms: partial-book snapshots
            self.depth_streams[channel] += 1
        elif channel in ("trade", "aggTrade"):
            self.trade_streams[channel] += 1
        elif channel != "bookTicker":
            return
        self.symbols.setdefault(sym.upper())

    def protocol(self, market: str) -> BinanceProtocol:
        depth = self.depth_streams.most_common(1)[0][0] if self.depth_streams else "depth@100ms"
        trade = self.trade_streams.most_common(1)[0][0] if self.trade_streams else None
        return BinanceProtocol(market, list(self.symbols), depth_stream=depth, trade_stream=trade)


def _check_files(paths: Iterable[Path]) -> list[Path]:
    out = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"no such file: {p}")
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a directory; pass the recording files")
        out.append(p)
    return out


def inspect_files(paths: Iterable[str | os.PathLike[str]], venue: str | None = None) -> dict[str, Any]:
    """Feed every frame of ``paths`` to its venue's core; the integrity report.

    ``venue`` (``binance``, ``binance_usdm``, ``binance_coinm``) overrides detection.
    Raises ``FileNotFoundError``, ``RecordingFormatError`` or :class:`InspectError`
    when nothing can be inspected; problems inside the data go into ``errors``.
    """
    files = _check_files(Path(p) for p in paths)
    forced = VENUES[venue] if venue else None
    if venue and forced is None:
        raise InspectError(f"unknown venue {venue!r}; known: {', '.join(VENUES)}")

    errors: list[str] = []
    conn_venue: dict[str, tuple[str, str]] = {}
    feeds: dict[tuple[str, str], _Feed] = defaultdict(_Feed)
    for path in files:
        seen = 0
        for frame in open_recording(path):
            where = forced or conn_venue.get(frame.conn_id)
            if where is None:
                where = detect_venue(frame)
                if where is None:
                    continue
                conn_venue[frame.conn_id] = where
            if where not in _NAME_OF:
                errors.append(f"{path.name}: venue {where[0]} is not supported by inspect yet")
                break
            feeds[where].learn(frame)
            seen += 1
        if not seen and not any(e.startswith(f"{path.name}:") for e in errors):
            errors.append(f"{path.name}: no frames of a supported venue ({', '.join(VENUES)})")
    feeds = {k: f for k, f in feeds.items() if f.symbols}
    if not feeds:
        raise InspectError("; ".join(errors) or "no frames of a supported venue found")

    protocols = {where: feed.protocol(where[1]) for where, feed in feeds.items()}
    for frame in merge_recordings(files):
        where = forced or conn_venue.get(frame.conn_id)
        proto = protocols.get(where) if where else None
        if proto is not None:
            proto.feed_frame(frame)

    instruments: dict[str, Any] = {}
    for where, proto in protocols.items():
        stats = proto.stats()
        errors.extend(f"{stats.venue}: {e}" for e in stats.errors)
        for sym, s in stats.instruments.items():
            instruments[f"{stats.venue}:{sym}"] = {
                "messages": s.messages,
                "events": dict(s.events),
                "syncs": s.syncs,
                "gaps": s.gaps,
                "resyncs": s.resyncs,
                "crossed": s.crossed,
                "checksum_ok": s.checksum_ok,
                "checksum_failed": s.checksum_failed,
                "malformed": s.malformed,
                "best_bid": s.best_bid,
                "best_ask": s.best_ask,
                "state": s.state,
            }
    return {"files": [str(p) for p in files], "instruments": instruments, "errors": errors}


def render_text(report: dict[str, Any]) -> str:
    """The report as a table for a terminal."""
    lines = [f"{'instrument':<24} {'state':<10} {'msgs':>8} {'syncs':>5} {'gaps':>5} "
             f"{'resyncs':>7} {'crossed':>7} {'best bid':>14} {'best ask':>14}"]
    for iid, s in report["instruments"].items():
        bid = "-" if s["best_bid"] is None else f"{s['best_bid']:.8g}"
        ask = "-" if s["best_ask"] is None else f"{s['best_ask']:.8g}"
        lines.append(f"{iid:<24} {s['state']:<10} {s['messages']:>8} {s['syncs']:>5} {s['gaps']:>5} "
                     f"{s['resyncs']:>7} {s['crossed']:>7} {bid:>14} {ask:>14}")
    lines.extend(f"error: {e}" for e in report["errors"])
    return "\n".join(lines)
