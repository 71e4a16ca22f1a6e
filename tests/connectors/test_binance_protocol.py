"""BinanceProtocol without an event loop: golden frames, sync rules, bad input.

Frames built by ``depth()``/``snapshot()`` below are SYNTHETIC (small hand-made ids
and prices, to pin each rule); every other frame is real, from
``resources/binance/*.json`` (see resources/binance/PROVENANCE.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import ConfigError
from connectors.events import BBO, BookDelta, BookSnapshot, FeedStatus, Trade
from connectors.record.frames import Frame
from connectors.venues.binance import parse
from connectors.venues.binance.protocol import BinanceProtocol

RESOURCES = Path(__file__).parent / "resources" / "binance"


def golden(name: str) -> bytes:
    return (RESOURCES / name).read_bytes().strip()


def depth(sym: str, U: int, u: int, b=(), a=(), pu: int | None = None, stream="depth@100ms") -> bytes:
    """A synthetic combined-stream depth frame."""
    data = {"e": "depthUpdate", "E": 1_700_000_000_000 + u, "s": sym.upper(), "U": U, "u": u,
            "b": [[str(p), str(s)] for p, s in b], "a": [[str(p), str(s)] for p, s in a]}
    if pu is not None:
        data["pu"] = pu
    return json.dumps({"stream": f"{sym.lower()}@{stream}", "data": data}).encode()


def snapshot(last: int, b, a) -> bytes:
    """A synthetic REST depth snapshot body."""
    return json.dumps({"lastUpdateId": last, "bids": [[str(p), str(s)] for p, s in b],
                       "asks": [[str(p), str(s)] for p, s in a]}).encode()


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def statuses(events):
    return [(e.symbol, e.state) for e in of(events, FeedStatus)]


SPOT_URL = "/api/v3/depth?symbol={}&limit=5000"
USDM_URL = "/fapi/v1/depth?symbol={}&limit=1000"


def synced_spot(symbols=("BTCUSDT",), **kw) -> BinanceProtocol:
    """A spot protocol whose books sit at update id 10 with bid 99/100, ask 101/102."""
    p = BinanceProtocol("spot", symbols, **kw)
    p.connection_opened(0)
    for sym in symbols:
        p.receive_frame(depth(sym, 9, 11, b=[(100, 1)]), 1)
        ev = p.receive_rest(SPOT_URL.format(sym), 200,
                            snapshot(10, [(100, 1), (99, 2)], [(101, 1), (102, 2)]), 2)
        assert (sym, "synced") in statuses(ev)
    return p


# -- configuration and URLs ------------------------------------------------------


@pytest.mark.parametrize(
    ("market", "url", "rest_base"),
    [
        ("spot", "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms/"
                 "btcusdt@trade/btcusdt@bookTicker", "https://api.binance.com"),
        ("usdm", "wss://fstream.binance.com/stream?streams=btcusdt@depth@100ms/"
                 "btcusdt@aggTrade/btcusdt@bookTicker", "https://fapi.binance.com"),
        ("coinm", "wss://dstream.binance.com/stream?streams=btcusdt@depth@100ms/"
                  "btcusdt@aggTrade/btcusdt@bookTicker", "https://dapi.binance.com"),
    ],
)
def test_default_streams_and_endpoints(market, url, rest_base):
    p = BinanceProtocol(market, ["BTCUSDT"])
    assert p.stream_url() == url
    assert p.rest_base == rest_base
    assert p.frames_to_send() == []


def test_stream_url_on_another_base_and_options():
    p = BinanceProtocol("usdm", ["btcusdt", "ETHUSDT"], depth_stream="depth@0ms",
                        trade_stream="trade", book_ticker=False)
    assert p.stream_url("ws://127.0.0.1:8001/") == (
        "ws://127.0.0.1:8001/stream?streams=btcusdt@depth@0ms/btcusdt@trade/"
        "ethusdt@depth@0ms/ethusdt@trade")
    assert p.symbols == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("options", ["BTCUSDT"]), {}, "market"),
        (("spot", ["BTCUSDT"]), {"depth_stream": "depth20"}, "depth_stream"),
        (("spot", ["BTCUSDT"]), {"trade_stream": "trades"}, "trade_stream"),
        (("spot", ["BTCUSDT"]), {"book_view_depth": 0}, "book_view_depth"),
        (("usdm", ["BTCUSDT"]), {"snapshot_limit": 5000}, "snapshot_limit"),
        (("spot", []), {}, "symbols"),
        (("spot", ["BTC/USDT"]), {}, "symbols"),
        (("spot", ["btcusdt", "BTCUSDT"]), {}, "symbols"),
    ],
)
def test_bad_configuration_is_refused(args, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BinanceProtocol(*args, **kwargs)


# -- golden frames -------------------------------------------------------------------


def test_spot_trade_golden():
    p = BinanceProtocol("spot", ["BTCUSDT"])
    [ev] = p.receive_frame(golden("spot_trade.json"), 42)
    assert ev == Trade(venue="binance", symbol="BTCUSDT", ts_exchange_ns=1723161255342_000000,
                       ts_recv_ns=42, price=61837.63, size=0.02, side="sell",
                       trade_id="3735683259")


def test_usdm_trade_golden_on_trade_stream():
    p = BinanceProtocol("usdm", ["BTCUSDT"], trade_stream="trade")
    [ev] = p.receive_frame(golden("usdm_trade.json"), 42)
    assert ev == Trade(venue="binance_usdm", symbol="BTCUSDT", ts_exchange_ns=1723161256322_000000,
                       ts_recv_ns=42, price=61800.3, size=0.006, side="buy",
                       trade_id="5266583935", liquidation=False)


@pytest.mark.parametrize(
    ("market", "name", "symbol", "expected"),
    [
        ("spot", "spot_agg_trade.json", "NKNUSDT",
         dict(price=0.3528, size=58.0, side="buy", trade_id="15683430",
              ts_exchange_ns=1633998523963_000000)),
        ("usdm", "usdm_agg_trade.json", "CTKUSDT",
         dict(price=1.011, size=10.0, side="buy", trade_id="16599292",
              ts_exchange_ns=1626992741421_000000)),
    ],
)
def test_agg_trade_golden(market, name, symbol, expected):
    p = BinanceProtocol(market, [symbol], trade_stream="aggTrade")
    [ev] = p.receive_frame(golden(name), 7)
    assert ev == Trade(venue=p.venue, symbol=symbol, ts_recv_ns=7, **expected)


def test_spot_book_ticker_golden_has_no_exchange_time():
    p = BinanceProtocol("spot", ["BTCUSDT"])
    [ev] = p.receive_frame(golden("spot_book_ticker.json"), 5)
    assert ev == BBO(venue="binance", symbol="BTCUSDT", ts_exchange_ns=None, ts_recv_ns=5,
                     bid_price=61837.63, bid_size=3.78826, ask_price=61837.64,
                     ask_size=1.54698, seq=50093239212)


def test_usdm_book_ticker_golden():
    p = BinanceProtocol("usdm", ["BTCUSDT"])
    [ev] = p.receive_frame(golden("usdm_book_ticker.json"), 5)
    assert ev == BBO(venue="binance_usdm", symbol="BTCUSDT", ts_exchange_ns=1723161256313_000000,
                     ts_recv_ns=5, bid_price=61800.2, bid_size=2.507, ask_price=61800.3,
                     ask_size=2.51, seq=5123107839020)


def test_depth_golden_decodes_levels_as_float_tuples():
    msg = parse.DEPTH_ENVELOPE.decode(golden("usdm_depth.json")).data
    delta = parse.depth_delta(msg, "binance_usdm", "BTCUSDT", 9, "base")
    raw = json.loads(golden("usdm_depth.json"))["data"]
    assert delta.bids == [(float(p), float(s)) for p, s in raw["b"]]
    assert delta.asks == [(float(p), float(s)) for p, s in raw["a"]]
    assert (delta.first_seq, delta.seq, delta.prev_seq) == (raw["U"], raw["u"], raw["pu"])
    assert delta.ts_exchange_ns == raw["E"] * 1_000_000


def test_golden_snapshots_sync_a_book():
    # Arrange: a real spot snapshot; a synthetic diff that bridges it.
    p = BinanceProtocol("spot", ["BTCUSDT"])
    p.connection_opened(0)
    p.receive_frame(depth("BTCUSDT", 50093239210, 50093239220, a=[(61837.65, 0)]), 1)
    # Act
    ev = p.receive_rest(SPOT_URL.format("BTCUSDT"), 200, golden("spot_snapshot.json"), 2)
    # Assert
    [snap] = of(ev, BookSnapshot)
    assert snap.bids[0] == (61837.63, 3.78826)
    assert snap.asks == [(61837.64, 1.54698), (61837.68, 0.00016)]
    assert snap.seq == 50093239220


def test_kline_is_ignored_not_malformed():
    p = BinanceProtocol("spot", ["NKNUSDT"])
    assert p.receive_frame(golden("spot_kline.json"), 1) == []
    s = p.stats()
    assert s.ignored == {"stream nknusdt@kline_1m": 1}
    assert s.malformed == 0


# -- spot sync (research/protocols.md §2.1) -------------------------------------


def test_unknown_symbol_is_fatal_with_one_clear_reason():
    p = BinanceProtocol("spot", ["FOOUSDT"])
    p.connection_opened(0)
    [req] = p.rest_requests()
    ev = p.receive_rest(req.path, 400, b'{"code":-1121,"msg":"Invalid symbol."}', 1)
    assert statuses(ev) == [("FOOUSDT", "error")]
    assert p.fatal_error is not None and "unknown symbol FOOUSDT" in p.fatal_error
    assert p.rest_requests() == []  # no retry can fix it


def test_spot_buffers_until_snapshot_then_syncs():
    p = BinanceProtocol("spot", ["BTCUSDT"])
    ev = p.connection_opened(0)
    assert statuses(ev) == [("*", "connected"), ("BTCUSDT", "buffering")]
    # The snapshot is asked for on connect (an unlisted symbol would send no diff).
    [req] = p.rest_requests()
    assert (req.path, req.symbol, req.not_before_ns) == (SPOT_URL.format("BTCUSDT"), "BTCUSDT", 0)
    assert p.rest_requests() == []  # handed out once
    assert p.receive_frame(depth("btcusdt", 5, 8, b=[(100, 9)]), 1) == []
    assert p.rest_requests() == []  # the diff does not ask again while one is in flight
    # The bridging diff arrives before the snapshot (as in the real recordings).
    assert p.receive_frame(depth("btcusdt", 9, 12, b=[(100, 3)], a=[(101, 0)]), 2) == []
    ev = p.receive_rest(req.path, 200, snapshot(10, [(100, 1), (99, 2)], [(101, 1), (102, 2)]), 3)
    assert statuses(ev) == [("BTCUSDT", "synced")]
    [snap] = of(ev, BookSnapshot)
    assert snap.bids == [(100.0, 3.0), (99.0, 2.0)] and snap.asks == [(102.0, 2.0)]
    assert (snap.seq, snap.depth, snap.ts_recv_ns) == (12, None, 3)
    # In sync: each diff becomes a delta.
    ev = p.receive_frame(depth("btcusdt", 13, 14, b=[(99.5, 1)]), 4)
    [delta] = ev
    assert isinstance(delta, BookDelta)
    assert (delta.bids, delta.first_seq, delta.seq, delta.prev_seq) == ([(99.5, 1.0)], 13, 14, None)
    stats = p.stats().instruments["BTCUSDT"]
    assert (stats.state, stats.syncs, stats.seq, stats.best_bid, stats.best_ask) == (
        "synced", 1, 14, 100.0, 102.0)
    assert stats.snapshots_requested == 1


def test_spot_snapshot_older_than_buffer_is_requested_again():
    p = BinanceProtocol("spot", ["BTCUSDT"])
    p.connection_opened(0)
    p.receive_frame(depth("btcusdt", 20, 25), 1)
    [req] = p.rest_requests()
    assert p.receive_rest(req.path, 200, snapshot(15, [(1, 1)], [(2, 1)]), 1_000) == []
    [again] = p.rest_requests()
    assert again.not_before_ns > 1_000  # backed off, not hammering the REST API
    ev = p.receive_rest(again.path, 200, snapshot(22, [(1, 1)], [(2, 1)]), 2_000)
    assert statuses(ev) == [("BTCUSDT", "synced")]
    stats = p.stats().instruments["BTCUSDT"]
    assert stats.snapshots_stale == 1
    assert "older than the first buffered diff" in p.errors[0]


def test_spot_snapshot_newer_than_buffer_waits_for_next_diff():
    p = BinanceProtocol("spot", ["BTCUSDT"])
    p.connection_opened(0)
    p.receive_frame(depth("btcusdt", 1, 4), 1)
    assert p.receive_rest(SPOT_URL.format("BTCUSDT"), 200, snapshot(10, [(1, 1)], [(2, 1)]), 2) == []
    assert p.receive_frame(depth("btcusdt", 5, 10), 3) == []  # still inside the snapshot
    ev = p.receive_frame(depth("btcusdt", 11, 11, b=[(1.5, 1)]), 4)
    assert statuses(ev) == [("BTCUSDT", "synced")]
    assert of(ev, BookSnapshot)[0].bids == [(1.5, 1.0), (1.0, 1.0)]


def test_gap_resyncs_only_that_symbol():
    p = synced_spot(("BTCUSDT", "ETHUSDT"))
    # Act: BTCUSDT skips update 12.
    ev = p.receive_frame(depth("btcusdt", 13, 14), 10)
    # Assert
    [gap] = of(ev, FeedStatus)
    assert (gap.symbol, gap.state, gap.scope, gap.expected_seq, gap.got_seq) == (
        "BTCUSDT", "gap", "instrument", 12, 13)
    assert [r.symbol for r in p.rest_requests()] == ["BTCUSDT"]
    eth = p.receive_frame(depth("ethusdt", 12, 12, a=[(101, 5)]), 11)
    assert isinstance(eth[0], BookDelta)
    assert p.receive_frame(depth("btcusdt", 15, 15), 12) == []  # buffering again
    ev = p.receive_rest(SPOT_URL.format("BTCUSDT"), 200, snapshot(14, [(100, 1)], [(101, 1)]), 13)
    assert statuses(ev) == [("BTCUSDT", "synced")]
    s = p.stats().instruments
    assert (s["BTCUSDT"].gaps, s["BTCUSDT"].resyncs, s["BTCUSDT"].syncs) == (1, 1, 2)
    assert (s["ETHUSDT"].gaps, s["ETHUSDT"].state) == (0, "synced")


def test_old_diffs_after_sync_are_skipped():
    p = synced_spot()
    assert p.receive_frame(depth("btcusdt", 5, 11), 5) == []
    assert p.stats().instruments["BTCUSDT"].skipped == 1


def test_crossed_book_resyncs():
    p = synced_spot()
    ev = p.receive_frame(depth("btcusdt", 12, 12, b=[(101.5, 1)]), 5)
    [crossed] = of(ev, FeedStatus)
    assert crossed.state == "crossed" and "101.5" in crossed.reason
    assert [r.symbol for r in p.rest_requests()] == ["BTCUSDT"]
    stats = p.stats().instruments["BTCUSDT"]
    assert (stats.crossed, stats.resyncs, stats.state, stats.best_bid) == (1, 1, "resyncing", None)


def test_book_view_depth_and_no_deltas():
    p = synced_spot(book_view_depth=1, emit_deltas=False)
    [view] = p.receive_frame(depth("btcusdt", 12, 12, b=[(100, 0)]), 5)
    assert isinstance(view, BookSnapshot)
    assert (view.bids, view.asks, view.depth, view.seq) == ([(99.0, 2.0)], [(101.0, 1.0)], 1, 12)


def test_view_is_also_emitted_at_sync():
    p = BinanceProtocol("spot", ["BTCUSDT"], book_view_depth=2)
    p.connection_opened(0)
    p.receive_frame(depth("btcusdt", 11, 11), 1)
    ev = p.receive_rest(SPOT_URL.format("BTCUSDT"), 200, snapshot(10, [(1, 1)], [(2, 1), (3, 1), (4, 1)]), 2)
    assert [s.depth for s in of(ev, BookSnapshot)] == [None, 2]


def test_rest_failures_are_retried_with_backoff():
    p = BinanceProtocol("spot", ["BTCUSDT"])
    p.connection_opened(0)
    p.receive_frame(depth("btcusdt", 1, 2), 0)
    [req] = p.rest_requests()
    assert p.receive_rest(req.path, 503, b"busy", 0) == []
    [r1] = p.rest_requests()
    assert p.receive_rest(r1.path, 200, b'{"lastUpdateId":', 0) == []  # truncated body
    [r2] = p.rest_requests()
    assert 0 < r1.not_before_ns < r2.not_before_ns
    s = p.stats()
    assert (s.rest_failed, s.malformed, s.instruments["BTCUSDT"].malformed) == (1, 1, 1)


def test_snapshot_for_unknown_symbol_or_url_without_symbol():
    p = BinanceProtocol("spot", ["BTCUSDT"])
    assert p.receive_rest("/api/v3/depth?symbol=ETHUSDT", 200, b"{}", 0) == []
    assert p.receive_rest("/api/v3/depth", 200, b"{}", 0) == []
    s = p.stats()
    assert s.ignored == {"snapshot for an unsubscribed symbol": 1}
    assert s.malformed == 1


def test_connection_lost_and_reopened_resets_books():
    p = synced_spot()
    ev = p.connection_lost(50, "1006 abnormal")
    assert statuses(ev) == [("*", "disconnected"), ("BTCUSDT", "disconnected")]
    assert ev[0].scope == "connection" and ev[0].reason == "1006 abnormal"
    assert p.stats().instruments["BTCUSDT"].state == "disconnected"
    p.connection_opened(60)
    # A diff continuing the old book must not be applied to it: the book starts over.
    assert p.receive_frame(depth("btcusdt", 11, 11), 61) == []
    assert p.stats().instruments["BTCUSDT"].levels == 0
    assert p.stats().connections == 2


# -- futures sync (research/protocols.md §2.2) ------------------------------------


def test_futures_bridge_and_pu_chain():
    p = BinanceProtocol("usdm", ["BTCUSDT"])
    p.connection_opened(0)
    p.receive_frame(depth("btcusdt", 1, 5, pu=0), 1)  # u < lastUpdateId: dropped
    p.receive_frame(depth("btcusdt", 6, 12, pu=5, b=[(100, 2)]), 2)  # U <= 10 <= u: bridge
    ev = p.receive_rest(USDM_URL.format("BTCUSDT"), 200, snapshot(10, [(100, 1)], [(101, 1)]), 3)
    assert statuses(ev) == [("BTCUSDT", "synced")]
    assert of(ev, BookSnapshot)[0].bids == [(100.0, 2.0)]
    [delta] = p.receive_frame(depth("btcusdt", 13, 20, pu=12, a=[(101, 3)]), 4)
    assert (delta.first_seq, delta.seq, delta.prev_seq) == (13, 20, 12)
    [gap] = p.receive_frame(depth("btcusdt", 25, 30, pu=24), 5)
    assert (gap.state, gap.expected_seq, gap.got_seq) == ("gap", 20, 24)


def test_futures_snapshot_older_than_first_diff():
    p = BinanceProtocol("usdm", ["BTCUSDT"])
    p.connection_opened(0)
    p.receive_frame(depth("btcusdt", 11, 15, pu=10), 1)
    assert p.receive_rest(USDM_URL.format("BTCUSDT"), 200, snapshot(10, [], []), 2) == []
    assert p.stats().instruments["BTCUSDT"].snapshots_stale == 1


def test_gap_inside_the_buffer_is_reported():
    p = BinanceProtocol("usdm", ["BTCUSDT"])
    p.connection_opened(0)
    p.receive_frame(depth("btcusdt", 8, 12, pu=7), 1)
    p.receive_frame(depth("btcusdt", 15, 16, pu=14), 2)  # 13-14 lost
    ev = p.receive_rest(USDM_URL.format("BTCUSDT"), 200, snapshot(10, [(1, 1)], [(2, 1)]), 3)
    [gap] = of(ev, FeedStatus)
    assert (gap.state, gap.expected_seq, gap.got_seq) == ("gap", 12, 14)
    ev = p.receive_rest(USDM_URL.format("BTCUSDT"), 200, snapshot(15, [(1, 1)], [(2, 1)]), 4)
    assert statuses(ev) == [("BTCUSDT", "synced")]


def test_coinm_sizes_are_contracts():
    p = BinanceProtocol("coinm", ["BTCUSD_PERP"])
    p.connection_opened(0)
    p.receive_frame(depth("btcusd_perp", 1, 2, pu=0), 1)
    [req] = p.rest_requests()
    assert req.path == "/dapi/v1/depth?symbol=BTCUSD_PERP&limit=1000"
    ev = p.receive_rest(req.path, 200, snapshot(1, [(1, 1)], [(2, 1)]), 2)
    assert of(ev, BookSnapshot)[0].size_unit == "contracts"
    assert ev[0].venue == "binance_coinm"


# -- bad input never raises -------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (b"", "malformed"),
        (b'{"stream":"btcusdt@trade","data":{"e":"trade"', "malformed"),  # truncated
        (b'{"stream":"btcusdt@trade","data":{"E":1,"T":1,"t":1,"p":"NaN","q":"1","m":true}}', "malformed"),
        (b'{"stream":"btcusdt@trade","data":{"E":1,"T":1,"t":1,"p":"1","q":"-1","m":true}}', "malformed"),
        (b'{"stream":"btcusdt@trade","data":{"E":1,"T":1,"t":1,"p":"1","q":"inf","m":true}}', "malformed"),
        (b'{"stream":"btcusdt@bookTicker","data":{"u":"x"}}', "malformed"),
        (b'{"stream":"btcusdt@depth@100ms","data":{"E":1,"U":1,"u":2,"b":[["1"]],"a":[]}}', "malformed"),
        (b'{"data":{}}', "malformed"),
        (b"[1,2,3]", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b'{"result":null,"id":1}', "ignored"),  # SUBSCRIBE reply (docs example)
        (b'{"stream":"ethusdt@trade","data":{}}', "ignored"),  # not subscribed
        (b' {"stream":"btcusdt@kline_1m","data":{}}', "ignored"),  # slow path too
    ],
)
def test_bad_frames_are_counted_and_skipped(frame, kind):
    p = synced_spot()
    assert p.receive_frame(frame, 1) == []
    s = p.stats()
    assert (s.malformed, sum(s.ignored.values())) == ((1, 0) if kind == "malformed" else (0, 1))
    assert s.internal_errors == 0
    # The book survived.
    assert p.stats().instruments["BTCUSDT"].state == "synced"


def test_malformed_frame_is_charged_to_its_instrument_and_kept_as_example():
    p = synced_spot()
    p.receive_frame(b'{"stream":"btcusdt@depth@100ms","data":{"U":"x"}}', 1)
    assert p.stats().instruments["BTCUSDT"].malformed == 1
    assert p.errors[0].startswith("malformed frame:")


def test_text_frames_and_reordered_keys_take_the_slow_path():
    p = BinanceProtocol("spot", ["BTCUSDT"])
    text = golden("spot_trade.json").decode()
    reordered = json.dumps({"data": json.loads(text)["data"], "stream": "btcusdt@trade"})
    assert p.receive_frame(text, 1) == p.receive_frame(reordered, 1)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise(data):
    p = synced_spot()
    p.receive_frame(data, 1)
    p.receive_rest(SPOT_URL.format("BTCUSDT"), 200, data, 1)
    assert p.stats().internal_errors == 0


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_random_text_never_raises(text):
    p = synced_spot()
    p.receive_frame(text, 1)
    p.receive_frame('{"stream":"btcusdt@trade","data":' + text, 1)
    assert p.stats().internal_errors == 0


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(f.name for f in RESOURCES.glob("*.json"))),
       cut=st.integers(0, 700), junk=st.binary(max_size=4))
def test_mutated_golden_frames_never_raise(name, cut, junk):
    frame = golden(name)
    p = BinanceProtocol("spot", ["BTCUSDT", "NKNUSDT"])
    p.connection_opened(0)
    p.receive_frame(frame[:cut] + junk + frame[cut + len(junk):], 1)
    assert p.stats().internal_errors == 0


# -- recorded frames -----------------------------------------------------------------------


def test_feed_frame_dispatches_on_kind():
    p = BinanceProtocol("spot", ["BTCUSDT"])
    assert statuses(p.feed_frame(Frame(1, "c1", "open", b"", "wss://x")))[0] == ("*", "connected")
    assert p.feed_frame(Frame(2, "c1", "sent", b'{"method":"SUBSCRIBE"}')) == []
    p.feed_frame(Frame(3, "c1", "recv", depth("btcusdt", 11, 11)))
    ev = p.feed_frame(Frame(4, "c1", "rest", snapshot(10, [(1, 1)], [(2, 1)]),
                            "https://api.binance.com" + SPOT_URL.format("BTCUSDT")))
    assert statuses(ev) == [("BTCUSDT", "synced")]
    ev = p.feed_frame(Frame(5, "c1", "close", b"1000 bye"))
    assert ev[0].state == "disconnected" and ev[0].reason == "1000 bye"
