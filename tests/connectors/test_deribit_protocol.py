"""DeribitProtocol without an event loop: golden frames, JSON-RPC outbox, book chains.

Real frames come from ``resources/deribit/*.json`` and ``tests/data/cryptofeed/DERIBIT.*``
(see their PROVENANCE.md). Frames built by the helpers below (``book()``, ``ticker()``,
``reply()``...) are SYNTHETIC: small hand-made ids and prices that pin one rule each.
Every outbox assert is byte-exact.
"""

from __future__ import annotations

import json
import logging
import weakref
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import ConfigError
from connectors.events import (
    BookDelta,
    BookSnapshot,
    FeedStatus,
    IndexValue,
    Instrument,
    OptionTicker,
    Trade,
)
from connectors.record.detect import merge_recordings
from connectors.record.frames import Frame
from connectors.venues.deribit.books import Symbol
from connectors.venues.deribit.parse import BOOK_DATA, shard_of
from connectors.venues.deribit.protocol import DeribitProtocol

RESOURCES = Path(__file__).parent / "resources" / "deribit"
CRYPTOFEED = Path(__file__).resolve().parents[1] / "data" / "cryptofeed"
S = 1_000_000_000
T0 = 1_700_000_000 * S  # receive time of the synthetic sessions
LISTING_US_OUT = 1626993723162185  # usOut of the golden listing (2021-07-22 22:42:03)
OPTION, FUTURE, PERP = "BTC-24SEP21-8000-P", "BTC-25MAR22", "BTC-PERPETUAL"


def golden(name: str) -> bytes:
    return (RESOURCES / name).read_bytes().strip()


def req(id_: int, method: str, params: dict[str, Any]) -> str:
    """The exact text frame the core must send."""
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params},
                      separators=(",", ":"))


def reply(id_: int, result: Any, us_out: int = LISTING_US_OUT) -> bytes:
    """A SYNTHETIC JSON-RPC response."""
    return json.dumps({"jsonrpc": "2.0", "id": id_, "result": result, "usIn": us_out - 5,
                       "usOut": us_out, "usDiff": 5, "testnet": False}).encode()


def listing_reply(id_: int) -> bytes:
    """The golden (real) BTC listing answering request ``id_``."""
    return golden("get_instruments_btc.json").replace(b'{"jsonrpc":"2.0",', b'{"jsonrpc":"2.0","id":%d,' % id_, 1)


def notification(channel: str, data: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": "subscription",
                       "params": {"channel": channel, "data": data}}, separators=(",", ":")).encode()


def book(name: str, change_id: int, prev: int | None = None, bids=(), asks=(), ts_ms: int = 1626993724000,
         interval: str = "100ms") -> bytes:
    """A SYNTHETIC book notification: a snapshot when ``prev`` is None, else a change."""
    data: dict[str, Any] = {"type": "snapshot" if prev is None else "change", "timestamp": ts_ms,
                            "instrument_name": name, "change_id": change_id,
                            "bids": [list(b) for b in bids], "asks": [list(a) for a in asks]}
    if prev is not None:
        data["prev_change_id"] = prev
    return notification(f"book.{name}.{interval}", data)


def ticker(name: str, ts_ms: int, interval: str = "100ms") -> bytes:
    """A SYNTHETIC option ticker."""
    return notification(f"ticker.{name}.{interval}", {
        "timestamp": ts_ms, "instrument_name": name, "underlying_price": 32000.0,
        "underlying_index": "BTC-24SEP21", "index_price": 31900.0, "mark_price": 0.001,
        "mark_iv": 100.0, "bid_iv": 90.0, "ask_iv": 110.0, "best_bid_price": 0.0005,
        "best_bid_amount": 1.0, "best_ask_price": 0.0015, "best_ask_amount": 2.0})


_SENT: weakref.WeakKeyDictionary[DeribitProtocol, list[str]] = weakref.WeakKeyDictionary()


def drain(p: DeribitProtocol) -> list[str]:
    """``frames_to_send()``, remembered (as the shell would send them)."""
    frames = p.frames_to_send()
    _SENT.setdefault(p, []).extend(frames)
    return frames


def last_id(p: DeribitProtocol) -> int:
    """The id of the last request sent."""
    return int(json.loads(_SENT[p][-1])["id"])


def sent_ids(p: DeribitProtocol, method: str) -> list[int]:
    return [m["id"] for m in map(json.loads, _SENT.get(p, [])) if m["method"] == method]


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def states(events):
    return [(e.symbol, e.state) for e in of(events, FeedStatus)]


def opened(**kw: Any) -> DeribitProtocol:
    """A BTC core, connected at T0, its first requests sent (ids 1 and 2)."""
    options: dict[str, Any] = {"currencies": ["BTC"], "dvol": False, "price_index": False,
                               "instrument_state": False}
    options.update(kw)
    p = DeribitProtocol(**options)
    p.connection_opened(T0)
    drain(p)
    return p


def subscribed(**kw: Any) -> DeribitProtocol:
    """A BTC core whose golden listings are in and whose channels are subscribed (every
    subscribe acked in full). With the default options the ids are 1 set_heartbeat,
    2 get_instruments option, 3 get_instruments future, 4 subscribe."""
    p = opened(**kw)
    p.receive_frame(listing_reply(sent_ids(p, "public/get_instruments")[0]), T0 + S // 10)
    p.on_timer(T0 + S + 1)
    drain(p)
    p.receive_frame(listing_reply(sent_ids(p, "public/get_instruments")[1]), T0 + S + S // 10)
    drain(p)
    for m in map(json.loads, _SENT[p]):
        if m["method"] == "public/subscribe":
            p.receive_frame(reply(m["id"], m["params"]["channels"]), T0 + 2 * S)
    return p


def synced_books(**kw: Any) -> DeribitProtocol:
    """``subscribed()`` with the future's and the perpetual's books at change_id 10."""
    p = subscribed(**kw)
    for name in (FUTURE, PERP):
        ev = p.receive_frame(book(name, 10, bids=[("new", 99.5, 10.0)], asks=[("new", 100.0, 20.0)]),
                             T0 + 3 * S)
        assert (name, "synced") in states(ev)
    return p


# -- configuration ------------------------------------------------------------------------


def test_stream_url_rest_base_and_no_rest_requests():
    p = DeribitProtocol()
    assert p.stream_url() == "wss://www.deribit.com/ws/api/v2"
    assert p.stream_url("ws://127.0.0.1:8001/") == "ws://127.0.0.1:8001/ws/api/v2"
    assert p.rest_base == "https://www.deribit.com"
    assert p.rest_requests() == []
    assert drain(p) == []  # nothing before a connection
    assert p.deadline_ns() is None


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"currencies": []}, "currencies"),
        ({"currencies": ["BTC", "btc"]}, "currencies"),
        ({"currencies": ["BTC/USD"]}, "currencies"),
        ({"kinds": ["spot"]}, "kinds"),
        ({"option_channels": ["quote"]}, "option_channels"),
        ({"future_channels": ["ticker"]}, "future_channels"),
        ({"interval": "1s"}, "interval"),
        ({"heartbeat_s": 0}, "heartbeat_s"),
        ({"shard": 2, "shards": 2}, "shard"),
        ({"shards": 0}, "shard"),
        ({"book_view_depth": 0}, "book_view_depth"),
        ({"instruments": []}, "instruments"),
        ({"subscribe_per_s": 0}, "subscribe_per_s"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_bad_configuration_is_refused(options, match):
    with pytest.raises(ConfigError, match=match):
        DeribitProtocol(**options)


# -- connect: heartbeat, currency channels, paced listings ---------------------------------


def test_connect_sends_heartbeat_currency_channels_and_paces_the_listings():
    # Arrange
    p = DeribitProtocol(currencies=["BTC", "ETH"], kinds=["option", "perpetual"])

    # Act
    events = p.connection_opened(T0)
    first = drain(p)

    # Assert: heartbeat and currency channels at once, one listing (1 per second).
    assert states(events) == [("*", "connected")]
    assert first == [
        req(1, "public/set_heartbeat", {"interval": 30}),
        req(2, "public/subscribe", {"channels": [
            "deribit_volatility_index.btc_usd", "deribit_price_index.btc_usd",
            "deribit_volatility_index.eth_usd", "deribit_price_index.eth_usd",
            "instrument.state.option.BTC", "instrument.state.future.BTC",
            "instrument.state.option.ETH", "instrument.state.future.ETH"]}),
        req(3, "public/get_instruments", {"currency": "BTC", "kind": "option", "expired": False}),
    ]
    assert drain(p) == []
    assert p.deadline_ns() == T0 + S + 1  # the next listing's token (rounded up)
    assert p.on_timer(T0 + S - 1) == [] and drain(p) == []  # early: nothing
    p.on_timer(T0 + S + 1)
    assert drain(p) == [req(4, "public/get_instruments",
                                      {"currency": "BTC", "kind": "future", "expired": False})]
    p.on_timer(T0 + 3 * S)
    assert drain(p) == [req(5, "public/get_instruments",
                                      {"currency": "ETH", "kind": "option", "expired": False})]


def test_listings_give_instruments_then_one_batched_subscribe():
    # Arrange
    p = opened(book_view_depth=None)

    # Act: the option listing, then (a second later) the future listing
    ev_opt = p.receive_frame(listing_reply(2), T0 + S // 10)
    after_first = drain(p)
    p.on_timer(T0 + S)
    drain(p)
    ev_fut = p.receive_frame(listing_reply(3), T0 + S + S // 10)
    sub = drain(p)

    # Assert: each listing keeps its kind; nothing is subscribed until both are in.
    assert [e.symbol for e in of(ev_opt, Instrument)] == [OPTION]
    assert after_first == []
    assert [e.symbol for e in of(ev_fut, Instrument)] == [FUTURE, PERP]
    assert sub == [req(4, "public/subscribe", {"channels": [
        f"ticker.{OPTION}.100ms", f"book.{FUTURE}.100ms", f"trades.{FUTURE}.100ms",
        f"book.{PERP}.100ms", f"trades.{PERP}.100ms"]})]
    opt, fut, perp = of(ev_opt, Instrument)[0], *of(ev_fut, Instrument)
    assert (opt.instrument_kind, opt.strike, opt.option_type, opt.expiry_ns, opt.contract_size,
            opt.tick_size, opt.min_size, opt.base, opt.quote, opt.settle) == (
        "option", 8000.0, "P", 1632470400000 * 1_000_000, 1.0, 0.0005, 0.1, "BTC", "BTC", "BTC")
    assert (fut.instrument_kind, fut.expiry_ns, fut.contract_size, fut.quote, fut.settle) == (
        "future", 1648195200000 * 1_000_000, 10.0, "USD", "BTC")
    assert (perp.instrument_kind, perp.expiry_ns, perp.tick_size) == ("perpetual", None, 0.5)
    assert opt.ts_exchange_ns == LISTING_US_OUT * 1000 and opt.ts_recv_ns == T0 + S // 10


def test_ack_buffers_books_and_a_snapshot_syncs_them():
    p = opened()
    p.receive_frame(listing_reply(2), T0 + 1)
    p.on_timer(T0 + S)
    drain(p)
    p.receive_frame(listing_reply(3), T0 + S + 1)
    [sub] = drain(p)
    ack = p.receive_frame(reply(4, json.loads(sub)["params"]["channels"]), T0 + 2 * S)
    assert states(ack) == [(FUTURE, "buffering"), (PERP, "buffering")]
    ev = p.receive_frame(book(PERP, 10, bids=[("new", 99.5, 10.0)], asks=[("new", 100.0, 20.0)]), T0 + 3 * S)
    assert states(ev) == [(PERP, "synced")]
    [snap] = of(ev, BookSnapshot)
    assert (snap.bids, snap.asks, snap.seq, snap.size_unit, snap.depth) == (
        [(99.5, 10.0)], [(100.0, 20.0)], 10, "quote", None)  # perpetual amounts are USD


# -- golden frames ------------------------------------------------------------------------------


def test_option_ticker_golden_units_normalized():
    # Arrange
    p = DeribitProtocol()

    # Act
    [t] = p.receive_frame(golden("ticker_option.json"), 7)

    # Assert: IV percent -> decimal, prices in coin with the index beside them.
    assert isinstance(t, OptionTicker)
    assert (t.symbol, t.venue, t.ts_exchange_ns, t.ts_recv_ns) == (OPTION, "deribit", 1626993722929 * 10**6, 7)
    assert (t.mark_iv, t.bid_iv, t.ask_iv) == (1.4278, 1.33, 1.5271)
    assert (t.mark_price, t.price_unit, t.index_price, t.underlying_price, t.underlying_index) == (
        0.00090376, "base_coin", 32201.67, 32366.75, "BTC-24SEP21")
    assert (t.best_bid_price, t.best_bid_size, t.best_ask_price, t.best_ask_size) == (0.0005, 153.1, 0.0015, 94.7)
    assert (t.delta, t.gamma, t.vega, t.theta, t.rho) == (-0.00407, 0.0, 1.62145, -1.82613, -0.27934)
    assert (t.open_interest, t.interest_rate) == (729.2, 0.0)


def test_option_ticker_with_empty_sides_has_none_not_zero():
    [t] = DeribitProtocol().receive_frame(golden("ticker_option_no_bid.json"), 7)
    assert t.symbol == "ETH-27AUG21-4000-P" and t.mark_iv == 1.172
    assert (t.bid_iv, t.ask_iv, t.best_bid_price, t.best_bid_size, t.best_ask_price, t.best_ask_size) == (
        None, None, None, None, None, None)


def test_book_snapshot_and_change_golden():
    # Arrange
    p = DeribitProtocol(book_view_depth=2)

    # Act
    ev1 = p.receive_frame(golden("book_snapshot.json"), 1)
    ev2 = p.receive_frame(golden("book_change.json"), 2)

    # Assert
    assert states(ev1) == [(OPTION, "synced")]
    full, view = of(ev1, BookSnapshot)
    assert full.depth is None and full.seq == 33195894164 and full.size_unit == "base"
    assert full.bids == [(0.0005, 153.1)] and full.asks[:3] == [(0.0015, 94.7), (0.002, 22.0), (0.0025, 1.0)]
    assert len(full.asks) == 14 and view.asks == [(0.0015, 94.7), (0.002, 22.0)]
    [delta] = of(ev2, BookDelta)
    assert (delta.bids, delta.asks, delta.seq, delta.prev_seq, delta.ts_exchange_ns) == (
        [], [(0.001, 2.6)], 33195894355, 33195894164, 1626993724318 * 10**6)
    [view2] = of(ev2, BookSnapshot)
    assert view2.asks == [(0.001, 2.6), (0.0015, 94.7)] and view2.seq == 33195894355


def test_recorded_subscribe_and_ack_golden_are_matched():
    # Arrange: a recording's sent frame registers its id, so its ack can be diffed.
    p = DeribitProtocol(currencies=["BTC", "ETH"], option_channels=["ticker", "book", "trades"], interval="raw")
    p.feed_frame(Frame(1, "c", "open", b"", "wss://www.deribit.com/ws/api/v2"))

    # Act
    p.feed_frame(Frame(2, "c", "sent", golden("subscribe_request.json")))
    ev = p.feed_frame(Frame(3, "c", "recv", golden("subscribe_ack.json")))

    # Assert: all 30 channels acked: the 10 books buffering, no error.
    requested = json.loads(golden("subscribe_request.json"))["params"]["channels"]
    books = [ch.split(".")[1] for ch in requested if ch.startswith("book.")]
    assert len(requested) == 30 and len(books) == 10
    assert sorted(states(ev)) == sorted((name, "buffering") for name in books)
    assert p.errors == []


def test_dvol_and_price_index_golden():
    p = DeribitProtocol()
    [dvol] = p.receive_frame(golden("volatility_index.json"), 1)
    [index] = p.receive_frame(golden("price_index.json"), 2)
    assert isinstance(dvol, IndexValue) and isinstance(index, IndexValue)
    assert (dvol.symbol, dvol.name, dvol.value, dvol.value_unit, dvol.ts_exchange_ns) == (
        "btc_usd.dvol", "btc_usd.dvol", 1.2936, "vol_decimal", 1619777946007 * 10**6)
    assert (index.symbol, index.value, index.value_unit) == ("btc_usd", 6521.17, "usd")
    assert p.stats().instruments["btc_usd.dvol"].messages == 1


def test_markprice_options_iv_is_kept_as_decimal():
    frame = notification("markprice.options.btc_usd", [  # SYNTHETIC values, documented shape
        {"timestamp": 1, "instrument_name": "BTC-24SEP21-8000-P", "mark_price": 0.0333, "iv": 0.9},
        {"timestamp": 1, "instrument_name": "BTC-24SEP21-9000-P", "mark_price": 0.05, "iv": 0.85}])
    ev = DeribitProtocol(markprice=True).receive_frame(frame, 1)
    assert [(e.symbol, e.name, e.value, e.value_unit) for e in ev] == [
        ("BTC-24SEP21-8000-P", "markprice:BTC-24SEP21-8000-P", 0.9, "vol_decimal"),
        ("BTC-24SEP21-9000-P", "markprice:BTC-24SEP21-9000-P", 0.85, "vol_decimal")]


def test_trades_keep_amount_units_and_option_iv_decimal():
    perp = DeribitProtocol().receive_frame(golden("trades_perpetual.json"), 1)
    [opt] = DeribitProtocol(option_channels=["trades"]).receive_frame(golden("trades_option.json"), 2)
    assert [(t.price, t.size, t.side, t.trade_id, t.size_unit, t.liquidation) for t in perp] == [
        (50000.5, 20.0, "sell", "900001", "quote", False), (50001.0, 10.0, "buy", "900002", "quote", True)]
    assert isinstance(opt, Trade) and (opt.iv, opt.size, opt.size_unit, opt.index_price) == (1.405, 1.5, "base", 32200.0)


# -- heartbeat, liveness, rate limit ------------------------------------------------------------


def test_test_request_is_answered_with_public_test_at_once():
    # Arrange: the subscribe bucket is spent (burst 1, one call a minute) and channels
    # wait in it; heartbeat answers are not paced.
    p = opened(subscribe_burst=1, subscribe_per_s=1 / 60, dvol=True)
    p.receive_frame(listing_reply(sent_ids(p, "public/get_instruments")[0]), T0 + 1)
    assert drain(p) == []

    # Act
    ev = p.receive_frame(golden("heartbeat_test_request.json"), T0 + 5 * S)

    # Assert: public/test, then the future listing whose second had come; no subscribe.
    assert ev == []
    assert drain(p) == [req(4, "public/test", {}), req(5, "public/get_instruments",
                                                       {"currency": "BTC", "kind": "future", "expired": False})]
    assert p.receive_frame(reply(4, {"version": "1.2.26"}), T0 + 5 * S + 1) == []
    assert p.receive_frame(b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}', T0 + 6 * S) == []
    assert drain(p) == [] and p.stats().malformed == 0


def test_two_intervals_without_a_frame_mean_a_dead_connection():
    # Arrange
    p = opened(heartbeat_s=10)
    p.receive_frame(golden("heartbeat_test_request.json"), T0 + 5 * S)

    # Act / Assert: the deadline moves with every frame; silence for 20 s is death.
    assert p.deadline_ns() == T0 + 5 * S  # the future listing is due: come back at once
    assert [json.loads(f)["method"] for f in drain(p)] == ["public/test", "public/get_instruments"]
    assert p.deadline_ns() == T0 + 25 * S
    assert p.on_timer(T0 + 25 * S - 1) == [] and p.close_requested() is None
    [stale] = p.on_timer(T0 + 25 * S)
    assert (stale.symbol, stale.state, stale.scope) == ("*", "stale", "connection")
    req_ = p.close_requested()
    assert req_ is not None and req_.retry_after_s == 0 and "no frame for 20.0 s" in req_.reason
    assert drain(p) == [] and p.deadline_ns() is None
    # The shell closes; the next connection starts clean.
    p.connection_lost(T0 + 26 * S, req_.reason)
    p.connection_opened(T0 + 27 * S)
    assert p.close_requested() is None and len(drain(p)) == 2


def test_too_many_requests_ends_the_session_and_slows_the_next_one(caplog):
    # Arrange
    p = opened(rate_limit_backoff_s=10.0)

    # Act: Deribit answers the option listing (id 2) with 10028
    with caplog.at_level(logging.WARNING, "volcast.connectors.deribit"):
        ev = p.receive_frame(golden("error_too_many_requests.json").replace(b'"id":5', b'"id":2'), T0 + 1)

    # Assert: an error, a close request with a wait, and nothing more to send.
    [err] = of(ev, FeedStatus)
    assert (err.state, err.scope) == ("error", "connection") and "10028" in err.reason
    assert "too_many_requests" in caplog.text
    close = p.close_requested()
    assert close is not None and close.retry_after_s == 10.0
    p.on_timer(T0 + 5 * S)
    assert drain(p) == []
    # The next connection paces its listings twice as slowly.
    p.connection_lost(T0 + 2 * S, "1000 too_many_requests")
    p.connection_opened(T0 + 20 * S)
    assert drain(p) == [req(3, "public/set_heartbeat", {"interval": 30}),
                                  req(4, "public/get_instruments", {"currency": "BTC", "kind": "option", "expired": False})]
    p.on_timer(T0 + 21 * S + 1)
    assert drain(p) == []
    p.on_timer(T0 + 22 * S + 1)
    assert len(drain(p)) == 1
    # A second 10028 in a row doubles the wait.
    p.receive_frame(golden("error_too_many_requests.json").replace(b'"id":5', b'"id":4'), T0 + 23 * S)
    assert p.close_requested().retry_after_s == 20.0


def test_other_rpc_errors_are_reported_and_a_failed_listing_is_retried():
    p = opened()
    err = b'{"jsonrpc":"2.0","id":2,"error":{"code":11050,"message":"bad_request"},"testnet":false}'
    [ev] = p.receive_frame(err, T0 + 1)
    assert (ev.state, ev.reason) == ("error", "public/get_instruments failed: 11050 bad_request")
    assert p.close_requested() is None
    p.on_timer(T0 + S + 1)  # the future listing goes; the option's retry waits 2 s
    assert drain(p) == [req(3, "public/get_instruments", {"currency": "BTC", "kind": "future", "expired": False})]
    p.on_timer(T0 + 2 * S + 2)
    assert drain(p) == [req(4, "public/get_instruments", {"currency": "BTC", "kind": "option", "expired": False})]


# -- book chains ---------------------------------------------------------------------------------


def test_a_gap_resubscribes_only_that_channel_while_the_other_book_stays_synced():
    # Arrange
    p = synced_books()
    assert drain(p) == []

    # Act 1: the perpetual's chain breaks (prev 11, the book is at 10)
    ev = p.receive_frame(book(PERP, 12, prev=11, asks=[("new", 100.5, 1.0)]), T0 + 4 * S)

    # Assert 1: gap + resyncing for the perpetual only; unsubscribe of that one channel.
    assert states(ev) == [(PERP, "gap"), (PERP, "resyncing")]
    gap = of(ev, FeedStatus)[0]
    assert (gap.expected_seq, gap.got_seq) == (10, 11)
    assert drain(p) == [req(5, "public/unsubscribe", {"channels": [f"book.{PERP}.100ms"]})]

    # Act 2: the other book goes on; the perpetual's changes in flight are not applied.
    other = p.receive_frame(book(FUTURE, 11, prev=10, bids=[("change", 99.5, 5.0)]), T0 + 4 * S + 1)
    stale = p.receive_frame(book(PERP, 13, prev=12, bids=[("new", 99.0, 1.0)]), T0 + 4 * S + 2)

    # Assert 2
    assert [d.seq for d in of(other, BookDelta)] == [11] and stale == []
    stats = p.stats().instruments
    assert (stats[FUTURE].state, stats[FUTURE].gaps, stats[FUTURE].best_bid) == ("synced", 0, 99.5)
    assert (stats[PERP].state, stats[PERP].gaps, stats[PERP].skipped, stats[PERP].levels) == ("resyncing", 1, 1, 0)

    # Act 3: unsubscribed -> subscribe again -> a fresh snapshot
    assert p.receive_frame(reply(5, [f"book.{PERP}.100ms"]), T0 + 5 * S) == []
    assert drain(p) == [req(6, "public/subscribe", {"channels": [f"book.{PERP}.100ms"]})]
    ack = p.receive_frame(reply(6, [f"book.{PERP}.100ms"]), T0 + 5 * S + 1)
    snap = p.receive_frame(book(PERP, 20, bids=[("new", 98.0, 3.0)], asks=[("new", 101.0, 4.0)]), T0 + 6 * S)

    # Assert 3: buffering, then synced on the new snapshot only (no ghost levels).
    assert states(ack) == [(PERP, "buffering")]
    assert states(snap) == [(PERP, "synced")]
    assert of(snap, BookSnapshot)[0].bids == [(98.0, 3.0)]
    assert p.stats().instruments[PERP].syncs == 2 and p.stats().instruments[PERP].resyncs == 1


def test_a_crossed_book_is_resynced():
    p = synced_books()
    ev = p.receive_frame(book(FUTURE, 11, prev=10, bids=[("new", 100.0, 1.0)]), T0 + 4 * S)
    assert states(ev) == [(FUTURE, "crossed"), (FUTURE, "resyncing")]
    assert drain(p) == [req(5, "public/unsubscribe", {"channels": [f"book.{FUTURE}.100ms"]})]


def test_gap_resyncs_are_batched_and_paced():
    # Arrange: burst 1, one subscribe call a second
    p = synced_books(subscribe_burst=1, subscribe_per_s=1.0)

    # Act: both books break at the same moment
    p.receive_frame(book(PERP, 12, prev=11), T0 + 10 * S)
    p.receive_frame(book(FUTURE, 12, prev=11), T0 + 10 * S + 1)

    # Assert: one unsubscribe call for both channels
    assert drain(p) == [req(5, "public/unsubscribe", {"channels": [f"book.{PERP}.100ms", f"book.{FUTURE}.100ms"]})]
    p.receive_frame(reply(5, [f"book.{PERP}.100ms", f"book.{FUTURE}.100ms"]), T0 + 10 * S + 2)
    assert drain(p) == []  # the bucket refills at one call a second
    assert T0 + 11 * S <= p.deadline_ns() <= T0 + 11 * S + 2
    p.on_timer(p.deadline_ns())
    assert drain(p) == [req(6, "public/subscribe", {"channels": [f"book.{PERP}.100ms", f"book.{FUTURE}.100ms"]})]


def test_a_snapshot_before_our_unsubscribe_went_cancels_the_resync():
    p = synced_books(subscribe_burst=1, subscribe_per_s=0.01)  # the unsubscribe cannot go yet
    p.receive_frame(book(PERP, 12, prev=11), T0 + 4 * S)
    ev = p.receive_frame(book(PERP, 30, bids=[("new", 97.0, 1.0)]), T0 + 4 * S + 1)
    assert states(ev) == [(PERP, "synced")]
    p.on_timer(T0 + 1000 * S)
    assert drain(p) == []


# -- expiry and listings -------------------------------------------------------------------------


def test_an_instrument_expiring_mid_run_is_dropped_and_unsubscribed():
    # Arrange: the option is subscribed (ticker); its expiry is 2021-09-24 08:00 UTC
    p = subscribed()
    expiry_ms = 1632470400000
    before = p.receive_frame(ticker(OPTION, expiry_ms - 1), T0 + 10 * S)
    assert len(of(before, OptionTicker)) == 1

    # Act: any frame whose exchange time reaches the expiry (here the perpetual's book)
    ev = p.receive_frame(book(PERP, 10, ts_ms=expiry_ms), T0 + 11 * S)

    # Assert: Instrument(is_active=False), unsubscribe, later frames ignored.
    [gone] = of(ev, Instrument)
    assert (gone.symbol, gone.is_active, gone.strike, gone.ts_exchange_ns) == (OPTION, False, 8000.0, expiry_ms * 10**6)
    assert drain(p) == [req(5, "public/unsubscribe", {"channels": [f"ticker.{OPTION}.100ms"]})]
    assert p.receive_frame(ticker(OPTION, expiry_ms + 5), T0 + 12 * S) == []
    assert p.stats().instruments[OPTION].state == "expired"
    assert OPTION not in p.instruments and set(p.instruments) == {FUTURE, PERP}
    assert f"ticker.{OPTION}.100ms" not in p.wanted_channels()


def test_instrument_state_terminated_retires_the_instrument():
    p = subscribed(instrument_state=True)
    n = last_id(p)
    [gone] = p.receive_frame(golden("instrument_state_terminated.json"), T0 + 10 * S)
    assert (gone.symbol, gone.is_active) == (OPTION, False)
    assert drain(p) == [req(n + 1, "public/unsubscribe", {"channels": [f"ticker.{OPTION}.100ms"]})]


def test_a_new_listing_is_fetched_again_and_subscribed():
    # Arrange
    p = subscribed(instrument_state=True)
    n = last_id(p)
    created = notification("instrument.state.option.BTC", {  # SYNTHETIC
        "timestamp": 1626993800000, "state": "created", "instrument_name": "BTC-24SEP21-9000-P"})

    # Act
    assert p.receive_frame(created, T0 + 10 * S) == []
    [listing] = drain(p)
    new = json.loads(golden("get_instruments_btc.json"))["result"]
    new[1] = dict(new[1], instrument_name="BTC-24SEP21-9000-P", strike=9000.0)  # SYNTHETIC sibling
    body = json.dumps({"jsonrpc": "2.0", "id": n + 1, "result": new, "usOut": LISTING_US_OUT + 10**8}).encode()
    ev = p.receive_frame(body, T0 + 11 * S)

    # Assert: the new option is listed and subscribed; the old one, no longer listed, retired.
    assert listing == req(n + 1, "public/get_instruments", {"currency": "BTC", "kind": "option", "expired": False})
    assert [(e.symbol, e.is_active) for e in of(ev, Instrument)] == [("BTC-24SEP21-9000-P", True), (OPTION, False)]
    assert drain(p) == [
        req(n + 2, "public/unsubscribe", {"channels": [f"ticker.{OPTION}.100ms"]}),
        req(n + 3, "public/subscribe", {"channels": ["ticker.BTC-24SEP21-9000-P.100ms"]})]


def test_expired_instruments_in_a_listing_are_left_out():
    p = opened()
    p.receive_frame(reply(99, {"version": "x"}, us_out=1632470400000 * 1000), T0)  # exchange clock past the expiry
    ev = p.receive_frame(listing_reply(2), T0 + 1)
    assert of(ev, Instrument) == []


def test_named_instruments_missing_from_the_listings_are_reported():
    # Arrange: futures only, so one listing (id 2); one name Deribit does not list
    p = opened(instruments=[PERP, "BTC-1JAN30"], kinds=["perpetual", "future"])

    # Act
    ev = p.receive_frame(listing_reply(2), T0 + 1)

    # Assert
    assert [e.symbol for e in of(ev, Instrument)] == [PERP]
    assert states(ev) == [("BTC-1JAN30", "error")]
    assert drain(p) == [req(3, "public/subscribe", {"channels": [f"book.{PERP}.100ms", f"trades.{PERP}.100ms"]})]


# -- subscribe ack diff -------------------------------------------------------------------------


def test_a_channel_missing_from_the_subscribe_ack_is_an_error(caplog):
    # Arrange
    p2 = DeribitProtocol(currencies=["BTC"], dvol=True, price_index=True, instrument_state=False)
    p2.connection_opened(T0)
    frames = drain(p2)
    assert frames[1] == req(2, "public/subscribe", {"channels": ["deribit_volatility_index.btc_usd",
                                                                 "deribit_price_index.btc_usd"]})

    # Act: Deribit acks only the price index
    with caplog.at_level(logging.WARNING, "volcast.connectors.deribit"):
        ev = p2.receive_frame(reply(2, ["deribit_price_index.btc_usd"]), T0 + 1)

    # Assert
    [err] = of(ev, FeedStatus)
    assert (err.symbol, err.state, err.scope) == ("*", "error", "connection")
    assert err.reason == "public/subscribe ack lacks deribit_volatility_index.btc_usd: not subscribed"
    assert "deribit_volatility_index.btc_usd" in caplog.text
    assert any("deribit_volatility_index.btc_usd" in e for e in p2.errors)


def test_an_instrument_channel_missing_from_the_ack_marks_that_instrument():
    p = opened()
    p.receive_frame(listing_reply(2), T0 + 1)
    p.on_timer(T0 + S)
    drain(p)
    p.receive_frame(listing_reply(3), T0 + S + 1)
    drain(p)
    acked = [f"ticker.{OPTION}.100ms", f"book.{FUTURE}.100ms", f"trades.{FUTURE}.100ms", f"trades.{PERP}.100ms"]
    ev = p.receive_frame(reply(4, acked), T0 + 2 * S)
    assert states(ev) == [(FUTURE, "buffering"), (PERP, "error")]
    assert p.stats().instruments[PERP].state == "missing"
    assert of(ev, FeedStatus)[1].reason == f"public/subscribe ack lacks book.{PERP}.100ms: not subscribed"


# -- malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"jsonrpc":"2.0"}',
        b'{"jsonrpc":"2.0","method":"subscription","params":{}}',
        book(PERP, 10, bids=[("new", -1.0, 1.0)]),  # negative price
        book(PERP, 10, bids=[("replace", 1.0, 1.0)]),  # unknown action
        notification(f"ticker.{OPTION}.100ms", {"timestamp": "soon"}),
        notification(f"ticker.{OPTION}.100ms", {"timestamp": 1, "instrument_name": OPTION,
                                                 "mark_price": 0.1, "index_price": 1.0}),  # no underlying
        notification("deribit_volatility_index.btc_usd", {"volatility": 50}),
        b'{"jsonrpc":"2.0","id":1,"result":["x"]}' + b"}",
    ],
)
def test_malformed_frames_are_counted_and_skipped(frame):
    # Arrange
    p = synced_books()
    before = p.stats().malformed

    # Act
    ev = p.receive_frame(frame, T0 + 5 * S)

    # Assert: never raises, counted; the next good frame still works.
    assert ev == []
    assert p.stats().malformed == before + 1
    assert p.stats().internal_errors == 0
    assert of(p.receive_frame(book(FUTURE, 11, prev=10), T0 + 6 * S), BookDelta)


def test_unknown_channels_methods_and_ids_are_ignored_not_malformed():
    p = DeribitProtocol()
    for frame in (notification("quote.BTC-PERPETUAL", {"x": 1}), notification("book.BTC-PERPETUAL.1.10.100ms", {}),
                  b'{"jsonrpc":"2.0","id":77,"result":"ok"}', b'{"jsonrpc":"2.0","method":"other","params":{}}',
                  notification("ticker.BTC-FS-24SEP21_PERP.100ms", {})):
        assert p.receive_frame(frame, 1) == []
    s = p.stats()
    assert s.malformed == 0 and sum(s.ignored.values()) == 5 and s.frames == 5


def test_a_str_frame_is_accepted():
    [t] = DeribitProtocol().receive_frame(golden("ticker_option.json").decode(), 7)
    assert t.mark_iv == 1.4278


# -- shards ---------------------------------------------------------------------------------------


def test_shards_partition_the_listing_and_only_shard_0_takes_currency_channels():
    # Arrange: the real BTC and ETH listings (824 instruments)
    rest = [f for f in merge_recordings([CRYPTOFEED / "DERIBIT.0"]) if f.kind == "rest"]
    n = 4

    # Act
    per_shard = []
    for i in range(n):
        p = DeribitProtocol(shard=i, shards=n)
        names = {e.symbol for f in rest for e in of(p.feed_frame(f), Instrument)}
        per_shard.append((names, p.wanted_channels()))

    # Assert: disjoint, complete, deterministic; DVOL/index on shard 0 only.
    everything = set().union(*(names for names, _ in per_shard))
    assert len(everything) == 824 and sum(len(names) for names, _ in per_shard) == 824
    assert all(shard_of(name, n) == i for i, (names, _) in enumerate(per_shard) for name in names)
    assert all(100 < len(names) < 320 for names, _ in per_shard)
    assert "deribit_volatility_index.btc_usd" in per_shard[0][1]
    assert all("deribit_volatility_index.btc_usd" not in chans for _, chans in per_shard[1:])
    assert all("instrument.state.option.BTC" in chans for _, chans in per_shard)


def test_a_shard_ignores_notifications_of_other_shards():
    name = next(n for n in (OPTION, "BTC-24SEP21-9000-P", "BTC-24SEP21-10000-P") if shard_of(n, 2) == 1)
    p0 = DeribitProtocol(shard=0, shards=2)
    assert p0.receive_frame(ticker(name, 1), 1) == []
    assert len(DeribitProtocol(shard=1, shards=2).receive_frame(ticker(name, 1), 1)) == 1


# -- the real capture -------------------------------------------------------------------------


class DecimalBook:
    """Independent oracle: the Deribit steps on the raw JSON with Decimal prices."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.change_id: int | None = None

    def apply(self, data: dict[str, Any]) -> None:
        if data["type"] == "snapshot":
            self.bids, self.asks = {}, {}
        else:
            assert data["prev_change_id"] == self.change_id
        for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
            for action, px, amount in levels:
                if action == "delete":
                    side.pop(Decimal(str(px)), None)
                else:
                    side[Decimal(str(px))] = Decimal(str(amount))
        self.change_id = data["change_id"]


def test_the_cryptofeed_capture_gives_every_ticker_and_the_oracle_books():
    # Arrange
    files = [CRYPTOFEED / "DERIBIT.ws.1.0", CRYPTOFEED / "DERIBIT.0"]
    p = DeribitProtocol(option_channels=["ticker", "book", "trades"], interval="raw")
    oracle: dict[str, DecimalBook] = {}
    events = []

    # Act
    for frame in merge_recordings(files):
        events += p.feed_frame(frame)
        if frame.kind == "recv" and b'"channel":"book.' in frame.payload:
            data = json.loads(frame.payload)["params"]["data"]
            oracle.setdefault(data["instrument_name"], DecimalBook()).apply(data)

    # Assert: 89 tickers, 10 books synced once, 36 changes, no gap; books equal the oracle.
    stats = p.stats()
    assert stats.malformed == 0 and stats.errors == [] and stats.rest_ok == 2
    assert len(of(events, OptionTicker)) == 89 and len(of(events, BookDelta)) == 36
    assert len(of(events, Instrument)) == 824
    books = {n: s for n, s in stats.instruments.items() if s.syncs}
    assert len(books) == 10 and all(s.gaps == 0 and s.state == "synced" for s in books.values())
    for name, ref in oracle.items():
        sym = p._inst[name]  # the book itself, to compare every level
        assert sym.book is not None
        bids, asks = sym.book.levels()
        assert [(Decimal(str(px)), Decimal(str(a))) for px, a in bids] == sorted(ref.bids.items(), reverse=True)
        assert [(Decimal(str(px)), Decimal(str(a))) for px, a in asks] == sorted(ref.asks.items())
        assert sym.last == ref.change_id
    ivs = [t.mark_iv for t in of(events, OptionTicker)]
    assert all(0.3 < iv < 3.0 for iv in ivs)  # decimals, not percent
    assert sum(t.bid_iv is None for t in of(events, OptionTicker)) == 13


# -- property: the change_id chain on SYNTHETIC sequences ------------------------------------------

LADDER = [round(0.0005 * k, 4) for k in range(1, 40)]


def _snapshot_msg(change_id: int, book: dict[float, float], ts: int) -> dict[str, Any]:
    return {"type": "snapshot", "timestamp": ts, "instrument_name": "X", "change_id": change_id,
            "bids": [["new", p, a] for p, a in sorted(book.items(), reverse=True)], "asks": []}


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[bool], dict[float, float]]:
    """A SYNTHETIC venue book and its change chain, delivered with some changes lost and
    some fresh snapshots (resubscriptions) in between.

    Returns the delivered ``data`` of each book message, whether a change was lost just
    before each one (one more flag: lost after the last), and the venue's book at the end.
    """
    amounts = st.sampled_from([0.1, 1.0, 2.5, 10.0])
    venue = dict(draw(st.dictionaries(st.sampled_from(LADDER), amounts, max_size=6)))
    change_id = draw(st.integers(1, 10**12))
    out, lost_before = [_snapshot_msg(change_id, venue, 0)], [False]
    lost = False
    for i in range(1, draw(st.integers(0, 30)) + 1):
        action = draw(st.sampled_from(["deliver"] * 5 + ["lose", "snapshot"]))
        if action == "snapshot":
            out.append(_snapshot_msg(change_id, venue, i))
            lost_before.append(lost)
            lost = False
            continue
        levels = draw(st.dictionaries(st.sampled_from(LADDER), st.none() | amounts, max_size=4))
        new_id = change_id + draw(st.integers(1, 50))
        wire = [["delete", p, 0.0] if a is None else ["new" if p not in venue else "change", p, a]
                for p, a in levels.items()]
        for p, a in levels.items():
            if a is None:
                venue.pop(p, None)
            else:
                venue[p] = a
        msg = {"type": "change", "timestamp": i, "instrument_name": "X", "prev_change_id": change_id,
               "change_id": new_id, "bids": wire, "asks": []}
        change_id = new_id
        if action == "lose":
            lost = True
        else:
            out.append(msg)
            lost_before.append(lost)
            lost = False
    return out, [*lost_before, lost], venue


@settings(max_examples=200, deadline=None)
@given(deliveries())
def test_book_chain_property(case):
    msgs, lost_before, venue = case

    # The reference: Deribit's steps (§1.2) on plain dicts.
    ref_synced, ref_last, ref_book = False, None, {}
    ref_gaps, ref_applied, stale = [], 0, False  # stale: a loss not seen yet
    for i, m in enumerate(msgs):
        stale = stale or lost_before[i]
        if m["type"] == "snapshot":
            ref_synced, ref_last, stale = True, m["change_id"], False
            ref_book = {p: a for _, p, a in m["bids"]}
        elif ref_synced and m["prev_change_id"] != ref_last:
            ref_gaps.append(i)
            ref_synced, ref_book = False, {}
        elif ref_synced:
            for action, p, a in m["bids"]:
                if action == "delete":
                    ref_book.pop(p, None)
                else:
                    ref_book[p] = a
            ref_last, ref_applied = m["change_id"], ref_applied + 1
    stale = stale or lost_before[-1]

    # The core's book, fed the same messages (a resync drops the book, as the protocol does).
    sym = Symbol("X", "option", "base")
    gaps, deltas, snaps = [], 0, 0
    for i, m in enumerate(msgs):
        events, resync = sym.on_book(BOOK_DATA.decode(json.dumps(m).encode()), i)
        gaps += [i for e in of(events, FeedStatus) if e.state == "gap"]
        deltas += len(of(events, BookDelta))
        snaps += len(of(events, BookSnapshot))
        if resync:
            sym.drop_book("resyncing")

    assert gaps == ref_gaps and deltas == ref_applied
    assert snaps == sum(m["type"] == "snapshot" for m in msgs)
    assert sym.synced == ref_synced
    bids = dict(sym.book.levels()[0]) if sym.synced else {}
    assert bids == ref_book
    if ref_synced and not stale:
        assert bids == venue  # an unbroken chain since the last snapshot is the venue's book
    if not any(lost_before):
        assert gaps == [] and bids == venue
