"""``volcast inspect`` on the real Deribit capture (tests/data/cryptofeed/DERIBIT.*)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.inspect import InspectError, inspect_files, render_text

DATA = Path(__file__).resolve().parents[1] / "data" / "cryptofeed"
FILES = [DATA / "DERIBIT.ws.1.0", DATA / "DERIBIT.0"]


def test_inspect_verifies_every_book_chain_and_shows_normalized_tickers():
    # Act
    report = inspect_files(FILES)

    # Assert: 10 options, each book synced once with no gap; tickers in decimal IV.
    assert report["errors"] == []
    instruments = report["instruments"]
    assert len(instruments) == 10 and all(iid.startswith("deribit:") for iid in instruments)
    for row in instruments.values():
        assert (row["state"], row["syncs"], row["gaps"], row["resyncs"], row["crossed"], row["malformed"]) == (
            "synced", 1, 0, 0, 0, 0)
        assert 0.3 < row["ticker"]["mark_iv"] < 3.0 and row["ticker"]["price_unit"] == "base_coin"
    row = instruments["deribit:BTC-24SEP21-8000-P"]
    assert (row["messages"], row["events"]["option_ticker"], row["events"]["book_delta"]) == (62, 31, 30)
    assert (row["best_bid"], row["best_ask"]) == (0.0005, 0.0015)
    last = row["ticker"]  # the last of its 31 tickers, as recorded: mark_iv 142.78, index 32208.13
    assert (last["mark_iv"], last["index_price"]) == (1.4278, 32208.13)
    assert last["mark_price_usd"] == pytest.approx(last["mark_price"] * 32208.13)
    empty = instruments["deribit:ETH-27AUG21-4000-P"]  # an empty book: no bid, no ask, no bid IV
    assert (empty["best_bid"], empty["ticker"]["bid_iv"], empty["ticker"]["best_bid_price"]) == (None, None, None)
    assert report["listed"] == {"deribit": {"future": 14, "option": 808, "perpetual": 2}}
    text = render_text(report)
    assert "deribit:BTC-31DEC21-300000-C synced" in text


def test_inspect_with_the_venue_forced_and_without_the_listing():
    report = inspect_files([DATA / "DERIBIT.ws.1.0"], venue="deribit")
    assert report["errors"] == [] and len(report["instruments"]) == 10 and "listed" not in report


def test_inspect_of_a_listing_alone_counts_it():
    report = inspect_files([DATA / "DERIBIT.0"])
    assert report["instruments"] == {} and report["listed"]["deribit"]["option"] == 808


def test_inspect_of_deribit_and_binance_together():
    report = inspect_files([DATA / "DERIBIT.ws.1.0", DATA / "BINANCE.ws.1.0", DATA / "BINANCE.http.0.0"])
    venues = {iid.split(":")[0] for iid in report["instruments"]}
    assert venues == {"deribit", "binance"} and report["errors"] == []


def test_inspect_refuses_an_unknown_venue():
    with pytest.raises(InspectError, match="deribit"):
        inspect_files(FILES, venue="bybit")
