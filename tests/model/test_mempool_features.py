"""Mempool features: golden rows from real mempool.space messages and from a real anvil
recording, a property test of order and presence, and the integrity rules.

Data: ``tests/data/mempool_space/mempool-space-fixtures.vcr.gz`` (real mempool.space
messages, receive times assigned) and ``tests/data/ethereum/anvil-mempool.vcr.gz`` (real
anvil output on a dev chain); see their PROVENANCE.md. Events built in this file are SYNTHETIC.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.events import ChainHead, FeedStatus, MempoolStats, MempoolTx, ProjectedBlock
from connectors.record.detect import open_recording
from connectors.venues.bitcoin import BitcoinMempoolProtocol
from connectors.venues.ethereum import EthereumProtocol
from model.mempool import CHAIN_CHANNELS, CHANNEL_NAMES, N_CHANNELS, MempoolFeatures, MempoolRow

DATA = Path(__file__).resolve().parents[1] / "data"
S = 1_000_000_000
GWEI = 10**9


def recorded_events(path: Path, proto) -> list:
    return [ev for frame in open_recording(path) for ev in proto.feed_frame(frame)]


def tx(ts: int, tip: int | None = None, swap_wei: int | None = None, swap: bool = False) -> MempoolTx:
    """SYNTHETIC pending Ethereum transaction with the given effective tip (wei) and swap input."""
    return MempoolTx(venue="ethereum", symbol="ETH", ts_exchange_ns=None, ts_recv_ns=ts, chain="ethereum",
                     txid=f"0x{ts:064x}", effective_tip=tip, dex_swap=swap or swap_wei is not None,
                     swap_notional_wei=swap_wei)


def head(ts: int, base_fee_gwei: float | None, height: int) -> ChainHead:
    """SYNTHETIC Ethereum head."""
    return ChainHead(venue="ethereum", symbol="ETH", ts_exchange_ns=None, ts_recv_ns=ts, chain="ethereum",
                     height=height, block_hash=f"0x{height:064x}",
                     base_fee=None if base_fee_gwei is None else int(base_fee_gwei * GWEI))


def status(ts: int, state: str, venue: str = "ethereum") -> FeedStatus:
    return FeedStatus(venue=venue, symbol="*", ts_exchange_ns=None, ts_recv_ns=ts, state=state, scope="connection")


# ---------------------------------------------------------------- golden rows on real data


def test_golden_rows_from_real_mempool_space_messages():
    events = recorded_events(DATA / "mempool_space" / "mempool-space-fixtures.vcr.gz", BitcoinMempoolProtocol())
    first_session = [e for e in events if e.ts_recv_ns < 1_743_000_000 * S]
    f = MempoolFeatures("bitcoin", cadence_ns=S)
    rows = f.on_events(first_session) + f.advance_to(first_session[-1].ts_recv_ns + 40 * S)
    received = 1_711_854_957 * S  # the init message (mainnet_mempoolInfo.json)
    assert [r.ts_ns for r in rows] == [received + k * S for k in range(0, 41)]
    assert not rows[0].present.any()  # the step before the message: nothing yet
    golden = {"pending_count": 112686.0, "mempool_vbytes_per_s": 2364.0,
              "next_block_fee_median_sat_vb": 7.036906854130053, "next_block_fee_min_sat_vb": 7.0,
              "next_block_fee_max_sat_vb": 236.07305936073058}
    for row in rows[1:31]:  # fresh for stale_after_ns (30 s) after it was received
        assert {k: v for k, v in row.values.items() if v is not None} == golden
    for row in rows[31:]:
        assert not row.present.any() and not row.vector.any()  # stale: absent, and 0.0 underneath
    # The 2025 session has blocks and projected blocks but no mempoolInfo: no stats, so no channel.
    later = MempoolFeatures("bitcoin", cadence_ns=S)
    assert not any(r.present.any() for r in later.on_events([e for e in events if e not in first_session]))


def test_golden_rows_from_a_real_anvil_recording():
    events = recorded_events(DATA / "ethereum" / "anvil-mempool.vcr.gz", EthereumProtocol())
    rows = MempoolFeatures("ethereum", cadence_ns=S).on_events(events)
    assert len(rows) == 29 and rows[0].ts_ns == 1_795_539_386 * S
    assert not rows[0].present.any()  # the first head arrived, no transaction yet
    # Every one of the 54 recorded transactions is counted once; the swaps with their ETH in.
    assert sum(r.get("arrivals_per_s") or 0.0 for r in rows) == 54.0
    assert sum(r.get("swap_count") or 0.0 for r in rows) == 17.0
    assert math.isclose(sum(r.get("swap_notional_eth") or 0.0 for r in rows), 4.5)
    row = rows[6]  # the step ending 1795539392 s
    assert row.ts_ns == 1_795_539_392 * S
    assert row.values == pytest.approx({
        "arrivals_per_s": 5.0, "tip_p10_gwei": 1.0, "tip_p50_gwei": 2.0, "tip_p90_gwei": 2.6,
        "fee_rate_p10_sat_vb": None, "fee_rate_p50_sat_vb": None, "fee_rate_p90_sat_vb": None,
        "swap_count": 3.0, "swap_notional_eth": 0.5, "base_fee_gwei": 0.671009755,
        "base_fee_change": math.log(671009755 / 766408446), "pending_count": None, "mempool_vbytes_per_s": None,
        "next_block_fee_median_sat_vb": None, "next_block_fee_min_sat_vb": None, "next_block_fee_max_sat_vb": None,
    })
    # Independent check of the percentiles: the step's own effective tips.
    tips = [e.effective_tip / GWEI for e in events
            if isinstance(e, MempoolTx) and row.ts_ns - S <= e.ts_recv_ns < row.ts_ns]
    assert [row.get(f"tip_p{q}_gwei") for q in (10, 50, 90)] == pytest.approx(np.percentile(tips, [10, 50, 90]))
    # The base fee rose after the blocks above their gas target (the burner's 16M gas).
    assert rows[7].get("base_fee_change") == pytest.approx(math.log(677475269 / 671009755))
    # After the last transaction: a quiet mempool (zero arrivals, no percentiles), not an absent one.
    quiet = rows[-1]
    assert quiet.get("arrivals_per_s") == 0.0 and quiet.get("tip_p50_gwei") is None
    assert quiet.get("base_fee_gwei") == pytest.approx(0.616515196)


# ---------------------------------------------------------------- the rules


def test_rows_carry_fixed_named_channels_with_zero_where_absent():
    f = MempoolFeatures("ethereum", cadence_ns=S)
    (row,) = f.on_events([tx(1, tip=GWEI), tx(S + 1)])
    assert row.vector.shape == row.present.shape == (N_CHANNELS,) and list(row.values) == list(CHANNEL_NAMES)
    assert not row.vector.flags.writeable and not row.present.flags.writeable
    assert all(row.vector[i] == 0.0 for i in np.flatnonzero(~row.present))
    ethereum_only = {n for n in CHANNEL_NAMES if n in CHAIN_CHANNELS["ethereum"]}
    assert {n for n, v in row.values.items() if v is not None} <= ethereum_only
    with pytest.raises(ValueError, match="bitcoin"):
        f.on_event(status(2 * S, "connected", venue="bitcoin"))


def test_bitcoin_arrivals_fee_rate_percentiles_and_a_sequence_gap():
    def btx(ts: int, rate: float) -> MempoolTx:  # SYNTHETIC track-mempool arrival
        return MempoolTx(venue="bitcoin", symbol="BTC", ts_exchange_ns=None, ts_recv_ns=ts, chain="bitcoin",
                         txid=f"{ts:064x}", fee_rate_sat_vb=rate, vsize=140)

    f = MempoolFeatures("bitcoin", cadence_ns=S)
    rows = f.on_events([btx(1, 1.0), btx(2, 2.0), btx(3, 3.0), btx(4, 10.0), btx(S + 1, 5.0),
                        status(S + 2, "gap", venue="bitcoin"), btx(2 * S, 4.0)])
    first, gapped = rows
    assert first.get("arrivals_per_s") == 4.0
    assert [first.get(f"fee_rate_p{q}_sat_vb") for q in (10, 50, 90)] == pytest.approx([1.3, 2.5, 7.9])
    assert first.get("pending_count") is None  # no stats received
    assert not gapped.present.any()  # transactions were lost in that step: no per-step channel


def test_a_stale_feed_and_stale_inputs_are_absent():
    f = MempoolFeatures("ethereum", cadence_ns=S, stale_after_ns=5 * S)
    rows = f.on_events([head(0, 10.0, 1), tx(1, tip=GWEI), head(2 * S, 11.0, 2), tx(3 * S, tip=GWEI)])
    rows += f.advance_to(20 * S)
    by_end = {r.ts_ns // S: r for r in rows}
    assert by_end[3].get("base_fee_change") == pytest.approx(math.log(11 / 10))
    assert by_end[4].get("arrivals_per_s") == 1.0
    assert by_end[7].get("arrivals_per_s") == 0.0 and by_end[7].get("base_fee_gwei") == 11.0  # quiet; head 5 s old
    assert by_end[8].get("arrivals_per_s") == 0.0 and by_end[8].get("base_fee_gwei") is None  # head 6 s old
    assert not by_end[9].present.any()  # no event for more than 5 s: the whole feed is absent
    # A live feed whose heads stopped: the base fee goes absent on its own.
    f = MempoolFeatures("ethereum", cadence_ns=S, stale_after_ns=5 * S)
    rows = f.on_events([head(0, 10.0, 1)] + [tx(k * S + 1) for k in range(1, 10)])
    assert [r.get("base_fee_gwei") for r in rows] == [10.0] * 5 + [None] * 4


def test_base_fee_change_needs_the_parent_head():
    f = MempoolFeatures("ethereum", cadence_ns=S)
    rows = f.on_events([head(0, 10.0, 1), head(S, 12.0, 3), head(2 * S, 9.0, 4), head(3 * S, 9.0, 4),
                        tx(4 * S)])
    assert [r.get("base_fee_change") for r in rows] == [None, None, pytest.approx(math.log(9 / 12)), None]


def test_a_disconnect_drops_the_state_and_breaks_the_step():
    f = MempoolFeatures("ethereum", cadence_ns=S)
    rows = f.on_events([head(0, 10.0, 1), tx(1, tip=GWEI), tx(S + 1, tip=GWEI), status(S + 2, "disconnected"),
                        tx(S + 3, tip=GWEI),  # arriving while down: not trusted
                        status(2 * S + 1, "connected"), status(2 * S + 2, "synced"),
                        tx(4 * S + 1, tip=2 * GWEI), head(4 * S + 2, 8.0, 5), tx(5 * S + 1)])
    by_end = {r.ts_ns // S: r for r in rows}
    assert by_end[1].get("arrivals_per_s") == 1.0
    assert not by_end[2].present.any() and not by_end[3].present.any()  # the outage, then a partial step
    assert by_end[4].get("arrivals_per_s") is None  # reconnected, no transaction yet on this connection
    assert by_end[5].get("arrivals_per_s") == 1.0 and by_end[5].get("tip_p50_gwei") == 2.0
    assert by_end[5].get("base_fee_gwei") == 8.0 and by_end[5].get("base_fee_change") is None  # no parent since


def test_a_long_silence_is_bounded_by_max_gap_steps():
    f = MempoolFeatures("ethereum", cadence_ns=S, max_gap_steps=10)
    rows = f.on_events([tx(1), tx(100 * S + 1)])
    assert [r.ts_ns // S for r in rows] == [1]
    assert [r.ts_ns // S for r in f.advance_to(103 * S)] == [101, 102, 103]


def test_pickles_mid_stream_and_goes_on_identically():
    events = recorded_events(DATA / "ethereum" / "anvil-mempool.vcr.gz", EthereumProtocol())
    whole = MempoolFeatures("ethereum").on_events(events)
    first = MempoolFeatures("ethereum")
    rows = first.on_events(events[:40])
    resumed = pickle.loads(pickle.dumps(first))
    assert rows + resumed.on_events(events[40:]) == whole


def test_stats_without_projected_blocks_give_no_band():
    stats = MempoolStats(venue="bitcoin", symbol="BTC", ts_exchange_ns=None, ts_recv_ns=1, chain="bitcoin",
                         size_tx=5, projected_blocks=[ProjectedBlock(n_tx=1, vsize=1.0, total_fees=1, median_fee=3.0)])
    (row,) = MempoolFeatures("bitcoin", cadence_ns=S).on_events([stats, status(S, "connected", venue="bitcoin")])
    assert row.get("pending_count") == 5.0 and row.get("next_block_fee_median_sat_vb") == 3.0
    assert row.get("next_block_fee_min_sat_vb") is None and row.get("mempool_vbytes_per_s") is None


# ---------------------------------------------------------------- property


arrival = st.tuples(st.integers(0, 40 * S), st.sampled_from(["tx", "tx_tip", "head"]), st.integers(1, 50 * GWEI))


@settings(max_examples=200, deadline=None)
@given(st.lists(arrival, min_size=1, max_size=60))
def test_rows_are_in_time_order_and_a_channel_is_absent_exactly_without_its_input(arrivals):
    cadence, stale = S, 10 * S
    arrivals = sorted(arrivals, key=lambda a: a[0])
    events, height = [], 0
    for ts, kind, value in arrivals:
        if kind == "head":
            height += 1
            events.append(head(ts, value / GWEI, height))
        else:
            events.append(tx(ts, tip=value if kind == "tx_tip" else None))
    rows: list[MempoolRow] = MempoolFeatures("ethereum", cadence_ns=cadence, stale_after_ns=stale).on_events(events)
    ends = [r.ts_ns for r in rows]
    first_end = (arrivals[0][0] // cadence + 1) * cadence
    last_end = (arrivals[-1][0] // cadence + 1) * cadence
    assert ends == list(range(first_end, last_end, cadence))  # every closed step, in order, once
    for row in rows:
        end = row.ts_ns
        before = [a for a in arrivals if a[0] < end]
        in_step = [a for a in before if a[0] >= end - cadence]
        fresh = end - before[-1][0] <= stale
        heads = [(ts, v) for ts, kind, v in before if kind == "head"]
        assert not row.vector[~row.present].any()
        # Per-step channels: the transaction stream known and the feed alive.
        stream = fresh and any(kind != "head" for _, kind, _ in before)
        assert (row.get("arrivals_per_s") is not None) == stream
        if stream:
            assert row.get("arrivals_per_s") == sum(kind != "head" for _, kind, _ in in_step)
        has_tip = any(kind == "tx_tip" for _, kind, _ in in_step)
        assert (row.get("tip_p50_gwei") is not None) == has_tip == (row.get("tip_p90_gwei") is not None)
        # State channels: the latest head, fresh; its change needs a second head.
        head_fresh = fresh and bool(heads) and end - heads[-1][0] <= stale
        assert (row.get("base_fee_gwei") is not None) == head_fresh
        assert (row.get("base_fee_change") is not None) == (head_fresh and len(heads) >= 2)
        # Never a Bitcoin channel on Ethereum.
        assert row.get("pending_count") is None and row.get("fee_rate_p50_sat_vb") is None
