"""The Bytewax flow on recorded events: one feature path, record shape, warm-up honesty."""

from __future__ import annotations

from pathlib import Path

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.events import BookSnapshot, FeedStatus
from connectors.record.detect import merge_recordings
from connectors.venues.binance.protocol import BinanceProtocol
from flows.config import AppConfig, FeedConfig
from flows.dataflow import build_flow
from flows.records import SCHEMA, SCORE_SCHEMA
from model.baselines.ewma import EWMA
from model.baselines.har import HARRV
from model.features import FeatureBuilder
from model.forecaster import step_rv
from model.scoring import OnlineScorer

DATA = Path(__file__).resolve().parents[2] / "data" / "binance" / "hftbacktest" / "spot"


@pytest.fixture(scope="module")
def spot_btc_events():
    """Normalized events of the real spot BTCUSDT recording (0808 then 0809), as the flow sees them."""
    proto = BinanceProtocol("spot", ["BTCUSDT"], book_view_depth=5, emit_deltas=False)
    events = []
    for frame in merge_recordings([DATA / "btcusdt_20240808.gz", DATA / "btcusdt_20240809.gz"]):
        events.extend(proto.feed_frame(frame))
    assert proto.stats().instruments["BTCUSDT"].gaps == 0
    return events


@pytest.fixture(scope="module")
def flow_output(spot_btc_events):
    cfg = AppConfig(feeds=(FeedConfig(market="spot", symbols=("BTCUSDT",)),))
    records, rows = [], []
    flow = build_flow(cfg, [TestingSink(records)], source=TestingSource(spot_btc_events, batch_size=256),
                      rows_sink=TestingSink(rows))
    run_main(flow)
    return cfg, records, rows


def forecasts_of(records):
    return [r for r in records if r["schema"] == SCHEMA]


def test_live_flow_and_offline_path_build_identical_rows(spot_btc_events, flow_output):
    # Arrange: the offline path (train/evaluate) runs the same FeatureBuilder without Bytewax.
    cfg, _records, flow_rows = flow_output
    offline = FeatureBuilder("binance:BTCUSDT", cadence_ns=cfg.cadence_ns, book_depth=cfg.book_depth)
    # Act
    offline_rows = offline.on_events(spot_btc_events)
    # Assert: row for row, value for value, mask for mask.
    assert len(flow_rows) > 600  # about 11 minutes of 1 s steps
    assert flow_rows == offline_rows


def test_records_are_versioned_idempotent_and_honest(flow_output):
    _cfg, records, rows = flow_output
    records = forecasts_of(records)
    assert len(records) == len(rows)  # one record per step of the primary instrument
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert all(r["schema"] == SCHEMA and r["underlying"] == "BTC" for r in records)
    assert [r["ts_ns"] for r in records] == sorted(r["ts_ns"] for r in records)

    first = records[0]
    assert all(h["vol"] is None and h["method"] is None for h in first["rv"])
    assert first["warming_up"]

    ok = [r for r in records if r["rv"][0]["vol"] is not None]
    assert ok, "EWMA must produce forecasts within the 11-minute recording"
    for rec in ok:
        for h in rec["rv"]:
            assert h["method"] in ("ewma", "har_rv", "har_rv(prior)")
            assert 0.05 < h["vol"] < 5.0  # annualized decimal, not percent
    # HAR needs 4h of history for its longest lag: 11 minutes cannot provide it.
    assert all(r["baselines"]["har_rv"]["4h"] is None for r in records)
    assert {h["horizon"] for h in ok[-1]["rv"]} == {"5m", "15m", "1h", "4h"}


def test_records_say_when_the_book_never_synced(spot_btc_events):
    # Arrange: the same recording without its REST snapshot, so the book never bridges.
    events = [
        e for e in spot_btc_events
        if not isinstance(e, BookSnapshot) and not (isinstance(e, FeedStatus) and e.state == "synced")
    ]
    cfg = AppConfig(feeds=(FeedConfig(market="spot", symbols=("BTCUSDT",)),))
    records, rows = [], []
    # Act
    run_main(build_flow(cfg, [TestingSink(records)], source=TestingSource(events, batch_size=256),
                        rows_sink=TestingSink(rows)))
    # Assert
    assert rows and not any(r.synced for r in rows)
    assert forecasts_of(records) and all(r["inputs_synced"] is False for r in forecasts_of(records))
    # Nothing observed, nothing scored: the score records say so.
    scores = [r for r in records if r["schema"] == SCORE_SCHEMA]
    assert scores and all(r["scores"] == [] for r in scores)


def test_score_records_match_an_offline_scorer_over_the_same_rows(flow_output):
    # Arrange: the offline path scores the same rows with the same forecasters and scorer.
    cfg, records, rows = flow_output
    forecasters = [HARRV(cadence_ns=cfg.cadence_ns), EWMA(cadence_ns=cfg.cadence_ns)]
    scorer = OnlineScorer(forecasters[0].horizons, cadence_ns=cfg.cadence_ns)
    expected = {}
    # Act
    for row in rows:
        scorer.observe(row.ts_ns, step_rv(row))
        for f in forecasters:
            f.observe(row)
            for fc in f.forecast(row.ts_ns):
                scorer.add(row.ts_ns, f.name, fc)
        if row.ts_ns % (60 * cfg.cadence_ns) == 0:
            expected[row.ts_ns] = scorer.summary()
    # Assert: one score record per minute of steps, with the offline scores.
    scores = [r for r in records if r["schema"] == SCORE_SCHEMA]
    assert [r["ts_ns"] for r in scores] == sorted(expected) and len(scores) >= 10
    for rec in scores:
        assert rec["id"] == f"BTC:{rec['ts_ns']}:score" and rec["underlying"] == "BTC"
        assert [(s["method"], s["horizon"], s["n"], s["qlike"]) for s in rec["scores"]] == [
            (s.method, s.horizon, s.n, s.qlike) for s in expected[rec["ts_ns"]]
        ]
    # 11 minutes of data: EWMA's 5m forecasts (from its 60th step on) mature and are scored;
    # HAR needs 4h of history and never forecasts; no quantiles yet, so no band coverage.
    final = {(s["method"], s["horizon"]): s for s in scores[-1]["scores"]}
    ewma_5m = final[("ewma", "5m")]
    assert ewma_5m["n"] >= 10 and 0.0 < ewma_5m["qlike"] < 5.0
    assert ewma_5m["coverage_q10_q90"] is None and ewma_5m["n_band"] == 0
    assert not any(method == "har_rv" for method, _h in final)
