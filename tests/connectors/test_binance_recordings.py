"""BinanceProtocol over real recordings: hftbacktest's (data/binance/hftbacktest, see
data/PROVENANCE.md) and cryptofeed's (tests/data/cryptofeed, see its PROVENANCE.md),
read with the official readers of ``connectors.record.detect``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.events import BBO, BookDelta, BookSnapshot, FeedStatus
from connectors.record.detect import merge_recordings
from connectors.record.frames import Frame
from connectors.venues.binance import protocol as protocol_module
from connectors.venues.binance.protocol import BinanceProtocol

REPO = Path(__file__).resolve().parents[2]
HFT = REPO / "data" / "binance" / "hftbacktest"
CRYPTOFEED = REPO / "tests" / "data" / "cryptofeed"

SPOT_DAYS = ("20240808", "20240809")  # one connection across both files


def hft_paths(market: str, symbol: str) -> list[Path]:
    days = SPOT_DAYS if market == "spot" else SPOT_DAYS[:1]
    return [HFT / market / f"{symbol.lower()}_{d}.gz" for d in days]


def hft_frames(*cases: tuple[str, str]) -> list[Frame]:
    """hftbacktest recordings of one connection (spot 0808+0809), merged by receive time.

    They hold no ``open`` frame: see :func:`start`.
    """
    return list(merge_recordings([p for market, symbol in cases for p in hft_paths(market, symbol)]))


def start(p: BinanceProtocol, frames: list[Frame]) -> list:
    """Open the connection the recording was made on, at its first frame's time."""
    return p.connection_opened(frames[0].ts_recv_ns)


def cryptofeed_frames(name: str) -> list[Frame]:
    """``<NAME>.ws.1.0`` and ``<NAME>.http.0.0`` as frames, merged by receive time."""
    return list(merge_recordings([CRYPTOFEED / f"{name}.ws.1.0", CRYPTOFEED / f"{name}.http.0.0"]))


def protocol(market: str, symbols, **kw) -> BinanceProtocol:
    stream = "depth@100ms" if market == "spot" else "depth@0ms"
    return BinanceProtocol(market, symbols, depth_stream=stream, trade_stream="trade", **kw)


def run(p: BinanceProtocol, frames):
    out = []
    for f in frames:
        out.extend(p.feed_frame(f))
    return out


HFT_CASES = [("spot", "BTCUSDT"), ("spot", "ETHUSDT"), ("usdm", "BTCUSDT"), ("usdm", "ETHUSDT")]


@pytest.fixture(scope="module", params=HFT_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def hft(request):
    market, symbol = request.param
    frames = hft_frames((market, symbol))
    p = protocol(market, [symbol])
    # Record the book's best level after every applied diff and every BBO, by update id.
    book_at: dict[int, tuple] = {}
    bbo_at: dict[int, tuple] = {}
    events = start(p, frames)
    book = p._inst[symbol].book  # white box: compare the live book itself
    for f in frames:
        for ev in p.feed_frame(f):
            events.append(ev)
            if isinstance(ev, BookDelta) or (isinstance(ev, BookSnapshot) and ev.depth is None):
                book_at[ev.seq] = (book.best_bid(), book.best_ask())
            elif isinstance(ev, BBO):
                bbo_at[ev.seq] = ((ev.bid_price, ev.bid_size), (ev.ask_price, ev.ask_size))
    return market, symbol, frames, p, events, book_at, bbo_at


def test_hftbacktest_syncs_once_with_zero_gaps(hft):
    market, symbol, frames, p, events, _, _ = hft
    s = p.stats()
    i = s.instruments[symbol]
    assert (i.state, i.syncs, i.gaps, i.resyncs, i.crossed) == ("synced", 1, 0, 0, 0)
    assert (s.malformed, s.internal_errors, s.ignored) == (0, 0, {})
    depth_frames = sum(1 for f in frames if f.kind == "recv" and b"@depth" in f.payload[:40])
    # Every diff after the snapshot became a delta; the rest were inside the snapshot.
    assert i.events["book_delta"] > 0.99 * depth_frames
    assert i.events["trade"] == sum(1 for f in frames if b"@trade" in f.payload[:40])
    assert i.events["bbo"] == sum(1 for f in frames if b"@bookTicker" in f.payload[:40])


# Where the diff that bridges the snapshot arrived, in each recording.
BRIDGE_BEFORE_SNAPSHOT = {("spot", "BTCUSDT"): True, ("spot", "ETHUSDT"): False,
                          ("usdm", "BTCUSDT"): True, ("usdm", "ETHUSDT"): True}


def test_hftbacktest_sync_uses_buffered_diffs(hft):
    market, symbol, frames, _, events, _, _ = hft
    rest = next(f for f in frames if f.kind == "rest")
    last_update_id = json.loads(rest.payload)["lastUpdateId"]
    diffs = [(f.ts_recv_ns, json.loads(f.payload)["data"]) for f in frames
             if f.kind == "recv" and b"@depth" in f.payload[:40]]
    # The first diff kept must bridge the snapshot: spot U <= id+1 <= u (§2.1),
    # futures U <= id <= u (§2.2).
    if market == "spot":
        ts_bridge, bridge = next((ts, d) for ts, d in diffs if d["u"] > last_update_id)
        assert bridge["U"] <= last_update_id + 1
    else:
        ts_bridge, bridge = next((ts, d) for ts, d in diffs if d["u"] >= last_update_id)
        assert bridge["U"] <= last_update_id
    assert (ts_bridge < rest.ts_recv_ns) is BRIDGE_BEFORE_SNAPSHOT[market, symbol]
    # Synced as soon as both were in, at the id of the last diff received by then.
    [synced] = [e for e in events if isinstance(e, FeedStatus) and e.state == "synced"]
    assert synced.ts_recv_ns == max(ts_bridge, rest.ts_recv_ns)
    assert synced.got_seq == [d["u"] for ts, d in diffs if ts <= synced.ts_recv_ns][-1]


def test_hftbacktest_book_matches_book_ticker(hft):
    market, _, _, _, _, book_at, bbo_at = hft
    common = book_at.keys() & bbo_at.keys()
    mismatches = [(u, book_at[u], bbo_at[u]) for u in sorted(common) if book_at[u] != bbo_at[u]]
    assert mismatches == []
    assert len(common) >= (400 if market == "usdm" else 900)


def test_dropped_diff_resyncs_that_symbol_only_and_converges():
    # Arrange: BTC and ETH spot on one connection; a twin protocol sees every frame.
    frames = hft_frames(("spot", "BTCUSDT"), ("spot", "ETHUSDT"))
    depth_btc = [i for i, f in enumerate(frames) if f.payload.startswith(b'{"stream":"btcusdt@depth')]
    dropped = depth_btc[len(depth_btc) // 2]
    p, twin = protocol("spot", ["BTCUSDT", "ETHUSDT"]), protocol("spot", ["BTCUSDT", "ETHUSDT"])
    start(p, frames)
    start(twin, frames)
    # Act
    events = run(p, frames[:dropped]) + run(p, frames[dropped + 1 : dropped + 200])
    run(twin, frames[: dropped + 200])
    # Assert: a gap on BTCUSDT only, which is now buffering for a new snapshot.
    [gap] = [e for e in events if isinstance(e, FeedStatus) and e.state == "gap"]
    assert gap.symbol == "BTCUSDT" and gap.got_seq > gap.expected_seq
    s = p.stats().instruments
    assert (s["BTCUSDT"].state, s["BTCUSDT"].gaps) == ("resyncing", 1)
    assert (s["ETHUSDT"].state, s["ETHUSDT"].gaps, s["ETHUSDT"].syncs) == ("synced", 0, 1)
    [req] = p.rest_requests()
    assert req.symbol == "BTCUSDT"
    # A snapshot of the true book (the twin's, at its current update id) resyncs it,
    # and from then on both books agree diff after diff.
    t = twin._inst["BTCUSDT"]
    bids, asks = t.book.levels()
    body = json.dumps({"lastUpdateId": t.last, "bids": bids, "asks": asks}).encode()
    # It holds every buffered diff already, so the next diff bridges it.
    events = p.receive_rest(req.path, 200, body, frames[dropped + 200].ts_recv_ns)
    compared = 0
    for f in frames[dropped + 200 : dropped + 2000]:
        events += p.feed_frame(f)
        twin.feed_frame(f)
        if p._inst["BTCUSDT"].synced:
            assert p._inst["BTCUSDT"].book.top(20) == twin._inst["BTCUSDT"].book.top(20)
            compared += 1
    assert ("BTCUSDT", "synced") in [(e.symbol, e.state) for e in events if isinstance(e, FeedStatus)]
    assert compared > 1500
    assert p.stats().instruments["BTCUSDT"].gaps == 1


def test_malformed_frames_between_real_ones_are_counted_and_skipped():
    frames = hft_frames(("usdm", "BTCUSDT"))[:3000]
    clean = protocol("usdm", ["BTCUSDT"])
    start(clean, frames)
    run(clean, frames)
    dirty = protocol("usdm", ["BTCUSDT"])
    start(dirty, frames)
    bad = 0
    for n, f in enumerate(frames):
        dirty.feed_frame(f)
        if f.kind == "recv" and n % 100 == 0:
            dirty.receive_frame(f.payload[: len(f.payload) // 2], f.ts_recv_ns)  # truncated
            dirty.receive_frame(f.payload.replace(b'"0.', b'"NaN'), f.ts_recv_ns)  # NaN level
            bad += 1 + (b'"0.' in f.payload)
    s = dirty.stats()
    assert s.malformed == bad > 20
    assert s.instruments["BTCUSDT"].malformed == bad
    assert s.internal_errors == 0
    assert s.instruments["BTCUSDT"].gaps == 0
    assert dirty._inst["BTCUSDT"].book.levels() == clean._inst["BTCUSDT"].book.levels()
    assert len(s.errors) == 20  # the first few examples are kept, not all


@pytest.mark.parametrize(
    ("name", "market", "symbols"),
    [
        ("BINANCE", "spot", ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]),
        ("BINANCE_FUTURES", "usdm", ["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"]),
    ],
)
def test_cryptofeed_captures_sync_every_symbol(name, market, symbols):
    frames = cryptofeed_frames(name)
    p = BinanceProtocol(market, symbols, trade_stream="aggTrade")
    events = run(p, frames)
    s = p.stats()
    assert s.malformed == 0 and s.internal_errors == 0
    assert set(s.ignored) <= {f"stream {sym.lower()}@kline_1m" for sym in symbols}
    for sym in symbols:
        i = s.instruments[sym]
        assert (i.state, i.syncs, i.gaps, i.crossed) == ("synced", 1, 0, 0), sym
        assert i.best_bid is not None and i.best_ask is not None and i.best_bid < i.best_ask
    assert sum(isinstance(e, BookDelta) for e in events) > 5


@pytest.mark.skipif(protocol_module._KERNEL is None, reason="compiled book kernel not built")
def test_compiled_and_pure_python_books_emit_identical_events(hft, monkeypatch):
    # Views and deltas both on: every event and counter of the compiled path (C level
    # parsing, C book) equals the pure-Python path's (msgspec floats, PyL2Book).
    market, symbol, frames, *_ = hft
    runs = {}
    for name, kernel in (("compiled", protocol_module._KERNEL), ("python", None)):
        monkeypatch.setattr(protocol_module, "_KERNEL", kernel)
        p = protocol(market, [symbol], book_view_depth=5)
        events = start(p, frames) + run(p, frames)
        runs[name] = (events, p.stats())
    assert len(runs["compiled"][0]) == len(runs["python"][0]) > 50_000
    assert runs["compiled"][0] == runs["python"][0]
    assert runs["compiled"][1] == runs["python"][1]
