"""Duration labels and horizons."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.horizons import DAY_NS, DEFAULT_HORIZONS, Horizon, format_duration, parse_duration


def test_default_horizons():
    assert [(h.name, h.ns) for h in DEFAULT_HORIZONS] == [
        ("5m", 300 * 10**9),
        ("15m", 900 * 10**9),
        ("1h", 3600 * 10**9),
        ("4h", 14400 * 10**9),
    ]


def test_labels_are_normalized():
    assert Horizon.parse("60m").name == "1h" and Horizon.parse("1440m").ns == DAY_NS


@pytest.mark.parametrize("bad", ["", "5", "m", "-5m", "5x", "0m", "5 m"])
def test_bad_labels_are_refused(bad):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_horizon_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        Horizon("never", 0)


@given(st.integers(1, 10 * DAY_NS))
def test_format_then_parse_never_overstates(ns):
    assert 0 < parse_duration(format_duration(ns)) <= ns
