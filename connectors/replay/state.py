"""The replay server's sans-I/O state: what the recordings hold, and each symbol's book.

No asyncio here; :mod:`connectors.replay.server` (and the per-protocol modules) are
the shells that own the sockets. Binance: :class:`RecordedBook` per symbol for REST
depth answers. Deribit: :class:`DeribitRecordings` (channels, instruments and
``get_instruments`` listings found in the recordings) and :class:`RecordedDeribitBook`
per book channel, for the snapshot a late (re)subscription gets. An Ethereum node:
:class:`connectors.replay.ethereum.EthereumRecordings`. mempool.space needs nothing
beyond its connections (:class:`Catalog`).

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
from connectors.replay.ethereum import EthereumRecordings
from connectors.venues.deribit import parse as deribit_parse
from connectors.venues.deribit.schemas import BookData

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


DERIBIT = "deribit"  # the "market" of Deribit connections in a Catalog
ETHEREUM = "ethereum"  # ... of an Ethereum node's connections
BITCOIN = "bitcoin"  # ... of mempool.space connections
_ONE_ENDPOINT = (DERIBIT, ETHEREUM, BITCOIN)  # venues detected as (venue, "all")


class _RpcFrame(msgspec.Struct):
    """The few members of a Deribit JSON-RPC frame the replay needs to route it."""

    method: str | None = None
    id: int | str | None = None
    params: msgspec.Raw = msgspec.Raw()
    result: msgspec.Raw = msgspec.Raw()
    usIn: int | None = None
    usOut: int | None = None


class _Channel(msgspec.Struct):
    channel: str = ""
    data: msgspec.Raw = msgspec.Raw()


class _Kind(msgspec.Struct):
    kind: str = ""


_rpc_decoder = msgspec.json.Decoder(_RpcFrame)
_channel_decoder = msgspec.json.Decoder(_Channel)
_items_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_kind_decoder = msgspec.json.Decoder(_Kind)
_book_decoder = msgspec.json.Decoder(BookData)


def decode_rpc(payload: bytes) -> tuple[str | None, str | None, msgspec.Raw]:
    """``(method, channel, data)`` of a Deribit frame; ``(None, None, Raw())`` if not one.

    >>> decode_rpc(b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"c","data":1}}')[:2]
    ('subscription', 'c')
    """
    try:
        frame = _rpc_decoder.decode(payload)
        if frame.method != "subscription":
            return frame.method, None, msgspec.Raw()
        params = _channel_decoder.decode(frame.params)
    except msgspec.DecodeError:
        return None, None, msgspec.Raw()
    return frame.method, params.channel or None, params.data


class Listing(msgspec.Struct):
    """One recorded ``public/get_instruments`` answer, its elements kept as raw bytes."""

    index: int  # position of the frame in the merged recordings
    currency: str  # upper case
    kind: str | None  # the request's kind; None: every kind
    items: list[tuple[str, bytes]]  # (kind, raw element)
    us_in: int | None = None
    us_out: int | None = None


@dataclass
class DeribitRecordings:
    """What the recordings hold of Deribit: channels, instruments and listings."""

    channels: set[str] = field(default_factory=set)  # channels with recorded notifications
    acked: set[str] = field(default_factory=set)  # channels a recorded subscribe ack listed
    instruments: set[str] = field(default_factory=set)  # instrument names in those channels
    listings: list[Listing] = field(default_factory=list)
    first_ns: int | None = None  # receive time of the first Deribit frame
    # (connection, request id) -> (method, currency, kind) of recorded requests
    _requests: dict[tuple[str, int | str], tuple[str, str, str | None]] = field(default_factory=dict)

    @property
    def known(self) -> set[str]:
        """Channels a subscription may get: recorded, or acked by Deribit (silent ones)."""
        return self.channels | self.acked

    def learn(self, frame: Frame, index: int) -> None:
        """Take one frame of a Deribit connection (or a REST listing) into account."""
        if self.first_ns is None:
            self.first_ns = frame.ts_recv_ns
        if frame.kind == "rest":
            url = urlsplit(frame.url or "")
            if url.path.endswith("/public/get_instruments"):
                query = parse_qs(url.query)
                kind = query.get("kind", [None])[0]
                self._listing(index, query.get("currency", [""])[0], kind, frame.payload)
            return
        try:
            rpc = _rpc_decoder.decode(frame.payload)
        except msgspec.DecodeError:
            return
        if frame.kind == "sent":
            if rpc.id is None:
                return
            if rpc.method == "public/get_instruments":
                try:
                    p = deribit_parse.INSTRUMENTS_PARAMS.decode(rpc.params)
                except msgspec.DecodeError:
                    return
                self._requests[(frame.conn_id, rpc.id)] = (rpc.method, p.currency, p.kind)
            elif rpc.method == "public/subscribe":
                self._requests[(frame.conn_id, rpc.id)] = (rpc.method, "", None)
            return
        if frame.kind != "recv":
            return
        if rpc.method == "subscription":
            _, channel, _ = decode_rpc(frame.payload)
            if channel:
                self.channels.add(channel)
                parts = channel.split(".")
                if parts[0] in ("book", "ticker", "trades") and len(parts) == 3:
                    self.instruments.add(parts[1])
            return
        asked = self._requests.pop((frame.conn_id, rpc.id), None) if rpc.id is not None else None
        if asked is None:
            return
        if asked[0] == "public/get_instruments":
            self._listing(index, asked[1], asked[2], frame.payload)
            return
        try:
            channels = deribit_parse.STRINGS.decode(rpc.result)
        except msgspec.DecodeError:
            return
        self.acked.update(channels)
        for channel in channels:
            parts = channel.split(".")
            if parts[0] in ("book", "ticker", "trades") and len(parts) == 3:
                self.instruments.add(parts[1])

    def _listing(self, index: int, currency: str, kind: str | None, body: bytes) -> None:
        try:
            rpc = _rpc_decoder.decode(body)
            raw_items = _items_decoder.decode(rpc.result)
            items = [(_kind_decoder.decode(r).kind, bytes(r)) for r in raw_items]
        except msgspec.DecodeError as exc:
            log.warning("skipping a malformed get_instruments answer: %s", exc)
            return
        self.listings.append(Listing(index, currency.upper(), kind, items, rpc.usIn, rpc.usOut))

    def listing(self, currency: str, kind: str | None, position: int) -> Listing | None:
        """The recorded listing to answer with: the latest at or before ``position``
        for this currency and kind, else the earliest; None if none was recorded."""
        fits = [x for x in self.listings
                if x.currency == currency.upper() and (x.kind is None or x.kind == kind)]
        before = [x for x in fits if x.index <= position]
        if before:
            return before[-1]
        return fits[0] if fits else None

    def answer_listing(self, currency: str, kind: str | None, position: int,
                       now_us: int) -> tuple[list[bytes], int, int]:
        """``(elements, usIn, usOut)`` of a ``get_instruments`` answer.

        From a recorded listing when there is one (its elements byte for byte, its
        own times); else built from the instrument names seen in the channels, with
        only what a name tells (kind, base, strike, type, 08:00 UTC expiry).
        """
        found = self.listing(currency, kind, position)
        if found is not None:
            items = [raw for k, raw in found.items if kind is None or k == kind]
            return items, found.us_in or now_us, found.us_out or now_us
        out = []
        for name in sorted(self.instruments):
            info = deribit_parse.parse_name(name)
            if info is None or info.currency.upper() != currency.upper():
                continue
            wire_kind = "option" if info.kind == "option" else "future"
            if kind is not None and kind != wire_kind:
                continue
            doc: dict[str, object] = {
                "instrument_name": name,
                "kind": wire_kind,
                "base_currency": info.base,
                "quote_currency": info.currency.partition("_")[2] or (
                    info.base if info.kind == "option" else "USD"),
                "is_active": True,
                "settlement_period": "perpetual" if info.kind == "perpetual" else "month",
                "expiration_timestamp": info.expiry_ms or deribit_parse.PERPETUAL_EXPIRY_MS,
            }
            if info.kind == "option":
                doc["strike"] = info.strike
                doc["option_type"] = "call" if info.option_type == "C" else "put"
            out.append(msgspec.json.encode(doc))
        return out, now_us, now_us


class RecordedDeribitBook:
    """One ``book.{instrument}.{interval}`` channel's book as the recordings tell it.

    Follows the recorded snapshot and the changes chained to it by
    ``prev_change_id``; a break leaves it unknown until the next recorded snapshot.
    :meth:`render` is the snapshot notification a client subscribing now would get.

    >>> book = RecordedDeribitBook()
    >>> book.on_data(b'{"type":"snapshot","timestamp":1,"instrument_name":"X","change_id":5,'
    ...              b'"bids":[["new",0.1,2.0]],"asks":[["new",0.2,1.0]]}')
    >>> book.on_data(b'{"type":"change","timestamp":2,"prev_change_id":5,"instrument_name":"X",'
    ...              b'"change_id":7,"bids":[["delete",0.1,0.0]],"asks":[["new",0.15,3.0]]}')
    >>> book.render("book.X.raw")
    b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.X.raw","data":{"type":"snapshot","timestamp":2,"instrument_name":"X","change_id":7,"bids":[],"asks":[["new",0.15,3.0],["new",0.2,1.0]]}}}'
    """

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.change_id = 0
        self.timestamp = 0
        self.name = ""
        self.synced = False

    def on_data(self, data: bytes) -> str | None:
        """Apply one recorded notification's ``data``; a description of a break, if any."""
        msg = _book_decoder.decode(data)
        if msg.type == "snapshot":
            self.bids = {px: amt for _, px, amt in msg.bids if amt}
            self.asks = {px: amt for _, px, amt in msg.asks if amt}
            self.synced = True
        elif not self.synced:
            return None
        elif msg.prev_change_id != self.change_id:
            self.synced = False
            return f"prev_change_id {msg.prev_change_id} does not follow {self.change_id}"
        else:
            for side, levels in ((self.bids, msg.bids), (self.asks, msg.asks)):
                for action, px, amt in levels:
                    if action == "delete" or not amt:
                        side.pop(px, None)
                    else:
                        side[px] = amt
        self.change_id, self.timestamp, self.name = msg.change_id, msg.timestamp, msg.instrument_name
        return None

    def render(self, channel: str) -> bytes | None:
        """The snapshot notification at the current replay position; None while unknown."""
        if not self.synced:
            return None
        data = {
            "type": "snapshot",
            "timestamp": self.timestamp,
            "instrument_name": self.name,
            "change_id": self.change_id,
            "bids": [["new", px, amt] for px, amt in sorted(self.bids.items(), reverse=True)],
            "asks": [["new", px, amt] for px, amt in sorted(self.asks.items())],
        }
        doc = {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}}
        return msgspec.json.encode(doc)


@dataclass
class Catalog:
    """The recordings' Binance connections and markets, and what they hold of Deribit, an
    Ethereum node and mempool.space, from one pass over them."""

    conn_market: dict[str, str] = field(default_factory=dict)  # connection id -> market
    markets: dict[str, MarketInfo] = field(default_factory=dict)  # incl. deribit, ethereum, bitcoin
    deribit: DeribitRecordings = field(default_factory=DeribitRecordings)
    ethereum: EthereumRecordings = field(default_factory=EthereumRecordings)


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
    """Read the recordings once: each connection's market, each market's symbols and
    streams (Binance), the channels, instruments and listings of Deribit ones, what an
    Ethereum node notified, and where each venue's last received frame is."""
    conn_market: dict[str, str] = {}
    foreign: set[str] = set()  # connections of other venues
    conn_streams: dict[str, set[str]] = defaultdict(set)
    conn_last: dict[str, int] = {}
    markets: dict[str, MarketInfo] = defaultdict(MarketInfo)
    deribit = DeribitRecordings()
    ethereum = EthereumRecordings()
    last = {venue: -1 for venue in _ONE_ENDPOINT}  # index of each one-endpoint venue's last recv
    for i, frame in enumerate(merge_recordings(paths)):
        if frame.kind == "rest":
            key = snapshot_key(frame)
            if key is not None:
                markets[key[0]].symbols.add(key[1])
                markets[key[0]].last_index = i
            else:
                venue = detect_venue(frame)
                if venue is not None and venue[0] == DERIBIT:
                    deribit.learn(frame, i)
            continue
        conn = frame.conn_id
        if conn not in conn_market and conn not in foreign:
            venue = detect_venue(frame)
            if venue is not None and venue[0] == "binance":
                conn_market[conn] = venue[1]
            elif venue is not None and venue[0] in _ONE_ENDPOINT:
                conn_market[conn] = venue[0]
            elif venue is not None:
                foreign.add(conn)
        market = conn_market.get(conn)
        if market in _ONE_ENDPOINT:
            if market == DERIBIT:
                deribit.learn(frame, i)
            elif market == ETHEREUM:
                ethereum.learn(frame)
            if frame.kind == "recv":
                last[market] = i
            continue
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
    if deribit.channels:
        markets[DERIBIT] = MarketInfo(set(deribit.instruments), deribit.known, last[DERIBIT])
    if ethereum.kinds:
        markets[ETHEREUM] = MarketInfo({"ETH"}, set(ethereum.kinds), last[ETHEREUM])
    if last[BITCOIN] >= 0:
        markets[BITCOIN] = MarketInfo({"BTC"}, set(), last[BITCOIN])
    return Catalog(conn_market, dict(markets), deribit, ethereum)
