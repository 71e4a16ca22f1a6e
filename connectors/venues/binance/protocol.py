"""Sans-I/O core of the Binance spot, USD-M and COIN-M market-data connector.

Feed it websocket frames, REST depth snapshots and connection open/close, each with
its local receive time; it returns normalized events and says which snapshot GETs to
make (:meth:`BinanceProtocol.rest_requests`). It keeps one validated
:class:`~connectors.book.l2.L2Book` per symbol and never does I/O.

Book sync, per symbol (research/protocols.md §2.1-2.2)::

    connection_opened -> BUFFERING: diffs are buffered from the first frame; the
        first diff triggers a REST snapshot request.
    snapshot arrives  -> diffs already in it are dropped; the first one left must
        bridge it (spot: U <= id+1 <= u; futures: U <= id <= u), else the snapshot
        is older than the stream and is requested again. Then the buffer is applied
        -> SYNCED: FeedStatus("synced") + a full BookSnapshot.
    in sync           -> spot: U must be <= u_prev + 1; futures: pu == u_prev.
        A break -> FeedStatus("gap") and only that symbol goes back to buffering
        (the offending diff is its first buffered diff) with a new snapshot request.
        A crossed book after a diff -> FeedStatus("crossed"), same resync.

>>> p = BinanceProtocol("spot", ["btcusdt"])
>>> p.stream_url()
'wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker'
>>> [e.state for e in p.connection_opened(1)]
['connected', 'buffering']
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec

from connectors.book import l2
from connectors.book.sequencing import (
    APPLY,
    GAP,
    SKIP,
    Rule,
    futures_bridge_rule,
    futures_rule,
    spot_rule,
)
from connectors.errors import ConfigError, ProtocolError
from connectors.events import BookSnapshot, Event, FeedState, FeedStatus, SizeUnit
from connectors.record.frames import Frame
from connectors.venues.base import InstrumentStats, ProtocolStats, RestRequest
from connectors.venues.binance import parse
from connectors.venues.binance.schemas import DepthSnapshot, DepthUpdate

MarketName = Literal["spot", "usdm", "coinm"]


class Market(msgspec.Struct, frozen=True):
    """Endpoints and conventions of one Binance market."""

    venue: str  # venue name in events
    ws_base: str  # websocket base, combined streams live at /stream?streams=
    rest_base: str
    depth_path: str  # REST depth snapshot path
    snapshot_limit: int  # levels per side asked of the snapshot (the market's maximum)
    size_unit: SizeUnit  # what depth and trade quantities count
    futures: bool  # pu-chained diffs


MARKETS: dict[str, Market] = {
    "spot": Market("binance", "wss://stream.binance.com:9443", "https://api.binance.com",
                   "/api/v3/depth", 5000, "base", False),
    "usdm": Market("binance_usdm", "wss://fstream.binance.com", "https://fapi.binance.com",
                   "/fapi/v1/depth", 1000, "base", True),
    "coinm": Market("binance_coinm", "wss://dstream.binance.com", "https://dapi.binance.com",
                    "/dapi/v1/depth", 1000, "contracts", True),
}

_DEPTH_STREAM = re.compile(r"depth(@\d+ms)?")
_SYMBOL = re.compile(r"[A-Za-z0-9_]+")
_MAX_STREAMS = 1024  # per connection, spot and futures alike
_BUFFER = 10_000  # diffs buffered per symbol while waiting for a snapshot
_RETRY_NS = 250_000_000  # first snapshot re-request delay; doubles, capped below
_RETRY_CAP_NS = 30_000_000_000
# The compiled book kernel (None: pure Python). Read when a protocol is created, so a
# test can set it to None to run the pure-Python path in the same process.
_KERNEL = l2.kernel

Handler = Callable[["_Instrument", Any, int], list[Event]]
Decoder = msgspec.json.Decoder[Any]
# stream name -> (typed-envelope decoder, payload decoder, handler, instrument)
Route = tuple[Decoder, Decoder, Handler, "_Instrument"]


class _Instrument:
    """Mutable per-symbol state: the book, its sync state and counters."""

    __slots__ = (
        "symbol", "book", "synced", "state", "last", "last_e", "buffer", "snapshot",
        "want_snapshot", "in_flight", "not_before_ns", "attempts", "snapshot_path",
        "messages", "syncs", "gaps", "resyncs", "crossed", "malformed", "skipped",
        "buffer_dropped", "snapshots_requested", "snapshots_stale",
        "n_delta", "n_view", "n_snapshot", "n_trade", "n_bbo", "n_status",
    )

    def __init__(self, symbol: str, snapshot_path: str, book: l2.PyL2Book) -> None:
        self.symbol = symbol
        self.snapshot_path = snapshot_path
        self.book = book
        self.synced = False
        self.state = "disconnected"
        self.last = 0  # update id the book is at (valid when synced)
        self.last_e: int | None = None  # exchange ms of the last applied diff
        self.buffer: deque[DepthUpdate] = deque(maxlen=_BUFFER)
        self.snapshot: DepthSnapshot | None = None  # received, waiting for a bridge
        self.want_snapshot = False  # a GET to hand out from rest_requests()
        self.in_flight = False  # a GET handed out and not answered yet
        self.not_before_ns = 0
        self.attempts = 0  # consecutive snapshot retries (back-off exponent)
        # counters for stats()
        self.messages = self.syncs = self.gaps = self.resyncs = self.crossed = 0
        self.malformed = self.skipped = self.buffer_dropped = 0
        self.snapshots_requested = self.snapshots_stale = 0
        self.n_delta = self.n_view = self.n_snapshot = self.n_trade = self.n_bbo = self.n_status = 0


class BinanceProtocol:
    """Sans-I/O Binance combined-stream connector for many symbols of one market.

    Parameters
    ----------
    market
        ``"spot"``, ``"usdm"`` (USD-M futures) or ``"coinm"`` (COIN-M futures).
    symbols
        Binance symbols, any case (``"BTCUSDT"``); events carry them upper-case.
    depth_stream
        ``"depth@100ms"`` (default), ``"depth@0ms"``, ``"depth"`` (spot 1000 ms,
        futures 250 ms) or another ``depth@<N>ms`` the market offers.
    trade_stream
        ``"trade"`` or ``"aggTrade"``; None (default) picks ``trade`` for spot and
        ``aggTrade`` for futures (USD-M also serves ``trade`` today).
    book_ticker
        Subscribe ``@bookTicker`` (emitted as ``BBO``).
    book_view_depth
        If set to N, emit ``BookSnapshot(depth=N)`` of the validated book after every
        applied diff and at sync: the input of the feature flow.
    emit_deltas
        Emit a ``BookDelta`` per applied diff.
    snapshot_limit
        Levels per side asked of the REST snapshot; default the market's maximum
        (5000 spot, 1000 futures): levels beyond it stay unknown until they change.
    """

    def __init__(
        self,
        market: MarketName,
        symbols: Iterable[str],
        *,
        depth_stream: str = "depth@100ms",
        trade_stream: Literal["trade", "aggTrade"] | None = None,
        book_ticker: bool = True,
        book_view_depth: int | None = None,
        emit_deltas: bool = True,
        snapshot_limit: int | None = None,
    ) -> None:
        if market not in MARKETS:
            raise ConfigError(f"market must be one of {sorted(MARKETS)}, got {market!r}")
        if not _DEPTH_STREAM.fullmatch(depth_stream):
            raise ConfigError(f"depth_stream must be 'depth' or 'depth@<N>ms', got {depth_stream!r}")
        if trade_stream is None:
            trade_stream = "aggTrade" if MARKETS[market].futures else "trade"
        if trade_stream not in ("trade", "aggTrade"):
            raise ConfigError(f"trade_stream must be 'trade' or 'aggTrade', got {trade_stream!r}")
        if book_view_depth is not None and book_view_depth < 1:
            raise ConfigError(f"book_view_depth must be >= 1 or None, got {book_view_depth}")
        m = MARKETS[market]
        limit = m.snapshot_limit if snapshot_limit is None else snapshot_limit
        if not 1 <= limit <= m.snapshot_limit:
            raise ConfigError(f"snapshot_limit must be in 1..{m.snapshot_limit} for {market}, got {limit}")
        syms = [s.upper() for s in symbols]
        bad = [s for s in syms if not _SYMBOL.fullmatch(s)]
        if not syms or bad or len(set(syms)) != len(syms):
            raise ConfigError(f"symbols must be distinct non-empty Binance symbols, got {syms}")

        self.market = m
        self.venue = m.venue
        self.rest_base = m.rest_base
        self._view_depth = book_view_depth
        self._emit_deltas = emit_deltas
        self._size_unit = m.size_unit
        self._futures = m.futures
        self._rule: Rule = futures_rule if m.futures else spot_rule
        self._bridge: Rule = futures_bridge_rule if m.futures else spot_rule
        self._stats = ProtocolStats(venue=m.venue)
        self._fatal: str | None = None
        self._frames = 0  # hot counter, copied into stats() on demand
        self._inst: dict[str, _Instrument] = {}
        self._want_any = False  # some instrument has want_snapshot set
        self._streams: list[str] = []
        self._routes: dict[str, Route] = {}
        kernel = _KERNEL
        book_class = l2.PyL2Book if kernel is None else kernel.L2Book
        if kernel is None:
            depth_decoders: tuple[Any, Any] = (parse.DEPTH_ENVELOPE, parse.DEPTH)
        else:
            # Decode depth frames to the kernel's Diff: Binance's compact frames parsed
            # in C in one pass, anything else (and every error) by the typed decoders.
            depth_decoders = (kernel.DiffDecoder(parse.DEPTH_ENVELOPE, True),
                              kernel.DiffDecoder(parse.DEPTH, False))
        kinds: list[tuple[str, Decoder, Decoder, Handler]] = [
            (depth_stream, *depth_decoders, self._on_depth)
        ]
        if trade_stream == "trade":
            kinds.append(("trade", parse.TRADE_ENVELOPE, parse.TRADE, self._on_trade))
        else:
            kinds.append(("aggTrade", parse.AGG_TRADE_ENVELOPE, parse.AGG_TRADE, self._on_agg_trade))
        if book_ticker:
            kinds.append(("bookTicker", parse.BOOK_TICKER_ENVELOPE, parse.BOOK_TICKER, self._on_book_ticker))
        # A book view reads the top N after every diff; a cache well deeper than N
        # drains (and is rebuilt by sorting the book) less often. On BTCUSDT with
        # N=20, 128 beat 64 (+5-7%) and 192.
        cache_size = max(64, 6 * (book_view_depth or 0))
        for sym in syms:
            inst = _Instrument(sym, f"{m.depth_path}?symbol={sym}&limit={limit}", book_class(cache_size))
            self._inst[sym] = inst
            for channel, env_dec, dec, handler in kinds:
                name = f"{sym.lower()}@{channel}"
                self._streams.append(name)
                self._routes[name] = (env_dec, dec, handler, inst)
        if len(self._streams) > _MAX_STREAMS:
            raise ConfigError(f"{len(self._streams)} streams; Binance allows {_MAX_STREAMS} per connection")
        # The fast path reads the stream name off the frame's first bytes.
        self._fast = {name.encode(): route for name, route in self._routes.items()}

    # -- what the caller connects to and sends ------------------------------------

    @property
    def symbols(self) -> list[str]:
        """The configured symbols, upper-case."""
        return list(self._inst)

    def stream_url(self, ws_base: str | None = None) -> str:
        """The combined-stream URL for every subscribed stream, on ``ws_base``."""
        base = (ws_base or self.market.ws_base).rstrip("/")
        return f"{base}/stream?streams={'/'.join(self._streams)}"

    def frames_to_send(self) -> list[str]:
        """Frames to send: none, the subscription is in the URL (kept for the shape)."""
        return []

    def rest_requests(self) -> list[RestRequest]:
        """Snapshot GETs to make now; each is returned once. Answer via :meth:`receive_rest`."""
        if not self._want_any:  # called after every frame: O(1) when idle
            return []
        self._want_any = False
        out = []
        for inst in self._inst.values():
            if inst.want_snapshot:
                inst.want_snapshot = False
                inst.in_flight = True
                inst.snapshots_requested += 1
                out.append(RestRequest(inst.snapshot_path, inst.symbol, inst.not_before_ns))
        return out

    # -- connection lifecycle -------------------------------------------------------

    def connection_opened(self, ts_recv_ns: int) -> list[Event]:
        """A connection to :meth:`stream_url` is up: every book starts buffering."""
        self._stats.connections += 1
        out: list[Event] = [self._status("*", ts_recv_ns, "connected", "connection")]
        for inst in self._inst.values():
            self._reset(inst, "buffering")
            # Ask at once rather than on the first diff: a symbol Binance does not list
            # sends no diffs, and only its snapshot's -1121 says so.
            self._request_snapshot(inst, ts_recv_ns)
            out.append(self._status(inst, ts_recv_ns, "buffering", reason="connection opened"))
        return out

    def connection_lost(self, ts_recv_ns: int, reason: str) -> list[Event]:
        """The connection closed: every book is out of sync until the next one."""
        out: list[Event] = [self._status("*", ts_recv_ns, "disconnected", "connection", reason)]
        for inst in self._inst.values():
            self._reset(inst, "disconnected")
            out.append(self._status(inst, ts_recv_ns, "disconnected", reason=reason))
        return out

    def feed_frame(self, frame: Frame) -> list[Event]:
        """Dispatch a recorded :class:`Frame` (``sent`` frames are ignored)."""
        kind, ts = frame.kind, frame.ts_recv_ns
        if kind == "recv":
            return self.receive_frame(frame.payload, ts)
        if kind == "rest":
            return self.receive_rest(frame.url or "", 200, frame.payload, ts)
        if kind == "open":
            return self.connection_opened(ts)
        if kind == "close":
            return self.connection_lost(ts, frame.payload.decode("utf-8", "replace"))
        return []

    # -- inputs -----------------------------------------------------------------------

    def receive_frame(self, data: bytes | str, ts_recv_ns: int) -> list[Event]:
        """One websocket frame -> events. Never raises: bad frames are counted and skipped."""
        self._frames += 1
        route = None
        try:
            if type(data) is not bytes:
                data = data.encode() if isinstance(data, str) else bytes(data)
            # Fast path: a frame that starts {"stream":"<name>" is decoded in one pass
            # with its payload's type. Anything else takes the generic envelope.
            if data.startswith(b'{"stream":"'):
                route = self._fast.get(data[11 : data.find(b'"', 11)])
            if route is not None:
                decoder, _, handler, inst = route
                return handler(inst, decoder.decode(data).data, ts_recv_ns)
            env = parse.ENVELOPE.decode(data)
            if env.stream is None:
                if env.id is not None:
                    return self._ignore("control reply")
                raise ProtocolError("neither a stream frame nor a control reply")
            route = self._routes.get(env.stream)
            if route is None:
                return self._ignore(f"stream {env.stream}")
            return route[2](route[3], route[1].decode(env.data), ts_recv_ns)
        # msgspec raises UnicodeDecodeError, not DecodeError, for invalid UTF-8; a str
        # frame with lone surrogates fails to encode.
        except (msgspec.DecodeError, UnicodeError, ProtocolError) as exc:
            return self._malformed(route[3] if route else None, f"frame: {exc}", data)
        except Exception as exc:  # a bug; one frame must not stop the feed
            self._stats.internal_errors += 1
            self._error(f"internal error {exc!r} on frame", data)
            return []

    def receive_rest(self, url: str, status: int, body: bytes, ts_recv_ns: int) -> list[Event]:
        """A depth snapshot response (status 0: transport error). Never raises."""
        inst = None
        try:
            inst = self._inst.get(parse.snapshot_symbol(url))
            if inst is None:
                return self._ignore("snapshot for an unsubscribed symbol")
            inst.in_flight = False
            if status == 400 and b"-1121" in body:
                # Binance's "Invalid symbol.": no retry can fix a symbol it does not list.
                self._stats.rest_failed += 1
                inst.state = "error"
                reason = f"unknown symbol {inst.symbol} on {self.venue} (GET {url} -> 400 Invalid symbol)"
                self._fatal = self._fatal or reason
                return [self._status(inst, ts_recv_ns, "error", reason=reason)]
            if status != 200:
                self._stats.rest_failed += 1
                self._error(f"{inst.symbol}: snapshot GET {url} -> HTTP {status}", body)
                self._retry_snapshot(inst, ts_recv_ns)
                return []
            snap = parse.SNAPSHOT.decode(body)
            self._stats.rest_ok += 1
            if inst.synced:
                return self._ignore("snapshot while in sync")
            inst.snapshot = snap
            return self._try_sync(inst, ts_recv_ns)
        except (msgspec.DecodeError, UnicodeError, ProtocolError) as exc:
            if inst is not None:
                self._retry_snapshot(inst, ts_recv_ns)
            return self._malformed(inst, f"snapshot {url}: {exc}", body)
        except Exception as exc:  # a bug; keep the feed alive
            self._stats.internal_errors += 1
            self._error(f"internal error {exc!r} on snapshot {url}", body)
            return []

    # -- stream handlers (the hot path) ---------------------------------------------------

    def _on_depth(self, inst: _Instrument, msg: DepthUpdate, ts: int) -> list[Event]:
        inst.messages += 1
        if not inst.synced:
            return self._buffer(inst, msg, ts)
        # The usual case, a diff chained exactly to the book (futures pu == u_prev, spot
        # U == u_prev + 1), skips the rule call; anything else asks the rule.
        if (msg.pu if self._futures else msg.U - 1) == inst.last:
            action = APPLY
        else:
            action = self._rule(inst.last, msg.U, msg.u, msg.pu)
        if action == APPLY:
            book = inst.book
            book.apply_diff(msg)
            inst.last = msg.u
            inst.last_e = msg.E
            if book.crossed():
                return self._crossed(inst, ts)
            out: list[Event] = []
            if self._emit_deltas:
                out.append(parse.depth_delta(msg, self.venue, inst.symbol, ts, self._size_unit))
                inst.n_delta += 1
            if self._view_depth:
                out.append(self._view(inst, ts))
            return out
        if action == SKIP:
            inst.skipped += 1
            return []
        if self._futures:
            return self._gap(inst, ts, inst.last, msg.pu, [msg])
        return self._gap(inst, ts, inst.last + 1, msg.U, [msg])

    def _on_trade(self, inst: _Instrument, msg: Any, ts: int) -> list[Event]:
        inst.messages += 1
        inst.n_trade += 1
        return [parse.trade(msg, self.venue, inst.symbol, ts)]

    def _on_agg_trade(self, inst: _Instrument, msg: Any, ts: int) -> list[Event]:
        inst.messages += 1
        inst.n_trade += 1
        return [parse.agg_trade(msg, self.venue, inst.symbol, ts)]

    def _on_book_ticker(self, inst: _Instrument, msg: Any, ts: int) -> list[Event]:
        inst.messages += 1
        inst.n_bbo += 1
        return [parse.book_ticker(msg, self.venue, inst.symbol, ts)]

    # -- book sync ------------------------------------------------------------------------

    def _buffer(self, inst: _Instrument, msg: DepthUpdate, ts: int) -> list[Event]:
        """Out of sync: keep the diff; the first one asks for a snapshot."""
        buf = inst.buffer
        if len(buf) == buf.maxlen:
            inst.buffer_dropped += 1  # the oldest goes; a snapshot must be newer anyway
        buf.append(msg)
        if inst.snapshot is not None:
            return self._try_sync(inst, ts)
        if not inst.want_snapshot and not inst.in_flight:
            self._request_snapshot(inst, ts)
        return []

    def _try_sync(self, inst: _Instrument, ts: int) -> list[Event]:
        """Bridge the held snapshot with the buffered diffs, if they allow it."""
        snap = inst.snapshot
        assert snap is not None
        lid = snap.lastUpdateId
        buf = inst.buffer
        bridge = self._bridge
        while buf and bridge(lid, buf[0].U, buf[0].u, buf[0].pu) == SKIP:
            buf.popleft()  # already contained in the snapshot
        if not buf:
            return []  # the snapshot is newer than every diff so far: wait for the next
        first = buf[0]
        if bridge(lid, first.U, first.u, first.pu) == GAP:
            inst.snapshot = None
            inst.snapshots_stale += 1
            self._error(f"{inst.symbol}: snapshot lastUpdateId={lid} is older than "
                        f"the first buffered diff U={first.U}; requesting another", b"")
            self._retry_snapshot(inst, ts)
            return []
        book = inst.book
        book.replace(snap.bids, snap.asks)
        inst.last = lid
        inst.last_e = snap.E
        rule = self._rule
        applied = 0
        for i, msg in enumerate(buf):
            action = APPLY if i == 0 else rule(inst.last, msg.U, msg.u, msg.pu)
            if action == SKIP:
                continue
            if action == GAP:  # a hole inside the buffer itself
                rest = list(buf)[i:]
                if self._futures:
                    return self._gap(inst, ts, inst.last, msg.pu, rest)
                return self._gap(inst, ts, inst.last + 1, msg.U, rest)
            book.apply_diff(msg)
            inst.last = msg.u
            inst.last_e = msg.E
            applied += 1
        buf.clear()
        inst.snapshot = None
        inst.synced = True
        inst.state = "synced"
        inst.syncs += 1
        inst.attempts = 0
        inst.want_snapshot = False
        if book.crossed():
            return self._crossed(inst, ts)
        bids, asks = book.levels()
        inst.n_snapshot += 1
        out: list[Event] = [
            self._status(inst, ts, "synced", got_seq=inst.last,
                         reason=f"snapshot lastUpdateId={lid} + {applied} buffered diffs"),
            BookSnapshot(venue=self.venue, symbol=inst.symbol, ts_exchange_ns=self._ts_e(inst),
                         ts_recv_ns=ts, bids=bids, asks=asks, depth=None, seq=inst.last,
                         size_unit=self._size_unit),
        ]
        if self._view_depth:
            out.append(self._view(inst, ts))
        return out

    def _gap(self, inst: _Instrument, ts: int, expected: int, got: int | None,
             keep: list[DepthUpdate]) -> list[Event]:
        """A break in the update-id chain: report it and resync this symbol only."""
        inst.gaps += 1
        ev = self._status(inst, ts, "gap", expected_seq=expected, got_seq=got,
                          reason=f"update id {got} does not follow the book's {inst.last}")
        self._resync(inst, ts, keep)
        return [ev]

    def _crossed(self, inst: _Instrument, ts: int) -> list[Event]:
        """Best bid >= best ask: the book cannot be right; resync this symbol."""
        inst.crossed += 1
        bid, ask = inst.book.best_bid(), inst.book.best_ask()
        ev = self._status(inst, ts, "crossed", got_seq=inst.last,
                          reason=f"bid {bid} >= ask {ask} at update id {inst.last}")
        self._resync(inst, ts, [])
        return [ev]

    def _resync(self, inst: _Instrument, ts: int, keep: list[DepthUpdate]) -> None:
        inst.resyncs += 1
        self._reset(inst, "resyncing")
        inst.buffer.extend(keep)
        self._request_snapshot(inst, ts)

    def _reset(self, inst: _Instrument, state: str) -> None:
        inst.synced = False
        inst.state = state
        inst.book.clear()
        inst.buffer.clear()
        inst.snapshot = None
        inst.want_snapshot = False
        inst.in_flight = False
        inst.attempts = 0

    def _request_snapshot(self, inst: _Instrument, ts: int) -> None:
        if inst.in_flight:
            return  # the outstanding response will do
        inst.want_snapshot = True
        inst.not_before_ns = ts
        self._want_any = True

    def _retry_snapshot(self, inst: _Instrument, ts: int) -> None:
        inst.attempts += 1
        delay = min(_RETRY_CAP_NS, _RETRY_NS << min(inst.attempts - 1, 16))
        inst.want_snapshot = True
        inst.not_before_ns = ts + delay
        self._want_any = True

    # -- event helpers ----------------------------------------------------------------------

    def _view(self, inst: _Instrument, ts: int) -> BookSnapshot:
        assert self._view_depth is not None
        inst.n_view += 1
        bids, asks = inst.book.top(self._view_depth)
        return BookSnapshot(venue=self.venue, symbol=inst.symbol, ts_exchange_ns=self._ts_e(inst),
                            ts_recv_ns=ts, bids=bids, asks=asks, depth=self._view_depth,
                            seq=inst.last, size_unit=self._size_unit)

    @staticmethod
    def _ts_e(inst: _Instrument) -> int | None:
        return None if inst.last_e is None else inst.last_e * parse.MS

    def _status(self, inst: _Instrument | str, ts: int, state: FeedState,
                scope: Literal["connection", "instrument"] = "instrument", reason: str = "",
                expected_seq: int | None = None, got_seq: int | None = None) -> FeedStatus:
        if isinstance(inst, _Instrument):
            inst.n_status += 1
            symbol = inst.symbol
        else:
            symbol = inst
        return FeedStatus(venue=self.venue, symbol=symbol, ts_exchange_ns=None, ts_recv_ns=ts,
                          state=state, scope=scope, reason=reason,
                          expected_seq=expected_seq, got_seq=got_seq)

    def _ignore(self, reason: str) -> list[Event]:
        self._stats.count_ignored(reason)
        return []

    def _malformed(self, inst: _Instrument | None, what: str, data: Any) -> list[Event]:
        self._stats.malformed += 1
        if inst is not None:
            inst.malformed += 1
        self._error(f"malformed {what}", data)
        return []

    def _error(self, text: str, data: Any) -> None:
        self._stats.note_error(text, data)

    # -- stats ------------------------------------------------------------------------------

    @property
    def fatal_error(self) -> str | None:
        """A problem no reconnect can fix (an unknown symbol); the shell stops on it."""
        return self._fatal

    @property
    def errors(self) -> list[str]:
        """The first few problems seen, verbatim, for a human."""
        return self._stats.errors

    def stats(self) -> ProtocolStats:
        """A copy of the counters, with each book's best bid/ask and state as of now."""
        insts = {}
        for sym, i in self._inst.items():
            bb = i.book.best_bid() if i.synced else None
            ba = i.book.best_ask() if i.synced else None
            events = {"book_delta": i.n_delta, "book_snapshot": i.n_view + i.n_snapshot,
                      "trade": i.n_trade, "bbo": i.n_bbo, "feed_status": i.n_status}
            insts[sym] = InstrumentStats(
                symbol=sym, state=i.state, messages=i.messages,
                events={k: v for k, v in events.items() if v},
                syncs=i.syncs, gaps=i.gaps, resyncs=i.resyncs, crossed=i.crossed,
                malformed=i.malformed, skipped=i.skipped, buffer_dropped=i.buffer_dropped,
                snapshots_requested=i.snapshots_requested, snapshots_stale=i.snapshots_stale,
                seq=i.last if i.synced else None,
                best_bid=bb[0] if bb else None, best_ask=ba[0] if ba else None,
                levels=len(i.book) if i.synced else 0,
            )
        s = self._stats
        return msgspec.structs.replace(s, frames=self._frames, ignored=dict(s.ignored),
                                       errors=list(s.errors), instruments=insts)
