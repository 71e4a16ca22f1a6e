"""The replay server's sans-I/O state: what the recordings hold, and each symbol's book.

No asyncio here; :mod:`connectors.replay.server` is the shell that owns the sockets.

>>> book = RecordedBook()
>>> book.on_snapshot(b'{"lastUpdateId":10,"bids":[["1.0","2"]],"asks":[["1.1","3"]]}')
>>> book.on_diff(decode_diff(b'{"U":11,"u":12,"b":[["1.0","0"]],"a":[["1.2","4"]]}'))
>>> book.render(5)
b'{"lastUpdateId":12,"bids":[],"asks":[["1.1","3"],["1.2","4"]]}'
"""

from __future__ import annotations

import heapq
import logging
import os
import re
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import msgspec

from connectors.record.detect import detect_venue, merge_recordings
from connectors.record.frames import Frame
from connectors.record.hftbacktest import decode_envelope

log = logging.getLogger(__name__)

DIFF_STREAM = re.compile(r"[a-z0-9_]+@depth(?:@\d+ms)?")  # not the partial @depth5/10/20
# Recent diffs kept per symbol: a snapshot recorded after the diff that bridges it
# (the collector fetched it while the stream ran) needs the diffs just before it.
RECENT_DIFFS = 1000


class _Snapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[tuple[str, str]]
    asks: list[tuple[str, str]]
    E: int | None = None  # futures only: event time, ms
    T: int | None = None  # futures only: transaction time, ms


class Diff(msgspec.Struct):
    """A Binance depth diff (``depthUpdate``), the fields the book needs."""

    U: int  # first update id in the event
    u: int  # final update id in the event
    b: list[tuple[str, str]]
    a: list[tuple[str, str]]
    pu: int | None = None  # futures only: the previous event's u
    E: int | None = None
    T: int | None = None


_snapshot_decoder = msgspec.json.Decoder(_Snapshot)
decode_diff = msgspec.json.Decoder(Diff).decode


def _set_levels(side: dict[str, str], levels: list[tuple[str, str]]) -> None:
    for price, qty in levels:
        if float(qty) == 0.0:
            side.pop(price, None)
        else:
            side[price] = qty


class RecordedBook:
    """One symbol's book as the recordings tell it, for REST depth answers.

    Starts at a recorded snapshot and applies the diffs replayed after it with
    Binance's sequencing rules (spot ``U <= last + 1``, futures ``pu <= last``); a
    break leaves it unsynced until the next recorded snapshot. Price levels keep the
    venue's strings, so a rebuilt answer is formatted as Binance formats it.
    """

    def __init__(self) -> None:
        self.recent: deque[Diff] = deque(maxlen=RECENT_DIFFS)
        self.pending: list[Diff] = []  # diffs before the snapshot line that it predates
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.last_id = 0
        self.times: tuple[int | None, int | None] = (None, None)  # futures E, T
        self.futures = False
        self.synced = False
        self.verbatim: bytes | None = None  # the recorded body, while still current
        self.levels = 0  # levels a side in the recorded body

    def on_snapshot(self, body: bytes) -> None:
        """Reset to a recorded snapshot (never merge: a merged book keeps ghost levels)."""
        snap = _snapshot_decoder.decode(body)
        self.bids, self.asks = dict(snap.bids), dict(snap.asks)
        self.last_id = snap.lastUpdateId
        self.futures = snap.E is not None
        self.times = (snap.E, snap.T)
        self.verbatim = body
        self.levels = max(len(snap.bids), len(snap.asks))
        # Applied with the first diff after the snapshot; until then the recorded body
        # is what Binance answered at this point of the recording.
        self.pending = [d for d in self.recent if d.u > self.last_id]
        self.synced = True

    def on_diff(self, diff: Diff) -> str | None:
        """Apply a replayed diff; return a description of a sequence break, if any."""
        self.recent.append(diff)
        if not self.synced:
            return None
        todo, self.pending = [*self.pending, diff], []
        for d in todo:
            if d.u <= self.last_id:
                continue
            broken = d.pu > self.last_id if d.pu is not None else d.U > self.last_id + 1
            if broken:
                self.synced = False
                self.verbatim = None
                return f"diff U={d.U} u={d.u} pu={d.pu} does not follow {self.last_id}"
            _set_levels(self.bids, d.b)
            _set_levels(self.asks, d.a)
            self.last_id = d.u
            self.times = (d.E, d.T)
            self.verbatim = None
        return None

    def render(self, limit: int) -> bytes | None:
        """The REST body for ``limit`` levels a side; ``None`` while the book is unknown."""
        if not self.synced:
            return None
        if self.verbatim is not None and limit >= self.levels:
            return self.verbatim
        doc: dict[str, object] = {"lastUpdateId": self.last_id}
        if self.futures:
            doc["E"], doc["T"] = self.times
        doc["bids"] = heapq.nlargest(limit, self.bids.items(), key=lambda kv: float(kv[0]))
        doc["asks"] = heapq.nsmallest(limit, self.asks.items(), key=lambda kv: float(kv[0]))
        return msgspec.json.encode(doc)


@dataclass
class MarketInfo:
    """What the recordings hold for one Binance market."""

    symbols: set[str] = field(default_factory=set)
    streams: set[str] = field(default_factory=set)
    last_index: int = -1  # position of the market's last frame in the merged recordings


@dataclass
class Catalog:
    """The recordings' Binance connections and markets, from one pass over them."""

    conn_market: dict[str, str] = field(default_factory=dict)  # connection id -> market
    markets: dict[str, MarketInfo] = field(default_factory=dict)


def symbol_of(stream: str) -> str:
    """``btcusdt@depth@100ms`` -> ``BTCUSDT``."""
    return stream.partition("@")[0].upper()


def snapshot_key(frame: Frame) -> tuple[str, str] | None:
    """``(market, SYMBOL)`` of a recorded Binance REST depth response, else ``None``."""
    if frame.url is None:
        return None
    venue = detect_venue(frame)
    parts = urlsplit(frame.url)
    if venue is None or venue[0] != "binance" or not parts.path.endswith("/depth"):
        return None
    symbol = parse_qs(parts.query).get("symbol", [""])[0].upper()
    return (venue[1], symbol) if symbol else None


def scan(paths: Iterable[str | os.PathLike[str]]) -> Catalog:
    """Read the recordings once: each connection's market, each market's symbols and streams."""
    conn_market: dict[str, str] = {}
    foreign: set[str] = set()  # connections of other venues
    conn_streams: dict[str, set[str]] = defaultdict(set)
    conn_last: dict[str, int] = {}
    markets: dict[str, MarketInfo] = defaultdict(MarketInfo)
    for i, frame in enumerate(merge_recordings(paths)):
        if frame.kind == "rest":
            key = snapshot_key(frame)
            if key is not None:
                markets[key[0]].symbols.add(key[1])
                markets[key[0]].last_index = i
            continue
        conn = frame.conn_id
        if conn not in conn_market and conn not in foreign:
            venue = detect_venue(frame)
            if venue is not None and venue[0] == "binance":
                conn_market[conn] = venue[1]
            elif venue is not None:
                foreign.add(conn)
        if frame.kind == "recv" and conn not in foreign:
            env = decode_envelope(frame.payload)
            if env is not None:
                conn_streams[conn].add(env.stream)
                conn_last[conn] = i
    for conn, streams in conn_streams.items():
        if conn not in conn_market:
            log.warning("skipping connection %s: cannot tell its Binance market", conn)
            continue
        info = markets[conn_market[conn]]
        info.streams |= streams
        info.symbols |= {symbol_of(s) for s in streams if not s.startswith("!")}
        info.last_index = max(info.last_index, conn_last[conn])
    return Catalog(conn_market, dict(markets))
