"""Run the sans-I/O cores over recordings and report each book's integrity.

Two passes over the files: the first learns, per connection, the venue and market
and which symbols and stream variants the recording holds (so each core subscribes
exactly what was recorded); the second feeds every frame, merged by receive time,
to its core. The report is what ``volcast inspect --json`` prints.

Deribit (``DERIBIT.ws.1.0`` and its ``DERIBIT.0`` listing): one core per file set
checks every ``book`` change_id chain; each option's row also shows its last ticker
as normalized (IVs as decimals, prices in coin with the USD index beside them), and
``listed`` counts the instruments of the recorded ``get_instruments`` answers.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from connectors.errors import ConnectorError
from connectors.events import Event, Instrument, OptionTicker
from connectors.record.detect import detect_venue, merge_recordings, open_recording
from connectors.record.frames import Frame
from connectors.record.hftbacktest import decode_envelope
from connectors.venues.binance.protocol import BinanceProtocol
from connectors.venues.deribit import parse as deribit_parse
from connectors.venues.deribit.config import (
    FUTURE_CHANNELS,
    INTERVALS,
    KINDS,
    OPTION_CHANNELS,
)
from connectors.venues.deribit.protocol import DeribitProtocol

# Event venue names (what users pass to --venue) -> (venue, market) of the detector.
VENUES: dict[str, tuple[str, str]] = {
    "binance": ("binance", "spot"),
    "binance_usdm": ("binance", "usdm"),
    "binance_coinm": ("binance", "coinm"),
    "deribit": ("deribit", "all"),
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


class _DeribitFeed:
    """What pass one learned about the Deribit frames of the recordings."""

    def __init__(self) -> None:
        self.symbols: dict[str, None] = {}  # instruments and indices with notifications
        self.currencies: dict[str, None] = {}
        self.intervals: Counter[str] = Counter()
        self.listings = 0
        self.tickers: dict[str, OptionTicker] = {}  # pass two: the last ticker of each option
        self.listed: Counter[str] = Counter()  # pass two: listed instruments by kind

    def learn(self, frame: Frame) -> None:
        if frame.kind == "rest" and frame.url:
            for cur in parse_qs(urlsplit(frame.url).query).get("currency", []):
                self.currencies.setdefault(cur.upper())
            self.listings += 1
            return
        if frame.kind != "recv" or not frame.payload.startswith(b'{"jsonrpc"'):
            return
        try:
            env = deribit_parse.ENVELOPE.decode(frame.payload)
            channel = deribit_parse.PARAMS.decode(env.params).channel if env.method == "subscription" else None
        except (msgspec.DecodeError, UnicodeError):  # malformed frames are the core's to count
            return
        if not channel:
            return
        parts = channel.split(".")
        if parts[0] in ("book", "ticker", "trades") and len(parts) == 3:
            info = deribit_parse.parse_name(parts[1])
            if info is not None:
                self.currencies.setdefault(info.currency)
            self.intervals[parts[2]] += 1
            self.symbols.setdefault(parts[1])
        elif len(parts) == 2:  # deribit_volatility_index.btc_usd, deribit_price_index.btc_usd
            self.symbols.setdefault(channel)

    def protocol(self, market: str) -> DeribitProtocol:
        interval = self.intervals.most_common(1)[0][0] if self.intervals else "100ms"
        return DeribitProtocol(
            currencies=list(self.currencies) or ["BTC", "ETH"], kinds=KINDS,
            option_channels=OPTION_CHANNELS, future_channels=FUTURE_CHANNELS,
            interval=interval if interval in INTERVALS else "100ms",
        )

    def observe(self, events: list[Event]) -> None:
        for ev in events:
            if isinstance(ev, OptionTicker):
                self.tickers[ev.symbol] = ev
            elif isinstance(ev, Instrument) and ev.is_active:
                self.listed[ev.instrument_kind] += 1


def _ticker_row(t: OptionTicker) -> dict[str, Any]:
    """The normalized units of a ticker, for a human to check at a glance."""
    return {
        "mark_iv": t.mark_iv, "bid_iv": t.bid_iv, "ask_iv": t.ask_iv,
        "mark_price": t.mark_price, "best_bid_price": t.best_bid_price,
        "best_ask_price": t.best_ask_price, "price_unit": t.price_unit,
        "underlying_price": t.underlying_price, "index_price": t.index_price,
        "mark_price_usd": t.mark_price * t.index_price, "delta": t.delta,
    }


def _check_files(paths: Iterable[Path]) -> list[Path]:
    out = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"no such file: {p}")
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a directory; pass the recording files")
        out.append(p)
    return out


def _replay(
    paths: Iterable[str | os.PathLike[str]], venue: str | None
) -> tuple[list[Path], dict[tuple[str, str], _Feed | _DeribitFeed],
           dict[tuple[str, str], BinanceProtocol | DeribitProtocol], list[str]]:
    """Both passes over the files: learn each feed, then feed every frame to its core."""
    files = _check_files(Path(p) for p in paths)
    forced = VENUES.get(venue) if venue else None
    if venue and forced is None:
        raise InspectError(f"unknown venue {venue!r}; known: {', '.join(VENUES)}")

    errors: list[str] = []
    conn_venue: dict[str, tuple[str, str]] = {}
    feeds: dict[tuple[str, str], _Feed | _DeribitFeed] = {}
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
            feed = feeds.get(where)
            if feed is None:
                feed = feeds[where] = _DeribitFeed() if where[0] == "deribit" else _Feed()
            feed.learn(frame)
            seen += 1
        if not seen and not any(e.startswith(f"{path.name}:") for e in errors):
            errors.append(f"{path.name}: no frames of a supported venue ({', '.join(VENUES)})")
    feeds = {k: f for k, f in feeds.items() if f.symbols or isinstance(f, _DeribitFeed) and f.listings}
    if not feeds:
        raise InspectError("; ".join(errors) or "no frames of a supported venue found")

    protocols: dict[tuple[str, str], BinanceProtocol | DeribitProtocol] = {
        where: feed.protocol(where[1]) for where, feed in feeds.items()}
    for frame in merge_recordings(files):
        where = forced or conn_venue.get(frame.conn_id)
        proto = protocols.get(where) if where else None
        if proto is not None and where is not None:
            events = proto.feed_frame(frame)
            feed = feeds[where]
            if isinstance(feed, _DeribitFeed):
                feed.observe(events)

    return files, feeds, protocols, errors


def recorded_option_tickers(paths: Iterable[str | os.PathLike[str]]) -> list[OptionTicker]:
    """The latest normalized Deribit option ticker per option in recordings (``volcast surface``)."""
    _files, feeds, _protocols, errors = _replay(paths, "deribit")
    tickers = [t for f in feeds.values() if isinstance(f, _DeribitFeed) for t in f.tickers.values()]
    if not tickers:
        raise InspectError("; ".join(errors) or "the recordings hold no Deribit option ticker messages")
    return tickers


def inspect_files(paths: Iterable[str | os.PathLike[str]], venue: str | None = None) -> dict[str, Any]:
    """Feed every frame of ``paths`` to its venue's core; the integrity report.

    ``venue`` (``binance``, ``binance_usdm``, ``binance_coinm``, ``deribit``) overrides detection.
    Raises ``FileNotFoundError``, ``RecordingFormatError`` or :class:`InspectError`
    when nothing can be inspected; problems inside the data go into ``errors``.
    """
    files, feeds, protocols, errors = _replay(paths, venue)
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
            feed = feeds[where]
            if isinstance(feed, _DeribitFeed) and sym in feed.tickers:
                instruments[f"{stats.venue}:{sym}"]["ticker"] = _ticker_row(feed.tickers[sym])
    report: dict[str, Any] = {"files": [str(p) for p in files], "instruments": instruments, "errors": errors}
    listed = {w[0]: dict(sorted(f.listed.items()))
              for w, f in feeds.items() if isinstance(f, _DeribitFeed) and f.listed}
    if listed:
        report["listed"] = listed
    return report


def render_text(report: dict[str, Any]) -> str:
    """The report as a table for a terminal."""
    w = max([24, *(len(iid) for iid in report["instruments"])])  # Deribit option names are long
    lines = [f"{'instrument':<{w}} {'state':<10} {'msgs':>8} {'syncs':>5} {'gaps':>5} "
             f"{'resyncs':>7} {'crossed':>7} {'best bid':>14} {'best ask':>14}"]
    for iid, s in report["instruments"].items():
        bid = "-" if s["best_bid"] is None else f"{s['best_bid']:.8g}"
        ask = "-" if s["best_ask"] is None else f"{s['best_ask']:.8g}"
        lines.append(f"{iid:<{w}} {s['state']:<10} {s['messages']:>8} {s['syncs']:>5} {s['gaps']:>5} "
                     f"{s['resyncs']:>7} {s['crossed']:>7} {bid:>14} {ask:>14}")
    lines.extend(f"error: {e}" for e in report["errors"])
    return "\n".join(lines)
