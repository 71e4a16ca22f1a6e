"""RVHistory trailing sums against a naive per-step oracle; MaturingQueue; annualize."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from model.horizons import DAY_NS, HOUR_NS
from model.realized import YEAR_NS, MaturingQueue, RVHistory, annualize

SEC = 1_000_000_000
BUCKET = 60 * SEC


@pytest.fixture(scope="module")
def history_and_oracle():
    """Two hours of 1 s steps with absent steps and a 5-minute hole; small rings so both resolutions work."""
    rng = np.random.default_rng(7)
    h = RVHistory(cadence_ns=SEC, fine_span_ns=120 * SEC, bucket_ns=BUCKET, coarse_span_ns=HOUR_NS)
    oracle: dict[int, float | None] = {}
    for k in range(1, 7201):
        if 3000 < k <= 3300:
            continue  # never pushed
        value = float(rng.exponential(1e-8))
        observed = rng.random() > 0.1
        h.push(k * SEC, value, present=observed)
        oracle[k * SEC] = value if observed else None
    return h, oracle


def naive(oracle, window_ns, end_ns):
    steps = [oracle.get(t) for t in range(end_ns - window_ns + SEC, end_ns + 1, SEC)]
    observed = [v for v in steps if v is not None]
    return sum(observed), len(observed) / len(steps)


@pytest.mark.parametrize("window_s", [1, 7, 60, 119, 120])
def test_windows_inside_the_fine_ring_are_exact(history_and_oracle, window_s):
    h, oracle = history_and_oracle
    rv, coverage = h.trailing(window_s * SEC)
    assert (rv, coverage) == pytest.approx(naive(oracle, window_s * SEC, 7200 * SEC), rel=1e-12)


@pytest.mark.parametrize("window_s", [180, 600, 1800, 3000])
def test_long_windows_ending_now_with_bucket_aligned_start_are_exact(history_and_oracle, window_s):
    h, oracle = history_and_oracle
    rv, coverage = h.trailing(window_s * SEC)
    assert (rv, coverage) == pytest.approx(naive(oracle, window_s * SEC, 7200 * SEC), rel=1e-12)


# Every window lies inside the coarse span (the last hour, 3600 s < t <= 7200 s).
@pytest.mark.parametrize(
    ("window_s", "end_s"),
    [
        (137, 7200),
        (601, 7200),
        (1799, 7200),
        (3333, 7200),
        (137, 7170),
        (601, 7170),
        (3333, 7170),
        (137, 7000),
        (1799, 7000),
        (601, 5500),
        (1799, 5500),
        (200, 4000),
    ],
)
def test_other_windows_err_by_at_most_one_bucket_at_each_end(history_and_oracle, window_s, end_s):
    h, oracle = history_and_oracle
    rv, coverage = h.trailing(window_s * SEC, end_ns=end_s * SEC)
    rv_true, cov_true = naive(oracle, window_s * SEC, end_s * SEC)
    largest_bucket = max(
        sum(v for k in range(j * 60 + 1, j * 60 + 61) if (v := oracle.get(k * SEC))) for j in range(120)
    )
    assert abs(rv - rv_true) <= 2 * largest_bucket
    assert abs(coverage - cov_true) <= 2 * 60 / window_s


def test_hole_and_future_steps_count_as_unobserved(history_and_oracle):
    h, oracle = history_and_oracle
    rv, coverage = h.trailing(300 * SEC, end_ns=3300 * SEC)
    assert (rv, coverage) == (0.0, 0.0)
    _, coverage = h.trailing(120 * SEC, end_ns=7260 * SEC)  # 60 s not yet pushed
    assert coverage == pytest.approx(naive(oracle, 60 * SEC, 7200 * SEC)[1] / 2)


def test_steps_older_than_the_coarse_span_are_forgotten(history_and_oracle):
    h, _ = history_and_oracle
    assert h.trailing(2 * HOUR_NS)[1] < 0.5  # only the last hour is kept


def test_span_and_push_rules():
    h = RVHistory()
    assert h.span_ns() == 0 and h.trailing(SEC) == (0.0, 0.0)
    h.push(10 * SEC, 1.0)
    with pytest.raises(ValueError, match="not after"):
        h.push(10 * SEC, 1.0)
    with pytest.raises(ValueError, match="step end"):
        h.push(int(11.5 * SEC), 1.0)
    with pytest.raises(ValueError, match="multiple"):
        h.trailing(int(1.5 * SEC))
    h.push(20 * SEC, None)  # None: unobserved
    assert h.span_ns() == 11 * SEC and h.trailing(11 * SEC) == (1.0, pytest.approx(1 / 11))


def test_history_pickles(history_and_oracle):
    h, _ = history_and_oracle
    restored = pickle.loads(pickle.dumps(h))
    assert restored.trailing(1800 * SEC) == h.trailing(1800 * SEC)


def test_maturing_queue_releases_in_order_when_the_horizon_has_passed():
    q: MaturingQueue[int] = MaturingQueue(horizon_ns=5, maxlen=3)
    for t in (1, 2, 3, 4):
        q.add(t, t * 10)
    assert len(q) == 3  # bounded: the oldest dropped
    assert q.pop_matured(7) == [(2, 20)]
    assert q.pop_matured(100) == [(3, 30), (4, 40)]


def test_annualize_uses_a_365_day_year():
    assert YEAR_NS == 365 * DAY_NS
    assert annualize(0.8**2 / 365, DAY_NS) == pytest.approx(0.8)
    assert annualize(1e-6, 5 * 60 * SEC) == pytest.approx(math.sqrt(1e-6 * 365 * 24 * 12))
