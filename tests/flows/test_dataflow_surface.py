"""The live surface in the flow: a real Deribit chain through the connector, chain state and nowcast into records."""

from __future__ import annotations

from pathlib import Path

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.chains import read_chain
from connectors.record.detect import open_recording
from connectors.venues.deribit.protocol import DeribitProtocol
from flows import metrics
from flows.config import AppConfig, DeribitFeed
from flows.dataflow import build_flow
from flows.records import SCHEMA
from model.surface.report import report

CHAIN = Path(__file__).resolve().parents[1] / "data" / "deribit" / "schepal_options_data.csv"


@pytest.fixture(scope="module")
def chain_events():
    """The real 2020-05-21 BTC chain (326 options polled over 161 s) as the live connector parses it."""
    proto = DeribitProtocol(currencies=["BTC"], kinds=["option"])
    return [ev for frame in open_recording(CHAIN) for ev in proto.feed_frame(frame)]


@pytest.fixture(scope="module")
def records(chain_events):
    # The chain was polled one option at a time over 161 s: quotes count as fresh for 300 s.
    cfg = AppConfig(feeds=(DeribitFeed(currencies=("BTC",), kinds=("option",)),), surface_stale_s=300.0)
    out: list = []
    run_main(build_flow(cfg, [TestingSink(out)], source=TestingSource(chain_events, batch_size=64)))
    return [r for r in out if r["schema"] == SCHEMA]


def test_every_step_of_the_chain_gets_a_record_with_its_surface(records):
    # One per step the chain's clock closes (a step closes when the next ticker comes after it).
    steps = [r["ts_ns"] for r in records]
    assert len(steps) >= 100 and steps == sorted(set(steps)) and all(t % 10**9 == 0 for t in steps)
    for rec in records:
        assert rec["underlying"] == "BTC" and 0.0 <= rec["surface"]["age_s"] < 6.0  # refits every 5 s at most
        assert all(h["vol"] is None for h in rec["rv"])
        assert "BTC has no order-book feed: its records carry the surface only" in rec["warming_up"][0]
    last = records[-1]["surface"]
    assert last["status"] == "ok" and last["arbitrage"] == {"butterfly": 0, "calendar": 0}
    assert last["tenors_days"] == [1, 7, 14, 30, 60, 90, 180] and len(last["iv"]) == 7
    assert records[-1]["features"]["atm_30d"] == last["atm"]["30d"]
    assert records[-1]["features"]["dvol"] is None  # this capture has no DVOL channel: absent, not invented


def test_refits_are_throttled_and_warm_started(records):
    fit_times = sorted({r["surface"]["ts_ns"] for r in records})
    gaps = [(b - a) / 1e9 for a, b in zip(fit_times, fit_times[1:])]
    assert gaps and min(gaps) >= 5.0  # surface_refit_s


def test_the_last_nowcast_matches_the_offline_fit_of_the_same_quotes(records):
    # Offline: the fit `volcast surface` makes (cold) of the CSV's quotes up to the same time.
    live = records[-1]["surface"]
    quotes = [q for q in read_chain(CHAIN).quotes if q.ts_ns <= live["ts_ns"]]
    offline = report(quotes, live["ts_ns"])
    assert live["n_input_quotes"] == len(quotes) >= 300
    assert live["rmse_vol_pts"] == pytest.approx(offline["rmse_vol_pts"], abs=0.25)
    for tenor in ("7d", "30d", "90d"):
        assert live["atm"][tenor] == pytest.approx(offline["atm"][tenor], abs=0.005)
        assert live["rr25"][tenor] == pytest.approx(offline["rr25"][tenor], abs=0.005)


def test_the_surface_is_exported_as_metrics(records):
    atm = metrics.SURFACE_ATM_IV.labels("BTC", "30d")._value.get()  # noqa: SLF001
    assert atm == pytest.approx(records[-1]["surface"]["atm"]["30d"])
    assert metrics.SURFACE_IV.labels("BTC", "30d", "25P")._value.get() > atm  # the put skew of that day  # noqa: SLF001


def test_records_with_a_surface_are_schema_valid(records):
    from flows.schemas import validate

    for rec in records[:: max(1, len(records) // 10)] + records[-1:]:
        validate(rec)


def test_surface_forecasts_come_from_the_named_baseline_once_it_has_samples(records):
    first = records[0]["surface_forecast"]
    assert first["method"] == "ar1" and first["status"] == "warming_up" and "ar1 needs" in first["reason"]
    done = [r for r in records if r["surface_forecast"]["status"] == "ok"]
    if done:  # 161 s of chain at one sample per 5 s: at most 32 samples, about the 30 pairs it needs
        fc = done[-1]["surface_forecast"]["horizons"]["5m"]
        assert set(fc["atm"]) <= set(done[-1]["surface"]["atm"])


def test_mempool_events_of_an_underlying_without_a_chain_make_rows_not_surfaces():
    from connectors.events import MempoolTx
    from flows.aux import AuxState, MempoolUpdate
    from flows.config import EthereumFeed, FeedConfig

    cfg = AppConfig(feeds=(FeedConfig(symbols=("ETHUSDT",)), EthereumFeed(ws_url="ws://127.0.0.1:1")))
    state = AuxState("ETH", cfg)
    txs = [MempoolTx(venue="ethereum", symbol="ETH", ts_exchange_ns=None, ts_recv_ns=k * 10**9, chain="ethereum",
                     txid=f"0x{k:064x}") for k in range(5)]
    updates = [u for tx in txs for u in state.on_event(tx)]
    assert len(updates) == 4 and all(isinstance(u, MempoolUpdate) and u.row.chain == "ethereum" for u in updates)
