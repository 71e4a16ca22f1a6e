"""The attention model in the flow: batched once per bar, preferred in records, equal to the offline path.

The attention model needs 4 hours of 1-minute bars before its first window, more
than any bundled recording holds, so these tests feed a synthetic book (a
geometric random walk of the mid, labelled synthetic here) through the flow
(:mod:`flows.synthetic`).
"""

from __future__ import annotations

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from flows.config import AppConfig, FeedConfig
from flows.dataflow import build_flow
from flows.records import SCHEMA, SCORE_SCHEMA
from flows.synthetic import MIDNIGHT_NS as START
from flows.synthetic import SECOND_NS as SECOND
from flows.synthetic import synthetic_book_snapshots
from model.features import feature_spec
from model.nn.infer import BatchedForecaster, default_checkpoint

STEPS = 4 * 3600 + 30 * 60  # 4h30m of 1 s steps: the reference level plus a 16-bar window and more


@pytest.fixture(scope="module")
def run():
    cfg = AppConfig(feeds=(FeedConfig(market="spot", symbols=("BTCUSDT",)),))
    model = BatchedForecaster(default_checkpoint(), feature_spec(cfg.cadence_ns, cfg.book_depth))
    records, rows = [], []
    flow = build_flow(cfg, [TestingSink(records)], source=TestingSource(synthetic_book_snapshots(STEPS), batch_size=512),
                      rows_sink=TestingSink(rows), model=model)
    run_main(flow)
    return cfg, model, [r for r in records if r["schema"] == SCHEMA], [r for r in records if r["schema"] == SCORE_SCHEMA], rows


def test_attention_fills_the_records_once_its_window_is_ready(run):
    _cfg, _model, forecasts, _scores, _rows = run
    first_ok = next(i for i, r in enumerate(forecasts) if r["rv"][0]["method"] == "attention")
    # Before: attention says what it lacks; from then on every horizon is attention's, with its quantiles.
    early = forecasts[first_ok - 1]
    assert any("attention needs" in w for w in early["warming_up"])
    for rec in forecasts[first_ok:]:
        assert [h["method"] for h in rec["rv"]] == ["attention"] * 4
        assert all(h["q10"] < h["q50"] < h["q90"] for h in rec["rv"])
        assert rec["baselines"]["attention"]["5m"] == rec["rv"][0]["vol"]
    # The reference level is 4 h of bars and the window 16 bars: the first forecast comes after ~4h16m.
    ready_s = (forecasts[first_ok]["ts_ns"] - START) / SECOND
    assert 4 * 3600 + 15 * 60 <= ready_s <= 4 * 3600 + 18 * 60


def test_flow_forecasts_equal_the_offline_window_builder_and_model(run):
    cfg, model, forecasts, _scores, rows = run
    # Offline: the same rows through the model's own window builder, one window at a time.
    builder = model.window_builder("binance:BTCUSDT", cfg.cadence_ns)
    offline = {}
    for row in rows:
        window = builder.observe(row)
        if window is not None:
            offline[row.ts_ns] = model.forecast_batch([window])[0]
    assert len(offline) >= 10
    by_ts = {r["ts_ns"]: r for r in forecasts}
    for ts, fcs in offline.items():
        rec = by_ts[ts]
        assert [h["vol"] for h in rec["rv"]] == pytest.approx([fc.vol for fc in fcs], rel=1e-6)


def test_attention_is_scored_once_per_bar(run):
    _cfg, _model, _forecasts, scores, _rows = run
    last = {(s["method"], s["horizon"]): s for s in scores[-1]["scores"]}
    # 5m forecasts made at bar ends from ~4h16m mature 5 minutes later: some per bar, never one per second.
    att = last[("attention", "5m")]
    assert 1 <= att["scored_total"] <= 15
    assert last[("ewma", "5m")]["scored_total"] > att["scored_total"]
