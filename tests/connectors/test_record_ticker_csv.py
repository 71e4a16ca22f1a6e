"""Deribit ticker CSVs (public/ticker rows) read as recordings: sniffed, replayed, parsed like live tickers."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from connectors.events import Instrument, OptionTicker
from connectors.io.ws import run_session
from connectors.record import RecordingFormatError
from connectors.record.detect import open_recording, sniff_format
from connectors.replay.server import ReplayServer
from connectors.venues.deribit.protocol import DeribitProtocol

CHAIN = Path(__file__).resolve().parents[1] / "data" / "deribit" / "schepal_options_data.csv"


def rows() -> list[dict[str, str]]:
    with open(CHAIN, newline="") as f:
        return list(csv.DictReader(f))


def test_a_ticker_csv_is_sniffed_and_every_row_becomes_one_ticker_in_time_order():
    assert sniff_format(CHAIN) == "deribit_ticker_csv"
    frames = list(open_recording(CHAIN))
    assert len(frames) == len(rows()) == 326
    assert [f.ts_recv_ns for f in frames] == sorted(f.ts_recv_ns for f in frames)


def test_the_connector_reads_the_rows_values_unchanged():
    proto = DeribitProtocol(currencies=["BTC"], kinds=["option"])
    tickers = {}
    for frame in open_recording(CHAIN):
        for ev in proto.feed_frame(frame):
            if isinstance(ev, OptionTicker):
                tickers[ev.symbol] = ev
    by_name = {r["instrument_name"]: r for r in rows()}
    assert set(tickers) == set(by_name)
    for name, ev in tickers.items():
        row = by_name[name]
        assert ev.mark_iv == pytest.approx(float(row["mark_iv"]) / 100)  # percent -> decimal at the edge
        assert ev.underlying_price == float(row["underlying_price"])
        assert ev.ts_exchange_ns == int(row["timestamp"]) * 1_000_000
        if float(row["bid_iv"]) == 0.0:
            assert ev.bid_iv is None  # Deribit's 0 means no bid


def test_bad_rows_are_refused_with_the_line(tmp_path):
    bad = tmp_path / "chain.csv"
    text = CHAIN.read_text().splitlines()
    header, first = text[0], text[1].replace("1590103193775", "yesterday", 1)
    bad.write_text(header + "\n" + first + "\n")
    with pytest.raises(RecordingFormatError, match=r"chain.csv:2: timestamp 'yesterday' is not epoch milliseconds"):
        list(open_recording(bad))


def test_the_live_connector_gets_the_whole_chain_from_the_replay_server():
    async def main():
        async with ReplayServer([str(CHAIN)], speed=0) as server:
            proto = DeribitProtocol(currencies=["BTC"], kinds=["option"])
            seen: list = []
            await asyncio.wait_for(
                run_session(proto, ws_url=proto.stream_url(server.ws_url()), rest_base="",
                            on_events=lambda evs: seen.extend(evs)),
                timeout=60,
            )
            return seen

    events = asyncio.run(main())
    assert len({e.symbol for e in events if isinstance(e, OptionTicker)}) == 326
    assert len({e.symbol for e in events if isinstance(e, Instrument) and e.instrument_kind == "option"}) == 326
