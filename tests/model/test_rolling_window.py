"""RollingWindow: time order, presence mask, gaps, bounds."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from model.features import INDEX, N_FEATURES, FeatureRow
from model.windows import RollingWindow

SEC = 1_000_000_000


def row(t: int, **features: float) -> FeatureRow:
    return FeatureRow.from_dict("x:Y", t * SEC, features)


def test_view_is_oldest_first_and_keeps_the_last_rows():
    w = RollingWindow(4, N_FEATURES)
    for t in range(1, 7):
        w.push(row(t, trade_count=float(t)))
    values, mask = w.view()
    assert values[:, INDEX["trade_count"]].tolist() == [3.0, 4.0, 5.0, 6.0]
    assert mask[:, INDEX["trade_count"]].all() and not mask[:, INDEX["mid"]].any()
    assert w.filled == 4


def test_partly_filled_window_pads_the_front_with_absent_rows():
    w = RollingWindow(4, N_FEATURES)
    w.push(row(1, mid=10.0))
    w.push(row(2))
    values, mask = w.view()
    assert mask[:, INDEX["mid"]].tolist() == [False, False, True, False]
    assert values[2, INDEX["mid"]] == 10.0 and w.filled == 2


def test_absent_values_are_zero_in_the_view_not_nan():
    w = RollingWindow(2, N_FEATURES)
    w.push(row(1, mid=10.0))
    values, _ = w.view()
    assert not np.isnan(values).any()


def test_view_returns_copies():
    w = RollingWindow(2, N_FEATURES)
    w.push(row(1, mid=10.0))
    values, _ = w.view()
    values[:] = -1.0
    assert w.view()[0][1, INDEX["mid"]] == 10.0


def test_gap_rows_are_absent_when_the_cadence_is_known():
    w = RollingWindow(5, N_FEATURES, cadence_ns=SEC)
    w.push(row(1, mid=1.0))
    w.push(row(4, mid=4.0))  # steps 2 and 3 never came
    _, mask = w.view()
    assert mask[-4:, INDEX["mid"]].tolist() == [True, False, False, True]
    w.push(row(100, mid=100.0))  # a gap longer than the window clears it
    _, mask = w.view()
    assert mask[:, INDEX["mid"]].tolist() == [False, False, False, False, True]
    assert w.filled == 5


def test_rows_must_move_forward_and_match_the_width():
    w = RollingWindow(3, N_FEATURES)
    w.push(row(2))
    with pytest.raises(ValueError, match="not after"):
        w.push(row(2))
    with pytest.raises(ValueError, match="values"):
        RollingWindow(3, 2).push(row(5))


def test_window_pickles_with_its_contents():
    w = RollingWindow(3, N_FEATURES, cadence_ns=SEC)
    for t in (1, 2, 5):
        w.push(row(t, mid=float(t)))
    restored = pickle.loads(pickle.dumps(w))
    for a, b in zip(w.view(), restored.view()):
        np.testing.assert_array_equal(a, b)
    restored.push(row(6, mid=6.0))
    assert restored.view()[0][-1, INDEX["mid"]] == 6.0
