"""Sans-I/O core of the Deribit market-data connector: JSON-RPC 2.0 over one websocket.

Feed it websocket frames (and, from recordings, REST ``get_instruments`` bodies and
the frames that were sent), each with its local receive time; it returns normalized
events and says which JSON-RPC requests to send (:meth:`DeribitProtocol.frames_to_send`),
when it next needs a timer call (:meth:`~DeribitProtocol.deadline_ns`) and when the
connection must be dropped (:meth:`~DeribitProtocol.close_requested`). It never does
I/O and never reads a clock.

A connection, step by step (research/protocols.md §1)::

    connection_opened -> public/set_heartbeat (interval 30), public/subscribe of the
        currency channels (DVOL, price index, instrument.state), then one
        public/get_instruments per (currency, option|future), paced at 1 per second.
    every listing in   -> Instrument events for this shard's instruments, then
        public/subscribe of their channels, batched (500 a call) and paced (burst
        10, then 3 calls/s). Each ack is diffed with its request: a channel
        missing from ``result`` is a FeedStatus("error") and a log line.
    book.{inst}.{interval} -> snapshot: book replaced, FeedStatus("synced");
        change: ``prev_change_id`` must equal the book's ``change_id``, else
        FeedStatus("gap") + ("resyncing") and only that channel is unsubscribed
        and subscribed again (a fresh snapshot follows); other books stay synced.
    heartbeat test_request -> public/test at once. No frame for 2 x interval -> the
        connection is declared dead (FeedStatus("stale") + close request).
    error 10028 too_many_requests -> Deribit ends the session: FeedStatus("error"),
        close request with a growing ``retry_after_s``, and every later connection
        paces its requests twice as slowly (up to 8x).
    an instrument expires (exchange time passes its expiry, instrument.state says
        settled/terminated, or a new listing drops it) -> its book and routes go,
        its channels are unsubscribed, Instrument(is_active=False).

Sharding: ``DeribitProtocol(..., shard=i, shards=n)`` keeps the instruments with
``shard_of(name, n) == i`` (CRC-32 of the name); currency-wide channels (DVOL, price
index, markprice) go to shard 0 only, ``instrument.state`` to every shard (each acts
on its own instruments). n cores on n sockets cover the chain once, with no
duplicate event.

Recordings: :meth:`feed_frame` also takes the frames that were *sent* (a
``public/subscribe`` with its id), so a recorded ack is diffed against the recorded
request; the core's own requests are only registered when handed out by
:meth:`frames_to_send`, so replaying never confuses the two.

>>> p = DeribitProtocol(currencies=["BTC"], kinds=["perpetual"], dvol=False, price_index=False,
...                     instrument_state=False)
>>> [e.state for e in p.connection_opened(0)]
['connected']
>>> p.frames_to_send()
['{"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":30}}', \
'{"jsonrpc":"2.0","id":2,"method":"public/get_instruments","params":{"currency":"BTC","kind":"future","expired":false}}']
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from connectors.errors import ConfigError, ProtocolError
from connectors.events import Event, Instrument, SizeUnit
from connectors.record.frames import Frame
from connectors.venues.base import CloseRequest, ProtocolStats, RestRequest
from connectors.venues.deribit import parse
from connectors.venues.deribit.books import Symbol, status
from connectors.venues.deribit.chain import Chain
from connectors.venues.deribit.config import DeribitConfig
from connectors.venues.deribit.parse import VENUE
from connectors.venues.deribit.requests import Call, RequestQueue
from connectors.venues.deribit.schemas import (
    BookData,
    InstrumentInfo,
    InstrumentStateData,
    MarkPriceData,
    PriceIndexData,
    RpcError,
    TickerData,
    TradeData,
    VolatilityIndexData,
)

log = logging.getLogger("volcast.connectors.deribit")

WS_URL = "wss://www.deribit.com/ws/api/v2"
WS_PATH = "/ws/api/v2"
REST_BASE = "https://www.deribit.com"
TOO_MANY_REQUESTS = 10028
_TERMINAL_STATES = frozenset({"settled", "closed", "deactivated", "terminated"})
_LISTING_STATES = frozenset({"created", "started"})
_MAX_PACE = 8.0  # slowest pacing after repeated 10028s
_MAX_RETRY_S = 300.0
_LISTING_RETRY_S = 2.0  # first re-request of a failed get_instruments; doubles, capped
_LISTING_RETRY_CAP_S = 60.0
_NOTIFICATION = b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"'
_N = len(_NOTIFICATION)

Handler = Callable[["_Route", Any, int], list[Event]]


class _Route:
    """How one channel's notifications are decoded and handled."""

    __slots__ = ("channel", "data_decoder", "frame_decoder", "handler", "inst")

    def __init__(self, channel: str, frame_decoder: msgspec.json.Decoder[Any],
                 data_decoder: msgspec.json.Decoder[Any], handler: Handler, inst: Symbol) -> None:
        self.channel = channel
        self.frame_decoder = frame_decoder  # the whole frame, data typed (fast path)
        self.data_decoder = data_decoder  # data alone (generic path)
        self.handler = handler
        self.inst = inst


class DeribitProtocol:
    """Sans-I/O Deribit connector: option chain, futures books, trades, DVOL, index.

    Parameters
    ----------
    config
        What to subscribe (:class:`~connectors.venues.deribit.config.DeribitConfig`);
        default ``DeribitConfig()``: BTC and ETH options (ticker), futures and
        perpetuals (book, trades), DVOL, price index, instrument.state, one shard.
    **options
        Fields of :class:`DeribitConfig` to set or override, e.g.
        ``DeribitProtocol(currencies=["BTC"], shard=i, shards=n)``.

    Raises ``ConfigError`` for a configuration it cannot use.
    """

    venue = VENUE
    rest_base = REST_BASE

    def __init__(self, config: DeribitConfig | None = None, /, **options: Any) -> None:
        try:
            cfg = config or DeribitConfig()
            if options:
                cfg = msgspec.structs.replace(cfg, **options)
        except TypeError as exc:  # an unknown option
            raise ConfigError(f"DeribitProtocol: {exc}") from None
        cfg = cfg.checked()
        self.config = cfg
        self.currencies = tuple(cfg.currencies)
        self.kinds = tuple(cfg.kinds)
        self.shard, self.shards = cfg.shard, cfg.shards
        self.interval = cfg.interval
        self.heartbeat_s = cfg.heartbeat_s
        self._view_depth = cfg.book_view_depth
        self._emit_deltas = cfg.emit_deltas
        self._rate_backoff_s = cfg.rate_limit_backoff_s
        self._listing_keys: list[tuple[str, str | None]] = list(cfg.listing_keys())
        self._currency_channels = cfg.currency_channels()

        # Connection state.
        self._connected = False
        self._now = 0  # the latest receive time we were given
        self._last_frame_ns = 0
        self._close: CloseRequest | None = None
        self._rq = RequestQueue(cfg.max_channels_per_request, cfg.subscribe_burst,
                                int(1e9 / cfg.subscribe_per_s), int(1e9 / cfg.instruments_per_s))
        self._listings_outstanding: set[tuple[str, str | None]] = set()
        self._flushed = False  # this connection subscribed its instruments' channels
        self._pace = 1.0  # request pacing factor: doubles with each 10028
        self._strikes = 0  # consecutive 10028s

        # Instruments.
        allow = None if cfg.instruments is None else frozenset(cfg.instruments)
        self._chain = Chain(self.kinds, allow, cfg.shard, cfg.shards)
        self._exch_ms = 0  # the latest exchange time seen (ms): the clock of expiries
        self._inst: dict[str, Symbol] = {}
        self._routes: dict[str, _Route] = {}
        self._fast: dict[bytes, _Route] = {}
        self._stats = ProtocolStats(venue=VENUE)
        self._frames = 0

    # -- what the caller asks ---------------------------------------------------------

    def stream_url(self, ws_base: str | None = None) -> str:
        """``wss://www.deribit.com/ws/api/v2``, or ``<ws_base>/ws/api/v2`` (a replay server)."""
        if ws_base is None:
            return WS_URL
        return ws_base.rstrip("/") + WS_PATH

    def rest_requests(self) -> list[RestRequest]:
        """Always empty: every request goes over the websocket as JSON-RPC."""
        return []

    def wanted_channels(self) -> list[str]:
        """The channels this core subscribes for what it knows now (currency channels,
        then each listed instrument's), e.g. to size a shard."""
        out = list(self._currency_channels)
        for name, meta in self._chain.meta.items():
            out += self._channels_of(name, meta.instrument_kind)
        return out

    def frames_to_send(self) -> list[str]:
        """JSON-RPC requests to send now, in order (each returned once).

        Heartbeat answers and ``set_heartbeat`` go at once; subscriptions and
        listings as their pacing allows: call :meth:`deadline_ns` to learn when to
        come back.
        """
        if not self._connected or self._close is not None:
            return []
        return self._rq.drain(self._now)

    def deadline_ns(self) -> int | None:
        """When to call :meth:`on_timer` if no frame arrives first; None when not connected."""
        if not self._connected or self._close is not None:
            return None
        deadline = self._last_frame_ns + 2 * self.heartbeat_s * 1_000_000_000
        send = self._rq.next_send_ns(self._now)
        return deadline if send is None else min(deadline, send)

    def on_timer(self, ts_recv_ns: int) -> list[Event]:
        """A deadline passed: paced requests may go now (:meth:`frames_to_send`), and a
        connection silent for 2 x the heartbeat interval is declared dead."""
        self._now = max(self._now, ts_recv_ns)
        if not self._connected or self._close is not None:
            return []
        silent_ns = ts_recv_ns - self._last_frame_ns
        if silent_ns < 2 * self.heartbeat_s * 1_000_000_000:
            return []
        reason = (f"no frame for {silent_ns / 1e9:.1f} s (2 x heartbeat {self.heartbeat_s} s): "
                  "the connection is dead")
        log.warning("deribit: %s; reconnecting", reason)
        self._error(reason, b"")
        self._close = CloseRequest(reason=reason)
        return [status("*", ts_recv_ns, "stale", "connection", reason)]

    def close_requested(self) -> CloseRequest | None:
        """Set when this connection must be closed and a new one opened (after
        ``retry_after_s`` at least): a dead connection, or a 10028."""
        return self._close

    # -- connection -----------------------------------------------------------------

    def connection_opened(self, ts_recv_ns: int) -> list[Event]:
        """A new connection is up: heartbeat, currency channels, listings (then the rest)."""
        self._stats.connections += 1
        self._reset_connection()
        self._connected = True
        self._now = self._last_frame_ns = ts_recv_ns
        rq = self._rq
        rq.enqueue("public/set_heartbeat", {"interval": self.heartbeat_s})
        for ch in self._currency_channels:
            rq.want(ch)
        for key in self._listing_keys:
            rq.list_instruments(key)
        self._listings_outstanding = set(self._listing_keys)
        return [status("*", ts_recv_ns, "connected", "connection")]

    def connection_lost(self, ts_recv_ns: int, reason: str) -> list[Event]:
        """The connection closed: every book is out of sync until the next one."""
        self._now = max(self._now, ts_recv_ns)
        self._connected = False
        self._reset_connection()
        out: list[Event] = [status("*", ts_recv_ns, "disconnected", "connection", reason)]
        for inst in self._inst.values():
            if inst.state in ("expired", "disconnected"):
                continue
            inst.drop_book("disconnected")
            if inst.book is not None:
                out.append(inst.status(ts_recv_ns, "disconnected", reason))
        return out

    def _reset_connection(self) -> None:
        self._close = None
        self._rq.clear(self._pace)
        self._listings_outstanding = set()
        self._flushed = False

    def feed_frame(self, frame: Frame) -> list[Event]:
        """Dispatch a recorded :class:`Frame`; ``sent`` frames register their request,
        so the recorded reply is matched with what was really asked."""
        kind, ts = frame.kind, frame.ts_recv_ns
        if kind == "recv":
            return self.receive_frame(frame.payload, ts)
        if kind == "sent":
            try:
                self._rq.observe_sent(frame.payload)
            except (msgspec.DecodeError, UnicodeError) as exc:
                return self._malformed(None, f"sent frame: {exc}", frame.payload)
            return []
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
        self._last_frame_ns = ts_recv_ns
        if ts_recv_ns > self._now:
            self._now = ts_recv_ns
        route = None
        try:
            if type(data) is not bytes:
                data = data.encode() if isinstance(data, str) else bytes(data)
            # Fast path: a notification whose channel is routed is decoded in one pass
            # with its data's type. Anything else takes the generic envelope.
            if data.startswith(_NOTIFICATION):
                route = self._fast.get(data[_N : data.find(b'"', _N)])
            if route is not None:
                out = route.handler(route, route.frame_decoder.decode(data).params.data, ts_recv_ns)
            else:
                out = self._generic(data, ts_recv_ns)
            expiry = self._chain.next_expiry_ms()
            if expiry is not None and expiry <= self._exch_ms:
                out = out + self._expire_due(ts_recv_ns)
            return out
        # msgspec raises UnicodeDecodeError, not DecodeError, for invalid UTF-8.
        except (msgspec.DecodeError, UnicodeError, ProtocolError) as exc:
            return self._malformed(route.inst if route else None, f"frame: {exc}", data)
        except Exception as exc:  # a bug; one frame must not stop the feed
            self._stats.internal_errors += 1
            self._error(f"internal error {exc!r} on frame", data)
            log.exception("deribit: internal error on a frame")
            return []

    def _generic(self, data: bytes, ts: int) -> list[Event]:
        env = parse.ENVELOPE.decode(data)
        if env.method == "subscription":
            params = parse.PARAMS.decode(env.params)
            if params.channel is None:
                raise ProtocolError("notification without a channel")
            route = self._routes.get(params.channel) or self._route(params.channel)
            if route is None:
                return []
            try:
                msg = route.data_decoder.decode(params.data)
            except msgspec.DecodeError as exc:
                return self._malformed(route.inst, f"{params.channel}: {exc}", data)
            return route.handler(route, msg, ts)
        if env.method == "heartbeat":
            params = parse.PARAMS.decode(env.params)
            if params.type == "test_request":
                self._rq.enqueue("public/test", {})
                return []
            return self._ignore(f"heartbeat {params.type}")
        if env.method is not None:
            return self._ignore(f"method {env.method}")
        if env.id is None:
            if env.error is not None:  # Deribit could not even read a request's id
                return self._rpc_error(None, env.error, ts)
            raise ProtocolError("neither a notification nor a reply")
        if env.usOut is not None:
            self._clock(env.usOut // 1000)
        call = self._rq.calls.pop(env.id, None)
        if call is None:
            return self._ignore("reply to an unknown id")
        if env.error is not None:
            return self._rpc_error(call, env.error, ts)
        method = call.method
        if method == "public/subscribe":
            return self._on_subscribed(call, parse.STRINGS.decode(env.result), ts)
        if method == "public/unsubscribe":
            return self._on_unsubscribed(call, parse.STRINGS.decode(env.result))
        if method == "public/get_instruments":
            infos = parse.INSTRUMENTS.decode(env.result)
            return self._on_listing(call.currency, call.kind, infos, ts, env.usOut)
        return []  # set_heartbeat "ok", public/test {"version": ...}

    def receive_rest(self, url: str, status: int, body: bytes, ts_recv_ns: int) -> list[Event]:
        """A REST ``public/get_instruments`` body (recordings: cryptofeed's ``DERIBIT.0``).

        Never raises; any other REST body is ignored.
        """
        try:
            parts = urlsplit(url)
            if not parts.path.endswith("/public/get_instruments"):
                return self._ignore(f"REST {parts.path}")
            if status != 200:
                self._stats.rest_failed += 1
                self._error(f"GET {url} -> HTTP {status}", body)
                return []
            query = parse_qs(parts.query)
            currency = query.get("currency", [""])[0].upper()
            kind = query.get("kind", [None])[0]
            env = parse.ENVELOPE.decode(body)
            if env.error is not None:
                self._stats.rest_failed += 1
                self._error(f"GET {url} -> error {env.error.code} {env.error.message}", body)
                return []
            infos = parse.INSTRUMENTS.decode(env.result)
            self._stats.rest_ok += 1
            return self._on_listing(currency, kind, infos, ts_recv_ns, env.usOut)
        except (msgspec.DecodeError, UnicodeError, ProtocolError) as exc:
            self._stats.rest_failed += 1
            return self._malformed(None, f"REST {url}: {exc}", body)
        except Exception as exc:  # a bug; keep the feed alive
            self._stats.internal_errors += 1
            self._error(f"internal error {exc!r} on REST {url}", body)
            log.exception("deribit: internal error on a REST body")
            return []

    # -- replies ------------------------------------------------------------------------

    def _on_subscribed(self, call: Call, result: list[str], ts: int) -> list[Event]:
        """Diff the ack with the request: a channel missing from ``result`` is a failure."""
        got = set(result)
        out: list[Event] = []
        for ch in call.channels:
            if self._rq.chan_state.get(ch) not in ("subscribing", None):
                continue  # expired or resubscribed meanwhile
            route = self._routes.get(ch) or self._route(ch)
            inst = route.inst if route is not None else None
            if ch in got:
                self._rq.chan_state[ch] = "subscribed"
                if inst is None:
                    continue
                if ch.startswith("book.") and not inst.synced:
                    inst.state = "buffering"
                    out.append(inst.status(ts, "buffering", f"subscribed {ch}"))
                elif inst.state == "disconnected":  # "missing" stays: another channel failed
                    inst.state = "subscribed"
                continue
            self._rq.chan_state[ch] = "missing"
            reason = f"public/subscribe ack lacks {ch}: not subscribed"
            log.warning("deribit: %s", reason)
            self._error(reason, b"")
            if inst is not None and not inst.pseudo:
                inst.state = "missing"
                out.append(inst.status(ts, "error", reason))
            else:
                out.append(status("*", ts, "error", "connection", reason))
        if self._flushed and not self._rq.subscribing():
            self._strikes = 0  # a whole subscription went through without a 10028
        return out

    def _on_unsubscribed(self, call: Call, result: list[str]) -> list[Event]:
        self._rq.unsubscribed(call.channels)  # book resyncs: subscribe again, a snapshot follows
        return []

    def _rpc_error(self, call: Call | None, err: RpcError, ts: int) -> list[Event]:
        method = call.method if call is not None else "a request"
        if err.code == TOO_MANY_REQUESTS:
            return self._too_many_requests(method, ts)
        reason = f"{method} failed: {err.code} {err.message}"
        log.warning("deribit: %s", reason)
        self._error(reason, bytes(err.data))
        out: list[Event] = [status("*", ts, "error", "connection", reason)]
        rq = self._rq
        if call is not None and call.method == "public/get_instruments":
            key = (call.currency, call.kind)
            rq.listing_attempts += 1
            delay_s = min(_LISTING_RETRY_CAP_S, _LISTING_RETRY_S * 2 ** (rq.listing_attempts - 1))
            rq.list_instruments(key, not_before=self._now + int(delay_s * 1e9))
            if not self._flushed:  # subscribe what the other listings gave meanwhile
                self._listings_outstanding.discard(key)
                out += self._maybe_flush(ts)
        elif call is not None and call.method == "public/subscribe":
            for ch in call.channels:
                if rq.chan_state.get(ch) == "subscribing":
                    rq.chan_state[ch] = "missing"
        elif call is not None and call.method == "public/unsubscribe":
            for ch in call.channels:
                rq.chan_state.pop(ch, None)
            rq.unsubscribed(call.channels)
        return out

    def _too_many_requests(self, method: str, ts: int) -> list[Event]:
        """10028: Deribit terminates the session. Stop sending, ask for a reconnect
        after a growing wait, and pace every later connection more slowly."""
        self._strikes += 1
        self._pace = min(_MAX_PACE, self._pace * 2)
        wait = min(_MAX_RETRY_S, self._rate_backoff_s * 2 ** (self._strikes - 1))
        reason = (f"too_many_requests (10028) on {method}: Deribit ends the session; "
                  f"reconnecting in >= {wait:g} s, requests paced {self._pace:g}x slower")
        log.warning("deribit: %s", reason)
        self._error(reason, b"")
        self._rq.stop()
        self._close = CloseRequest(reason="too_many_requests (10028)", retry_after_s=wait)
        return [status("*", ts, "error", "connection", reason)]

    # -- instruments ---------------------------------------------------------------------

    def _on_listing(self, currency: str, kind: str | None, infos: list[InstrumentInfo],
                    ts: int, us_out: int | None) -> list[Event]:
        """A ``get_instruments`` result: Instrument events, expiries, subscriptions."""
        if us_out is not None:
            self._clock(us_out // 1000)
        key = (currency, kind)
        ts_ex = None if us_out is None else us_out * parse.US
        listed, new, gone = self._chain.listing(key, infos, ts, ts_ex, self._exch_ms)
        out: list[Event] = list(listed)
        for ev in listed:  # a symbol routed before its listing came: now we know its units
            inst = self._inst.get(ev.symbol)
            found = self._chain.kind_of(ev.symbol) if inst is not None else None
            if inst is not None and found is not None:
                inst.kind, inst.size_unit = found
        for name in gone:
            out += self._expire(name, ts, "no longer listed by public/get_instruments")
        self._listings_outstanding.discard(key)
        if self._flushed:
            for name in new:
                for ch in self._channels_of(name, self._chain.meta[name].instrument_kind):
                    self._rq.want(ch)
        else:
            out += self._maybe_flush(ts)
        return out

    def _maybe_flush(self, ts: int) -> list[Event]:
        """Once every listing of this connection is in, subscribe every instrument's channels."""
        if self._flushed or self._listings_outstanding or not self._connected:
            return []
        self._flushed = True
        for name, meta in self._chain.meta.items():
            for ch in self._channels_of(name, meta.instrument_kind):
                self._rq.want(ch)
        out: list[Event] = []
        for name in self._chain.unlisted():
            reason = f"{name} is not listed by public/get_instruments: not subscribed"
            log.warning("deribit: %s", reason)
            self._error(reason, b"")
            out.append(status(name, ts, "error", reason=reason))
        return out

    def _channels_of(self, name: str, kind: str) -> list[str]:
        return self.config.channels_of(name, kind)

    def _clock(self, ts_ms: int) -> None:
        if ts_ms > self._exch_ms:
            self._exch_ms = ts_ms

    def _expire_due(self, ts: int) -> list[Event]:
        out: list[Event] = []
        for name in self._chain.due(self._exch_ms):
            out += self._expire(name, ts, "expired")
        return out

    def _expire(self, name: str, ts: int, reason: str) -> list[Event]:
        """Drop an instrument: its book, routes and subscriptions; Instrument(is_active=False)."""
        inst = self._inst.get(name)
        kind = self._chain.kind_of(name)
        if name not in self._chain.meta and inst is None:
            return []
        ev = self._chain.retire(name, ts, self._exch_ms)
        if ev is None:
            return []
        channels = set(self._channels_of(name, kind[0] if kind else "option"))
        if inst is not None:
            inst.count("instrument")
            channels |= inst.channels
            inst.drop_book("expired")
            for ch in inst.channels:
                self._routes.pop(ch, None)
                self._fast.pop(ch.encode(), None)
            inst.channels = set()
        for ch in sorted(channels):
            self._rq.forget(ch)
        log.info("deribit: %s %s; unsubscribed", name, reason)
        return [ev]

    # -- routes and handlers -------------------------------------------------------------

    def _route(self, channel: str) -> _Route | None:
        """Build (and keep) the route of a channel, or None (counted) if not ours."""
        parts = channel.split(".")
        head = parts[0]
        handlers: dict[str, tuple[Any, Any, Handler]] = {
            "book": (parse.BOOK, parse.BOOK_DATA, self._on_book),
            "ticker": (parse.TICKER, parse.TICKER_DATA, self._on_ticker),
            "trades": (parse.TRADES, parse.TRADES_DATA, self._on_trades),
        }
        if head in handlers and len(parts) == 3:
            name = parts[1]
            if name in self._chain.expired:
                self._ignore("expired instrument")
                return None
            if not self._chain.owns(name):
                self._ignore("instrument not in this core's selection or shard")
                return None
            inst = self._instrument(name)
            if inst is None:
                self._ignore(f"channel {head} of an unknown instrument kind")
                return None
            if inst.kind not in self.kinds:
                self._ignore(f"{inst.kind} channel not selected")
                return None
        elif head == "trades" and len(parts) == 4:  # trades.{kind}.{currency}.{interval}
            inst = self._pseudo(channel, "channel")
        elif head == "deribit_volatility_index" and len(parts) == 2:
            handlers = {head: (parse.DVOL, parse.DVOL_DATA, self._on_dvol)}
            inst = self._pseudo(f"{parts[1]}.dvol", "index")
        elif head == "deribit_price_index" and len(parts) == 2:
            handlers = {head: (parse.PRICE_INDEX, parse.PRICE_INDEX_DATA, self._on_price_index)}
            inst = self._pseudo(parts[1], "index")
        elif head == "markprice" and len(parts) == 3 and parts[1] == "options":
            handlers = {head: (parse.MARKPRICE, parse.MARKPRICE_DATA, self._on_markprice)}
            inst = self._pseudo(channel, "channel")
        elif head == "instrument" and len(parts) == 4 and parts[1] == "state":
            handlers = {head: (parse.INSTRUMENT_STATE, parse.INSTRUMENT_STATE_DATA,
                               self._on_instrument_state)}
            inst = self._pseudo(channel, "channel")
        else:
            self._ignore(f"channel {head}")
            return None
        frame_dec, data_dec, handler = handlers[head]
        route = _Route(channel, frame_dec, data_dec, handler, inst)
        inst.channels.add(channel)
        self._routes[channel] = route
        self._fast[channel.encode()] = route
        return route

    def _instrument(self, name: str) -> Symbol | None:
        inst = self._inst.get(name)
        if inst is not None:
            return inst
        found = self._chain.kind_of(name)
        if found is None:
            return None
        inst = self._inst[name] = Symbol(name, *found)
        return inst

    def _pseudo(self, symbol: str, kind: str) -> Symbol:
        inst = self._inst.get(symbol)
        if inst is None:
            inst = self._inst[symbol] = Symbol(symbol, kind, "base")
        return inst

    def _on_book(self, route: _Route, msg: BookData, ts: int) -> list[Event]:
        self._exch_ms = max(self._exch_ms, msg.timestamp)
        if msg.type == "snapshot":
            # A snapshot before our resync's unsubscribe went (a recording's own
            # resubscription): ours is not needed any more.
            self._rq.cancel_resubscribe(route.channel)
        out, resync = route.inst.on_book(msg, ts, self._emit_deltas, self._view_depth)
        if resync:
            out += self._resubscribe(route, ts)
        return out

    def _resubscribe(self, route: _Route, ts: int) -> list[Event]:
        """Drop the book and ask for a fresh snapshot: unsubscribe, then subscribe again."""
        inst, ch = route.inst, route.channel
        inst.resyncs += 1
        inst.drop_book("resyncing")
        self._rq.resubscribe(ch)
        return [inst.status(ts, "resyncing", f"public/unsubscribe + public/subscribe {ch}")]

    def _on_ticker(self, route: _Route, msg: TickerData, ts: int) -> list[Event]:
        inst = route.inst
        inst.messages += 1
        self._exch_ms = max(self._exch_ms, msg.timestamp)
        if inst.kind != "option":
            inst.skipped += 1
            return self._ignore("ticker of a future or perpetual")
        inst.count("option_ticker")
        return [parse.option_ticker(msg, ts)]

    def _on_trades(self, route: _Route, msgs: list[TradeData], ts: int) -> list[Event]:
        inst = route.inst
        inst.messages += 1
        out: list[Event] = []
        for m in msgs:
            self._exch_ms = max(self._exch_ms, m.timestamp)
            unit = inst.size_unit if inst.kind != "channel" else self._size_unit(m.instrument_name)
            out.append(parse.trade(m, ts, unit))
        inst.count("trade", len(out))
        return out

    def _size_unit(self, name: str) -> SizeUnit:
        inst = self._inst.get(name)
        if inst is not None:
            return inst.size_unit
        info = parse.parse_name(name)
        return parse.size_unit_of(info.kind, info.linear) if info is not None else "base"

    def _on_dvol(self, route: _Route, msg: VolatilityIndexData, ts: int) -> list[Event]:
        route.inst.messages += 1
        route.inst.count("index")
        self._clock(msg.timestamp)
        return [parse.volatility_index(msg, ts)]

    def _on_price_index(self, route: _Route, msg: PriceIndexData, ts: int) -> list[Event]:
        route.inst.messages += 1
        route.inst.count("index")
        self._clock(msg.timestamp)
        return [parse.price_index(msg, ts)]

    def _on_markprice(self, route: _Route, msgs: list[MarkPriceData], ts: int) -> list[Event]:
        route.inst.messages += 1
        out: list[Event] = []
        for m in msgs:
            self._clock(m.timestamp)
            out.append(parse.mark_iv(m, ts))
        route.inst.count("index", len(out))
        return out

    def _on_instrument_state(self, route: _Route, msg: InstrumentStateData, ts: int) -> list[Event]:
        route.inst.messages += 1
        self._clock(msg.timestamp)
        name = msg.instrument_name
        if msg.state in _TERMINAL_STATES:
            return self._expire(name, ts, f"instrument.state {msg.state}")
        if msg.state in _LISTING_STATES and self._chain.wants(name):
            # A new listing: ask for the listing again; its diff subscribes the newcomer.
            parts = route.channel.split(".")  # instrument.state.{kind}.{currency}
            self._rq.list_instruments((parts[3], parts[2]))
        return []

    # -- event helpers ----------------------------------------------------------------------

    def _ignore(self, reason: str) -> list[Event]:
        self._stats.count_ignored(reason)
        return []

    def _malformed(self, inst: Symbol | None, what: str, data: Any) -> list[Event]:
        self._stats.malformed += 1
        if inst is not None:
            inst.malformed += 1
        self._error(f"malformed {what}", data)
        return []

    def _error(self, text: str, data: Any) -> None:
        self._stats.note_error(text, data)

    # -- stats ------------------------------------------------------------------------------

    @property
    def errors(self) -> list[str]:
        """The first few problems seen, verbatim, for a human."""
        return self._stats.errors

    @property
    def instruments(self) -> dict[str, Instrument]:
        """This core's listed, unexpired instruments (a copy)."""
        return dict(self._chain.meta)

    def stats(self) -> ProtocolStats:
        """A copy of the counters: per instrument (and per index/channel pseudo-symbol)."""
        insts = {sym: i.stats() for sym, i in self._inst.items()}
        s = self._stats
        return msgspec.structs.replace(s, frames=self._frames, ignored=dict(s.ignored),
                                       errors=list(s.errors), instruments=insts)
