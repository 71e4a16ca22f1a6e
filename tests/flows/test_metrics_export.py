"""Feed freshness and bytes from the frame hook; forecast and score series appear and go away honestly."""

from __future__ import annotations

import time

import msgspec
from prometheus_client import CollectorRegistry, generate_latest

from connectors.record.frames import Frame
from connectors.venues.binance.protocol import BinanceProtocol
from flows import metrics
from model.forecaster import HorizonForecast
from model.horizons import Horizon
from model.scoring import Score

H5 = Horizon.parse("5m")


def scrape(collector) -> str:
    reg = CollectorRegistry()
    reg.register(collector)
    return generate_latest(reg).decode()


def sample(text: str, prefix: str) -> float:
    [line] = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    return float(line.rsplit(" ", 1)[1])


def test_feed_age_counts_from_start_until_the_first_frame_then_from_the_last():
    tracker = metrics.FrameTracker()
    tracker.started_ns -= 40 * 10**9  # started 40 s ago, nothing received yet
    coll = metrics.FeedCollector()
    coll.register("binance", BinanceProtocol("spot", ["BTCUSDT"]), tracker)
    before = scrape(coll)
    assert sample(before, 'volcast_feed_last_message_age_seconds{feed="binance"}') >= 40
    assert "volcast_feed_last_message_timestamp_seconds{" not in before
    now = time.time_ns()
    tracker.on_frame(Frame(now - 2 * 10**9, "c-1", "recv", b"x" * 100))
    tracker.on_frame(Frame(now, "c-1", "rest", b"y" * 7, "/api/v3/depth"))
    after = scrape(coll)
    assert 2 <= sample(after, 'volcast_feed_last_message_age_seconds{feed="binance"}') < 10
    assert sample(after, 'volcast_feed_last_message_timestamp_seconds{feed="binance"}') == (now - 2 * 10**9) / 1e9
    assert sample(after, 'volcast_feed_received_bytes_total{feed="binance",transport="websocket"}') == 100
    assert sample(after, 'volcast_feed_received_bytes_total{feed="binance",transport="rest"}') == 7
    assert sample(after, 'volcast_feed_reconnects_total{feed="binance"}') == 0
    assert 'volcast_book_state{instrument="binance:BTCUSDT",state="disconnected"} 1.0' in after


def test_a_method_back_to_warming_up_loses_its_series():
    exp = metrics.UnderlyingExporter("TESTU")
    ok = HorizonForecast(horizon=H5, vol=0.5, var=1e-4, method="ewma", status="ok", q10=0.4, q50=0.5, q90=0.6)
    exp.forecasts({"ewma": [ok]})
    assert metrics.FORECAST_VOL.labels("TESTU", "5m", "ewma")._value.get() == 0.5  # noqa: SLF001
    text = generate_latest().decode()
    assert 'volcast_forecast_vol_quantile{horizon="5m",method="ewma",quantile="0.9",underlying="TESTU"} 0.6' in text
    exp.forecasts({"ewma": [HorizonForecast.warming_up(H5, "ewma", "inputs stale")]})
    text = generate_latest().decode()
    assert not [ln for ln in text.splitlines() if ln.startswith("volcast_forecast_vol") and "TESTU" in ln]


def test_score_counters_add_only_the_new_totals():
    exp = metrics.UnderlyingExporter("TESTS")
    s = Score(method="ewma", horizon="5m", n=3, qlike=0.2, n_band=0, coverage=None, scored_total=3, unscorable_total=1)
    exp.scores([s])
    exp.scores([msgspec.structs.replace(s, n=5, scored_total=5)])
    labels = ("TESTS", "5m", "ewma")
    assert metrics.FORECAST_SCORED.labels(*labels)._value.get() == 5  # noqa: SLF001
    assert metrics.FORECAST_UNSCORABLE.labels(*labels)._value.get() == 1  # noqa: SLF001
    assert metrics.FORECAST_QLIKE.labels(*labels)._value.get() == 0.2  # noqa: SLF001
    coverage = 'volcast_forecast_coverage_q10_q90{horizon="5m",method="ewma",underlying="TESTS"}'
    assert coverage not in generate_latest().decode()  # no forecast carried a band
