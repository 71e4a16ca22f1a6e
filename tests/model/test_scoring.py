"""OnlineScorer against a plain computation; coverage of the band; warm-up, gaps, window, snapshots.

Synthetic data with a known truth (labelled as such): per-step variances drawn
here, forecasts built from them by hand.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from model.forecaster import HorizonForecast
from model.horizons import HOUR_NS, Horizon
from model.metrics import qlike
from model.realized import annualize
from model.scoring import OnlineScorer

SEC = 1_000_000_000
H1M, H5M = Horizon.parse("1m"), Horizon.parse("5m")


def fc(h: Horizon, var: float, method: str = "m", band: tuple[float, float] | None = None) -> HorizonForecast:
    f = HorizonForecast.from_var(h, var, method)
    if band is None:
        return f
    q10, q90 = band
    return HorizonForecast(horizon=h, vol=f.vol, var=var, method=method, status="ok", q10=q10, q50=f.vol, q90=q90)


def test_qlike_matches_a_plain_computation_over_the_matured_windows():
    # Arrange: synthetic per-step variances and two methods' 1m forecasts every 10 s.
    rng = np.random.default_rng(7)
    xs = rng.exponential(1e-8, size=400)
    s = OnlineScorer((H1M,), sample_every_ns=10 * SEC)
    made = {"a": {}, "b": {}}
    # Act
    for k, x in enumerate(xs, start=1):
        s.observe(k * SEC, float(x))
        if k % 10 == 0:
            for method, scale in (("a", 1.0), ("b", 2.0)):
                var = scale * 60 * 1e-8
                made[method][k] = var
                s.add(k * SEC, method, fc(H1M, var, method))
    # Assert: forecasts at k mature at k + 60 <= 400, target = sum of steps k+1 .. k+60.
    by_method = {x.method: x for x in s.summary()}
    for method in ("a", "b"):
        losses = [
            qlike(xs[k : k + 60].sum(), var) for k, var in made[method].items() if k + 60 <= len(xs)
        ]
        score = by_method[method]
        assert score.n == len(losses) == score.scored_total == 34
        assert score.qlike == pytest.approx(float(np.mean(losses)), rel=1e-9)
        assert score.coverage is None and score.n_band == 0 and score.unscorable_total == 0
    assert by_method["a"].qlike < by_method["b"].qlike  # b over-forecasts by 2x


def test_coverage_is_the_share_of_realized_vols_inside_the_band():
    s = OnlineScorer((H1M,), sample_every_ns=SEC)
    realized = annualize(60 * 1e-8, H1M.ns)
    for k in range(1, 200):
        s.observe(k * SEC, 1e-8)  # constant: every target realizes exactly `realized`
        band = (0.5 * realized, 2 * realized) if k % 4 else (2 * realized, 3 * realized)
        s.add(k * SEC, "m", fc(H1M, 60e-8, band=band))
    [score] = s.summary()
    assert score.n == score.n_band == 199 - 60
    assert score.coverage == pytest.approx(sum(1 for k in range(1, 140) if k % 4) / 139)
    assert score.qlike == pytest.approx(0.0, abs=1e-12)


def test_only_sampled_ok_forecasts_of_known_horizons_are_kept():
    s = OnlineScorer((H1M,), sample_every_ns=10 * SEC)
    s.observe(10 * SEC, 1e-8)
    s.add(10 * SEC, "m", HorizonForecast.warming_up(H1M, "m", "not yet"))
    s.add(10 * SEC, "m", fc(H5M, 1e-6))  # not a scored horizon
    s.observe(11 * SEC, 1e-8)
    s.add(11 * SEC, "m", fc(H1M, 1e-6))  # not on the 10 s grid
    assert s.pending("1m") == 0
    s.observe(20 * SEC, 1e-8)
    s.add(20 * SEC, "a", fc(H1M, 1e-6, "a"))
    s.add(20 * SEC, "b", fc(H1M, 1e-6, "b"))
    assert s.pending("1m") == 1  # one time, both methods


def test_a_window_with_too_few_observed_steps_is_counted_not_scored():
    s = OnlineScorer((H1M,), sample_every_ns=10 * SEC, min_coverage=0.8)
    s.observe(10 * SEC, 1e-8)
    s.add(10 * SEC, "m", fc(H1M, 60e-8))
    for k in range(11, 71):
        s.observe(k * SEC, 1e-8 if k < 30 else None)  # the book went unsynced: 2/3 missing
    [score] = s.summary()
    assert score.n == 0 and score.qlike is None and score.unscorable_total == 1 and score.scored_total == 0


def test_the_rolling_window_forgets_old_buckets():
    # A 10 s cadence keeps four hours short; two one-hour buckets: the current one and the last.
    s = OnlineScorer((H1M,), cadence_ns=10 * SEC, sample_every_ns=10 * SEC, window_ns=2 * HOUR_NS, bucket_ns=HOUR_NS)
    for k in range(1, 4 * 360 + 1):
        t = k * 10 * SEC
        s.observe(t, 1e-8)
        # Bad forecasts in the first two hours, perfect ones after.
        s.add(t, "m", fc(H1M, 6e-8 * (4.0 if t <= 2 * HOUR_NS else 1.0)))
    [score] = s.summary()
    assert score.qlike == pytest.approx(0.0, abs=1e-12)  # the bad forecasts have left the window
    assert score.n == 361  # matured in [3h, 4h]: buckets 3 and 4 (which holds 4h itself)
    assert score.scored_total == 4 * 360 - 6


def test_realized_vol_needs_coverage():
    s = OnlineScorer((H1M,))
    for k in range(1, 41):
        s.observe(k * SEC, 1e-8)
    assert s.realized_vol("1m") is None  # 40 of 60 steps observed: below 80%
    s2 = OnlineScorer((H1M,))
    for k in range(1, 61):
        s2.observe(k * SEC, 1e-8)
    assert s2.realized_vol("1m") == pytest.approx(annualize(60e-8, H1M.ns))


def test_state_survives_a_snapshot():
    s = OnlineScorer((H1M,), sample_every_ns=10 * SEC)
    for k in range(1, 100):
        s.observe(k * SEC, 1e-8)
        s.add(k * SEC, "a", fc(H1M, 60e-8, "a"))
        s.add(k * SEC, "b", fc(H1M, 120e-8, "b"))
    restored = pickle.loads(pickle.dumps(s))
    for k in range(100, 200):
        for x in (s, restored):
            x.observe(k * SEC, 1e-8)
            x.add(k * SEC, "a", fc(H1M, 60e-8, "a"))
            x.add(k * SEC, "b", fc(H1M, 120e-8, "b"))
    assert restored.summary() == s.summary()


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="cadence_ns"):
        OnlineScorer((Horizon("1500ms", 1_500_000_000),))
    with pytest.raises(ValueError, match="bucket_ns"):
        OnlineScorer((H1M,), window_ns=HOUR_NS, bucket_ns=2 * HOUR_NS)
    with pytest.raises(ValueError, match="at least one horizon"):
        OnlineScorer(())
