"""Mempool features joined into an underlying's records: real book and real mempool.space messages in one flow."""

from __future__ import annotations

from pathlib import Path

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.record.detect import merge_recordings
from connectors.venues.binance.protocol import BinanceProtocol
from connectors.venues.bitcoin.protocol import BitcoinMempoolProtocol
from flows.config import AppConfig, BitcoinFeed, FeedConfig
from flows.dataflow import build_flow
from flows.records import SCHEMA
from flows.schemas import validate

ROOT = Path(__file__).resolve().parents[2]
SPOT = ROOT / "data" / "binance" / "hftbacktest" / "spot"
MEMPOOL = ROOT / "tests" / "data" / "mempool_space"
S = 1_000_000_000


@pytest.fixture(scope="module")
def records():
    """The real spot BTCUSDT book; the real mempool.space messages received at two times inside its window."""
    book = BinanceProtocol("spot", ["BTCUSDT"], book_view_depth=5, emit_deltas=False)
    events = [ev for frame in merge_recordings([SPOT / "btcusdt_20240808.gz"]) for ev in book.feed_frame(frame)]
    start = events[0].ts_recv_ns
    bitcoin = BitcoinMempoolProtocol()
    bitcoin.connection_opened(start)
    bitcoin.frames_to_send()
    received = [(start + 60 * S, "mainnet_mempoolInfo.json"), (start + 61 * S, "tx02_ws_next_block.json"),
                (start + 62 * S, "tx02_ws_next_block.json")]
    mempool = [ev for ts, name in received for ev in bitcoin.receive_frame((MEMPOOL / name).read_text(), ts)]
    merged = sorted(events + mempool, key=lambda ev: ev.ts_recv_ns)
    cfg = AppConfig(feeds=(FeedConfig(market="spot", symbols=("BTCUSDT",)), BitcoinFeed(ws_url="ws://127.0.0.1:1")))
    out: list = []
    run_main(build_flow(cfg, [TestingSink(out)], source=TestingSource(merged, batch_size=256)))
    return [r for r in out if r["schema"] == SCHEMA], start


def test_records_carry_the_chains_features_while_fresh_and_absent_after(records):
    recs, start = records
    joined = [r for r in recs if "features" in r]
    assert joined and all(r["underlying"] == "BTC" for r in joined)
    first = joined[0]["features"]["mempool"]["bitcoin"]
    assert first["values"]["pending_count"] == 112686.0
    fresh = [r for r in joined if r["features"]["mempool"]["bitcoin"]["age_s"] <= 30.0]
    stale = [r for r in joined if r["features"]["mempool"]["bitcoin"]["age_s"] > 30.0]
    assert fresh and stale  # the feed goes silent after its last message; the book goes on
    assert all(v is None for r in stale for v in r["features"]["mempool"]["bitcoin"]["values"].values())
    assert all(r["features"]["mempool"]["bitcoin"]["values"]["tip_p50_gwei"] is None for r in fresh)  # not on Bitcoin
    for rec in joined[:: max(1, len(joined) // 5)]:
        validate(rec)
