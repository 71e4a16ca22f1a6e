"""Chain files and ticker events -> OptionQuote lists (real Deribit chains, tests/data/deribit)."""

from __future__ import annotations

import io
import pathlib

import pytest

from connectors.chains import ChainFormatError, option_quote, parse_chain, quotes_from_tickers, read_chain
from connectors.events import Instrument, OptionTicker

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "deribit"
SCHEPAL = DATA / "schepal_options_data.csv"
FINAL = DATA / "hudsonstreet_final_data.csv"
PC = DATA / "hudsonstreet_formated_data_pc.csv"


def test_schepal_ticker_csv_reads_every_row_with_decimal_ivs():
    chain = read_chain(SCHEPAL)
    assert chain.format == "deribit_ticker"
    assert len(chain.quotes) == chain.n_rows == 326
    assert chain.now_ns == 1590103355277 * 1_000_000  # the latest ticker timestamp
    q = next(q for q in chain.quotes if q.symbol == "BTC-22MAY20-9250-P")
    assert (q.strike, q.is_call, q.expiry_ns) == (9250.0, False, 1590134400000 * 1_000_000)
    assert q.mark_iv == pytest.approx(0.8505) and q.bid_iv == pytest.approx(0.724)
    assert q.ask_iv == pytest.approx(1.0117) and q.underlying_price == 9096.11
    assert q.bid_price == 0.02 and q.ask_price == 0.023 and q.mark_price == 0.02124908
    empty_bid = next(q for q in chain.quotes if q.symbol == "BTC-5JUN20-6750-C")
    assert empty_bid.bid_iv is None and empty_bid.bid_price is None  # 0 means an empty side


def test_hudsonstreet_price_csvs_split_calls_and_puts_and_value_at_noon_utc():
    final = read_chain(FINAL)
    assert final.format == "deribit_prices" and len(final.quotes) == 222
    assert final.now_ns == 1563278400 * 1_000_000_000  # 2019-07-16 12:00 UTC
    assert all(q.mark_iv is None and q.bid_iv is None for q in final.quotes)
    assert final.notes and "12:00 UTC" in final.notes[0]
    pc = read_chain(PC)
    assert pc.format == "deribit_prices_pc" and pc.n_rows == 131 and len(pc.quotes) == 262
    assert sum(q.is_call for q in pc.quotes) == 131
    first_call = pc.quotes[0]
    assert (first_call.strike, first_call.is_call, first_call.bid_price, first_call.ask_price) == (9500.0, True, 0.106,
                                                                                                   0.111)
    assert first_call.expiry_ns == 1568966400 * 1_000_000_000  # 20SEP19 08:00 UTC


def test_now_can_be_given():
    assert read_chain(FINAL, now_ns=123).now_ns == 123


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("a,b,c\n1,2,3\n", "unknown chain format"),
    ("instrument_name,mark_iv,bid_iv\nBTC-24SEP21-8000-P,80,70\n", "lacks column(s): ask_iv, underlying_price"),
    ("instrument_name,bid_price,ask_price,underlying_price,timestamp\nBTC-24SEP21-8000-X,0.1,0.2,30000,1\n",
     "not a Deribit option name"),
    ("strike,option_type,expiry_date,bid_price,ask_price,underlying_price,creation_time\n"
     "8000,put,13-45-2019,0.1,0.2,30000,07-16-2019\n", "unrecognised date"),
])
def test_bad_files_give_one_line_errors(text, message):
    with pytest.raises(ChainFormatError) as exc:
        parse_chain(io.StringIO(text), name="chain.csv")
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert str(exc.value).startswith("chain.csv")


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_chain(tmp_path / "nope.csv")
    p = tmp_path / "x.csv"
    p.write_bytes(b"\x00\x01\x02")
    with pytest.raises(ChainFormatError, match="binary"):
        read_chain(p)


def test_header_only_chain_is_an_empty_list():
    chain = parse_chain(io.StringIO("instrument_name,bid_price,ask_price,underlying_price,timestamp\n"))
    assert chain.quotes == [] and chain.n_rows == 0


def test_option_names_are_read_by_the_connectors_one_parser():
    """Chains from files and from tickers read names with connectors.venues.deribit.parse.parse_name."""
    text = "instrument_name,bid_price,ask_price,underlying_price,timestamp\n"
    text += "BTC-24SEP21-8000-P,0.01,0.02,30000,1\nXRP_USDC-30MAY25-2d2-C,0.01,0.02,2.1,1\n"
    put, linear_call = parse_chain(io.StringIO(text)).quotes
    assert (put.expiry_ns, put.strike, put.is_call) == (1632470400 * 1_000_000_000, 8000.0, False)
    assert (linear_call.strike, linear_call.is_call) == (2.2, True)
    with pytest.raises(ChainFormatError, match="not a Deribit option name"):
        parse_chain(io.StringIO(text.replace("BTC-24SEP21-8000-P", "BTC-PERPETUAL")))
    assert option_quote(_ticker("BTC-PERPETUAL", 1)) is None
    assert option_quote(_ticker("ETH-1JAN22-4000-C", 1)).strike == 4000.0


def _ticker(symbol, ts, mark_iv=0.8, bid_price=0.01):
    return OptionTicker(venue="deribit", symbol=symbol, ts_exchange_ns=ts, ts_recv_ns=ts + 1, underlying_price=30000.0,
                        underlying_index="BTC-24SEP21", index_price=29990.0, mark_price=0.012, mark_iv=mark_iv,
                        bid_iv=0.7, ask_iv=None, best_bid_price=bid_price, best_bid_size=1.0, best_ask_price=None,
                        best_ask_size=None)


def test_quotes_from_tickers_keeps_the_latest_per_option_and_uses_instruments():
    tickers = [_ticker("BTC-24SEP21-8000-P", 2, mark_iv=0.9), _ticker("BTC-24SEP21-8000-P", 1, mark_iv=0.5),
               _ticker("BTC-24SEP21-9000-C", 3, bid_price=0.0)]
    inst = Instrument(venue="deribit", symbol="BTC-24SEP21-9000-C", ts_exchange_ns=None, ts_recv_ns=0, base="BTC",
                      quote="BTC", settle="BTC", instrument_kind="option", strike=9000.0, expiry_ns=77,
                      option_type="C")
    quotes = {q.symbol: q for q in quotes_from_tickers(tickers, [inst])}
    assert quotes["BTC-24SEP21-8000-P"].mark_iv == 0.9 and quotes["BTC-24SEP21-8000-P"].ts_ns == 2
    assert quotes["BTC-24SEP21-9000-C"].expiry_ns == 77 and quotes["BTC-24SEP21-9000-C"].bid_price is None
    assert quotes["BTC-24SEP21-8000-P"].ask_iv is None and quotes["BTC-24SEP21-8000-P"].underlying_price == 30000.0
