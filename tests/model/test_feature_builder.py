"""FeatureBuilder on hand-built event sequences with answers worked out by hand."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.features import FEATURE_NAMES, FEATURE_SPEC, FeatureBuilder, FeatureRow, feature_spec

SEC = 1_000_000_000
BIDS5 = [(100.0, 2.0), (99.0, 1.0), (98.0, 1.0), (97.0, 1.0), (96.0, 1.0)]
ASKS5 = [(101.0, 1.0), (102.0, 1.0), (103.0, 2.0), (104.0, 1.0), (105.0, 1.0)]


def present_names(row: FeatureRow) -> set[str]:
    return {n for n, p in zip(FEATURE_NAMES, row.present) if p}


@pytest.fixture
def script(ev):
    """Six one-second steps: book arrives, moves, stays quiet, loses sync, resyncs, loses the connection."""
    fb = FeatureBuilder("binance:BTCUSDT")
    rows = []
    # Step 0 [0s, 1s): first book, two trades, bid queue grows by 1.
    rows += fb.on_event(ev.snap(0.1, BIDS5, ASKS5))
    rows += fb.on_event(ev.trade(0.5, 101.0, 0.5, "buy"))
    rows += fb.on_event(ev.trade(0.6, 100.0, 0.2, "sell"))
    rows += fb.on_event(ev.bbo(0.7, 100.0, 3.0, 101.0, 1.0))
    # Step 1 [1s, 2s): book moves up one level, then the ask queue shrinks.
    rows += fb.on_event(ev.snap(1.2, [(101.0, 1.0)] + BIDS5[:4], [(102.0, 2.0)] + ASKS5[1:]))
    rows += fb.on_event(ev.bbo(1.6, 101.0, 1.0, 102.0, 1.0))
    # Step 2 [2s, 3s): nothing happens.
    rows += fb.advance_to(3 * SEC)
    # Step 3 [3s, 4s): a sequence gap.
    rows += fb.on_event(ev.status(3.1, "gap"))
    rows += fb.on_event(ev.snap(3.2, BIDS5, ASKS5))  # ignored: not synced
    rows += fb.on_event(ev.trade(3.5, 101.0, 1.0, "buy"))
    # Step 4 [4s, 5s): resynced from a fresh snapshot.
    rows += fb.on_event(ev.status(4.2, "synced"))
    rows += fb.on_event(ev.snap(4.3, BIDS5, ASKS5))
    # Step 5 [5s, 6s): the connection drops.
    rows += fb.on_event(ev.status(5.5, "disconnected", scope="connection"))
    rows += fb.advance_to(6 * SEC)
    return rows


def test_rows_are_emitted_once_per_step_at_the_step_end(script):
    assert [r.ts_ns for r in script] == [k * SEC for k in range(1, 7)]


def test_book_state_features_of_the_first_step(script):
    row = script[0]
    assert row.get("mid") == pytest.approx(100.5)
    assert row.get("spread_bps") == pytest.approx(1.0 / 100.5 * 1e4, rel=1e-6)
    assert row.get("imbalance_l1") == pytest.approx((3 - 1) / 4)  # after the BBO at 0.7 s
    assert row.get("imbalance_l5") == pytest.approx(0.0)  # 6 vs 6 in the snapshot
    weighted_mid = (101.0 * 3 + 100.0 * 1) / 4
    assert row.get("microprice_bps") == pytest.approx((weighted_mid - 100.5) / 100.5 * 1e4, rel=1e-6)


def test_first_step_has_no_flow_features_because_it_started_without_a_book(script):
    row = script[0]
    assert not row.synced
    assert {"log_return", "rv_step", "ofi"}.isdisjoint(present_names(row))
    assert row.get("book_updates") == 2


def test_trade_sums(script):
    row = script[0]
    assert row.get("trade_volume") == pytest.approx(0.7)
    assert row.get("trade_count") == 2
    assert row.get("signed_volume") == pytest.approx(0.3)


def test_return_rv_and_ofi_of_a_moving_step(script):
    row = script[1]
    assert row.synced
    r = math.log(101.5 / 100.5)
    assert row.get("log_return") == pytest.approx(r, rel=1e-6)
    assert row.get("rv_step") == pytest.approx(r * r, rel=1e-6)  # the BBO at 1.6 s keeps the mid
    # e1 (bid and ask up a level) = 1 + 1, e2 (ask queue 2 -> 1) = +1; depth (2 + 1.5 + 1) / 3.
    assert row.get("ofi") == pytest.approx(3.0 / 1.5)
    assert row.get("ofi") > 0  # buying pressure: bid up, ask queue eaten
    assert row.get("trade_count") == 0  # a known trade stream with no trades is a zero, not a gap


def test_quiet_step_carries_the_mid_with_zero_return(script):
    row = script[2]
    assert row.synced and row.get("book_updates") == 0
    assert row.get("mid") == pytest.approx(101.5)
    assert (row.get("log_return"), row.get("rv_step"), row.get("ofi")) == (0.0, 0.0, 0.0)


def test_unsynced_book_masks_every_book_feature_but_not_trades(script):
    row = script[3]
    assert not row.synced
    assert present_names(row) == {"trade_volume", "trade_count", "signed_volume", "book_updates"}
    assert row.get("book_updates") == 0  # the snapshot during the gap was not used
    assert row.get("trade_volume") == 1.0


def test_resync_restores_book_state_but_not_flow_features_of_that_step(script):
    row = script[4]
    assert not row.synced
    assert row.get("mid") == pytest.approx(100.5)
    assert {"log_return", "rv_step", "ofi"}.isdisjoint(present_names(row))


def test_connection_loss_masks_book_and_trades(script):
    assert present_names(script[5]) == {"book_updates"}


def test_event_without_exchange_time_takes_the_clock(ev):
    fb = FeatureBuilder("binance:BTCUSDT")
    fb.on_event(ev.status(0.1, "synced"))
    fb.on_event(ev.trade(0.2, 100.0, 1.0, "buy"))
    fb.on_event(ev.bbo(1.4, 100.0, 1.0, 101.0, 1.0))
    assert fb.on_event(ev.bbo(None, 101.0, 1.0, 102.0, 1.0)) == []  # lands in [1s, 2s)
    [row] = fb.advance_to(2 * SEC)
    assert row.get("mid") == pytest.approx(101.5)


def test_late_event_joins_the_open_step_and_the_clock_never_goes_back(ev):
    fb = FeatureBuilder("binance:BTCUSDT")
    fb.on_event(ev.trade(1.5, 100.0, 1.0, "buy"))
    fb.on_event(ev.trade(0.5, 100.0, 2.0, "sell"))  # late: counted in [1s, 2s)
    assert fb.clock_ns == int(1.5 * SEC)
    [row] = fb.advance_to(2 * SEC)
    assert (row.ts_ns, row.get("trade_count"), row.get("signed_volume")) == (2 * SEC, 2, -1.0)


def test_stale_or_crossed_top_of_book_is_ignored(ev):
    fb = FeatureBuilder("binance:BTCUSDT")
    fb.on_event(ev.status(0.0, "synced"))
    fb.on_event(ev.bbo(0.1, 100.0, 1.0, 101.0, 1.0, seq=10))
    fb.on_event(ev.bbo(0.2, 90.0, 1.0, 91.0, 1.0, seq=9))  # older than what we hold
    fb.on_event(ev.bbo(0.3, 102.0, 1.0, 101.0, 1.0, seq=11))  # crossed
    [row] = fb.advance_to(SEC)
    assert row.get("mid") == pytest.approx(100.5) and row.get("book_updates") == 1


def test_shallow_snapshot_gives_no_l5_imbalance(ev):
    fb = FeatureBuilder("binance:BTCUSDT")
    fb.on_event(ev.snap(0.1, BIDS5[:1], ASKS5[:1], depth=1))
    [row] = fb.advance_to(SEC)
    assert row.get("imbalance_l1") is not None and row.get("imbalance_l5") is None


def test_clock_jump_beyond_max_gap_skips_the_empty_steps(ev):
    fb = FeatureBuilder("binance:BTCUSDT", max_gap_steps=10)
    fb.on_event(ev.status(0.0, "synced"))
    fb.on_event(ev.bbo(0.1, 100.0, 1.0, 101.0, 1.0))
    rows = fb.advance_to(5 * SEC)
    assert len(rows) == 5
    rows = fb.on_event(ev.bbo(100.5, 100.0, 1.0, 101.0, 1.0))
    assert [r.ts_ns for r in rows] == [6 * SEC]
    [row] = fb.advance_to(101 * SEC)
    assert row.ts_ns == 101 * SEC and row.get("log_return") is None and row.get("mid") is not None


def test_bbo_alone_is_not_a_synced_book(ev):
    fb = FeatureBuilder("binance:BTCUSDT")
    fb.on_event(ev.bbo(0.1, 100.0, 1.0, 101.0, 1.0))
    fb.on_event(ev.trade(0.2, 100.0, 1.0, "buy"))
    [row] = fb.advance_to(SEC)
    assert not row.synced and present_names(row) == {"trade_volume", "trade_count", "signed_volume", "book_updates"}


def test_events_of_another_instrument_are_refused_but_venue_connection_status_is_accepted(ev):
    fb = FeatureBuilder("binance:ETHUSDT")
    with pytest.raises(ValueError, match="binance:BTCUSDT"):
        fb.on_event(ev.trade(0.1, 1.0, 1.0, "buy"))
    assert fb.on_event(ev.status(0.2, "disconnected", scope="connection")) == []


def test_constructor_checks_its_arguments():
    with pytest.raises(ValueError, match="venue:SYMBOL"):
        FeatureBuilder("BTCUSDT")
    with pytest.raises(ValueError, match="cadence_ns"):
        FeatureBuilder("a:B", cadence_ns=0)


def test_feature_spec_names_every_column_and_refuses_a_mismatch():
    assert FEATURE_SPEC.names == FEATURE_NAMES and len(FEATURE_SPEC.descriptions) == len(FEATURE_NAMES)
    with pytest.raises(ValueError, match="cadence_ns"):
        FEATURE_SPEC.check_compatible(feature_spec(cadence_ns=500_000_000))


def test_rows_are_frozen_and_pickle(script):
    row = script[1]
    with pytest.raises(ValueError):
        row.values[0] = 0.0
    assert pickle.loads(pickle.dumps(row)) == row


# ---------------------------------------------------------------- property: splitting changes nothing

_event_kind = st.sampled_from(["bbo", "bbo", "bbo", "snap", "trade", "trade", "status"])


@st.composite
def event_scripts(draw):
    """Random event sequences: mostly increasing times, some late, some without exchange time."""
    n = draw(st.integers(1, 60))
    t, mid, out = 0.0, 100.0, []
    for _ in range(n):
        t += draw(st.floats(0.0, 1.5))
        kind = draw(_event_kind)
        late = draw(st.booleans()) and draw(st.booleans())
        ts = max(t - draw(st.floats(0.0, 2.0)), 0.0) if late else t
        mid += draw(st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]))
        sizes = draw(st.tuples(st.floats(0.1, 5.0), st.floats(0.1, 5.0)))
        out.append((kind, ts, draw(st.booleans()), mid, sizes, draw(st.sampled_from(["synced", "gap", "connection"]))))
    return out


def _materialize(ev, script):
    events = []
    for kind, ts, has_ts, mid, (qb, qa), state in script:
        if kind == "bbo":
            events.append(ev.bbo(ts if has_ts else None, mid - 0.5, qb, mid + 0.5, qa))
        elif kind == "snap":
            events.append(
                ev.snap(ts, [(mid - 0.5, qb), (mid - 1.5, qa)], [(mid + 0.5, qa), (mid + 1.5, qb)], depth=None)
            )
        elif kind == "trade":
            events.append(ev.trade(ts, mid, qb, "buy" if qa > qb else "sell"))
        elif state == "connection":
            events.append(ev.status(ts, "disconnected" if qb > qa else "connected", scope="connection"))
        else:
            events.append(ev.status(ts, state))
    return events


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=event_scripts(), data=st.data())
def test_rows_do_not_depend_on_how_events_are_split_or_snapshotted(ev, script, data):
    events = _materialize(ev, script)
    end = 200 * SEC

    whole = FeatureBuilder("binance:BTCUSDT")
    expected = whole.on_events(events) + whole.advance_to(end)

    cuts = sorted(data.draw(st.lists(st.integers(0, len(events)), max_size=6)))
    fb, rows, start = FeatureBuilder("binance:BTCUSDT"), [], 0
    for cut in [*cuts, len(events)]:
        rows += fb.on_events(events[start:cut])
        fb = pickle.loads(pickle.dumps(fb))  # a Bytewax snapshot and restore between batches
        # A clock tick up to the next event's own time cannot change any row.
        if cut < len(events) and events[cut].ts_exchange_ns is not None and fb.clock_ns is not None:
            lo, hi = fb.clock_ns, events[cut].ts_exchange_ns
            if hi > lo:
                rows += fb.advance_to(data.draw(st.integers(lo, hi)))
        start = cut
    rows += fb.advance_to(end)
    assert rows == expected
    assert all(np.isnan(r.values[~r.present]).all() for r in rows)
