"""The live option chain: latest quote per option, staleness, expiry roll-off, halted instruments."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors.events import FeedStatus, IndexValue, Instrument, OptionTicker
from connectors.options import ChainState

S = 1_000_000_000
EXPIRY_NS = 1_632_470_400 * S  # BTC-24SEP21 expires 2021-09-24 08:00 UTC


def ticker(symbol: str, ts_ns: int, iv: float = 0.8) -> OptionTicker:
    return OptionTicker(venue="deribit", symbol=symbol, ts_exchange_ns=ts_ns, ts_recv_ns=ts_ns,
                        underlying_price=40000.0, underlying_index="BTC-24SEP21", index_price=39990.0,
                        mark_price=0.05, mark_iv=iv, bid_iv=iv - 0.02, ask_iv=iv + 0.02, best_bid_price=0.049,
                        best_bid_size=1.0, best_ask_price=0.051, best_ask_size=1.0)


def test_the_latest_quote_of_each_option_wins():
    chain = ChainState()
    chain.on_event(ticker("BTC-24SEP21-40000-C", EXPIRY_NS - 100 * S, iv=0.8))
    chain.on_event(ticker("BTC-24SEP21-40000-C", EXPIRY_NS - 99 * S, iv=0.9))
    (quote,) = chain.quotes(EXPIRY_NS - 99 * S)
    assert quote.mark_iv == 0.9 and quote.strike == 40000.0 and quote.is_call


def test_an_option_expiring_mid_run_leaves_the_chain():
    chain = ChainState()
    chain.on_event(ticker("BTC-24SEP21-40000-C", EXPIRY_NS - 10 * S))
    chain.on_event(ticker("BTC-24SEP21-30000-P", EXPIRY_NS - 5 * S))
    assert len(chain.quotes(EXPIRY_NS - 1 * S)) == 2
    # The exchange clock passes the expiry (any later event of the chain moves it).
    chain.on_event(ticker("BTC-25MAR22-40000-C", EXPIRY_NS + 1 * S))
    assert [q.symbol for q in chain.quotes(EXPIRY_NS + 1 * S)] == ["BTC-25MAR22-40000-C"]
    assert chain.stats()["expired"] == 2
    # A late ticker of the expired option does not bring it back.
    chain.on_event(ticker("BTC-24SEP21-40000-C", EXPIRY_NS + 2 * S))
    assert [q.symbol for q in chain.quotes(EXPIRY_NS + 2 * S)] == ["BTC-25MAR22-40000-C"]


def test_a_listing_that_goes_inactive_and_a_halted_instrument_are_left_out():
    chain = ChainState()
    chain.on_event(ticker("BTC-25MAR22-40000-C", 10 * S))
    chain.on_event(ticker("BTC-25MAR22-50000-C", 10 * S))
    chain.on_event(Instrument(venue="deribit", symbol="BTC-25MAR22-40000-C", ts_exchange_ns=11 * S, ts_recv_ns=11 * S,
                              base="BTC", quote="BTC", settle="BTC", instrument_kind="option", is_active=False))
    chain.on_event(FeedStatus(venue="deribit", symbol="BTC-25MAR22-50000-C", ts_exchange_ns=None, ts_recv_ns=12 * S,
                              state="error", scope="instrument", reason="not subscribed"))
    assert chain.quotes(12 * S) == []


def test_dvol_and_the_price_index_pass_through():
    chain = ChainState()
    chain.on_event(IndexValue(venue="deribit", symbol="btc_usd.dvol", ts_exchange_ns=5 * S, ts_recv_ns=5 * S,
                              name="btc_usd.dvol", value=0.64, value_unit="vol_decimal"))
    chain.on_event(IndexValue(venue="deribit", symbol="btc_usd", ts_exchange_ns=6 * S, ts_recv_ns=6 * S,
                              name="btc_usd", value=40100.0))
    assert (chain.dvol, chain.dvol_ts_ns, chain.index_price) == (0.64, 5 * S, 40100.0)


@given(st.lists(st.tuples(st.integers(0, 300), st.sampled_from(["40000-C", "30000-P", "50000-C"])), max_size=40),
       st.integers(0, 400))
def test_quotes_are_never_stale_expired_or_from_the_future_of_their_option(ticks, now_s):
    chain = ChainState(stale_after_ns=60 * S)
    for ts_s, strike in sorted(ticks):
        chain.on_event(ticker(f"BTC-25MAR22-{strike}", ts_s * S))
    quotes = chain.quotes(now_s * S)
    latest = {}
    for ts_s, strike in sorted(ticks):
        latest[f"BTC-25MAR22-{strike}"] = ts_s * S
    assert {q.symbol for q in quotes} == {s for s, ts in latest.items() if now_s * S - ts <= 60 * S}
    assert all(q.ts_ns == latest[q.symbol] for q in quotes)
