"""Mempool features: real mempool.space messages and SYNTHETIC Ethereum arrivals into per-step rows."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from connectors.events import ChainHead, MempoolTx
from connectors.venues.bitcoin.protocol import BitcoinMempoolProtocol
from model.mempool import CHANNELS, MempoolFeatures

DATA = Path(__file__).resolve().parents[1] / "data" / "mempool_space"
S = 1_000_000_000


def tx(ts: int, tip: int | None = None, swap_wei: int | None = None, swap: bool = False) -> MempoolTx:
    """SYNTHETIC pending Ethereum transaction with the given effective tip (wei) and swap input."""
    return MempoolTx(venue="ethereum", symbol="ETH", ts_exchange_ns=None, ts_recv_ns=ts, chain="ethereum",
                     txid=f"0x{ts:064x}", effective_tip=tip, dex_swap=swap or swap_wei is not None,
                     swap_notional_wei=swap_wei)


def head(ts: int, base_fee_gwei: float, height: int) -> ChainHead:
    return ChainHead(venue="ethereum", symbol="ETH", ts_exchange_ns=None, ts_recv_ns=ts, chain="ethereum",
                     height=height, block_hash=f"0x{height:064x}", base_fee=int(base_fee_gwei * 1e9))


def test_real_mempool_space_messages_give_the_projected_block_band():
    proto = BitcoinMempoolProtocol()
    proto.connection_opened(0)
    features = MempoolFeatures("bitcoin", cadence_ns=S)
    rows = []
    for k, name in enumerate(("mainnet_mempoolInfo.json", "tx02_ws_next_block.json")):
        for ev in proto.receive_frame((DATA / name).read_text(), k * S + 1):
            rows += features.on_event(ev)
    rows += features.on_event(next(iter(proto.receive_frame((DATA / "tx02_ws_next_block.json").read_text(), 3 * S))))
    last = rows[-1].values
    assert last["pending_count"] == 112686.0 and last["mempool_vbytes_per_s"] == 2364.0
    assert last["next_block_fee_median_sat_vb"] is not None and last["next_block_fee_min_sat_vb"] is not None
    assert last["next_block_fee_min_sat_vb"] <= last["next_block_fee_median_sat_vb"] <= last["next_block_fee_max_sat_vb"]
    # Ethereum-only channels are absent on Bitcoin, never zero.
    assert last["tip_p50_gwei"] is None and last["base_fee_gwei"] is None and last["swap_count"] is None


def test_ethereum_tips_swaps_and_base_fee_change():
    f = MempoolFeatures("ethereum", cadence_ns=S)
    events = [head(0, 10.0, 1), tx(1, tip=1 * 10**9), tx(2, tip=2 * 10**9), tx(3, tip=3 * 10**9, swap_wei=5 * 10**17),
              tx(4, swap=True), head(5, 11.0, 2), tx(S + 1)]
    (row,) = [r for ev in events for r in f.on_event(ev)]
    v = row.values
    assert row.ts_ns == S and v["pending_tx_per_s"] == 4.0
    assert (v["tip_p10_gwei"], v["tip_p50_gwei"], v["tip_p90_gwei"]) == (1.2, 2.0, 2.8)
    assert v["swap_count"] == 2.0 and v["swap_notional_eth"] == 0.5
    assert v["base_fee_gwei"] == 11.0 and v["base_fee_change"] == math.log(11.0 / 10.0)


def test_a_silent_feed_emits_no_rows_for_the_gap():
    f = MempoolFeatures("ethereum", cadence_ns=S)
    f.on_event(tx(1, tip=10**9))
    rows = f.on_event(tx(100 * S))  # 100 s of silence: the open step closes, the gap makes no empty rows
    assert [r.ts_ns for r in rows] == [S] and rows[0].values["tip_p50_gwei"] == 1.0
    assert [r.ts_ns for r in f.on_event(tx(101 * S + 5))] == [101 * S]


@given(st.lists(st.tuples(st.integers(0, 20 * S), st.one_of(st.none(), st.integers(1, 10**11))), min_size=1, max_size=60))
def test_rows_are_ordered_steps_and_tips_are_present_only_with_an_input(arrivals):
    f = MempoolFeatures("ethereum", cadence_ns=S)
    rows = [r for ts, tip in sorted(arrivals, key=lambda a: a[0]) for r in f.on_event(tx(ts, tip=tip))]
    ends = [r.ts_ns for r in rows]
    assert ends == sorted(set(ends)) and all(e % S == 0 for e in ends)
    for r in rows:
        assert set(r.values) == set(CHANNELS)
        had_tip = any(tip is not None and r.ts_ns - S <= ts < r.ts_ns for ts, tip in arrivals)
        assert (r.values["tip_p50_gwei"] is not None) == had_tip
