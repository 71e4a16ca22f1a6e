"""Live GARCH(1,1)-t: recovers a SYNTHETIC GARCH, bars from 1 s steps, term structure, warm-up, snapshots."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.baselines.garch import GarchFit, fit_garch, horizon_variance, step_variance
from model.baselines.garch_live import LiveGARCH, term_variance
from model.features import FeatureRow
from model.horizons import MINUTE_NS, SECOND_NS, Horizon

M5, H1 = Horizon.parse("5m"), Horizon.parse("1h")


def simulate_garch_t(n: int, omega: float, alpha: float, beta: float, nu: float, seed: int) -> np.ndarray:
    """SYNTHETIC data, not market data: GARCH(1,1) returns with unit-variance Student-t innovations."""
    rng = np.random.default_rng(seed)
    z = rng.standard_t(nu, n) * math.sqrt((nu - 2.0) / nu)
    r = np.empty(n)
    s2 = omega / (1.0 - alpha - beta)
    for t in range(n):
        r[t] = math.sqrt(s2) * z[t]
        s2 = omega + alpha * r[t] ** 2 + beta * s2
    return r


def feed_bars(g: LiveGARCH, r: np.ndarray, start: int = 0) -> None:
    """One row per 1-minute bar (cadence = bar): the step return is the bar return."""
    for i, x in enumerate(r.tolist(), start=start + 1):
        g.observe_step(i * MINUTE_NS, x, x * x)


def test_a_synthetic_garch_is_recovered_and_the_live_recursion_is_the_batch_one():
    r = simulate_garch_t(4000, omega=1e-8, alpha=0.08, beta=0.9, nu=6.0, seed=1)
    g = LiveGARCH(horizons=(M5, H1), cadence_ns=MINUTE_NS, window_bars=3500, min_bars=3500, refit_every_bars=10_000)
    feed_bars(g, r[:3499])
    assert g.fit is None
    assert g.forecast(3499 * MINUTE_NS)[0].reason == "garch needs 3500 1m returns for its first fit, has 3499"
    feed_bars(g, r[3499:], start=3499)
    fit = g.fit
    assert g.refits == 1 and fit == fit_garch(r[:3500], "garch")
    assert fit.alpha == pytest.approx(0.08, abs=0.03) and fit.beta == pytest.approx(0.9, abs=0.04)
    assert fit.omega / (1 - fit.persistence) == pytest.approx(1e-8 / 0.02, rel=0.3)
    # After the fit, the recursion runs bar by bar as the batch code does from the fit's last state.
    expected = step_variance(fit, r[3499:], fit.sigma2_last)[-1]
    assert g.next_bar_variance == pytest.approx(expected, rel=1e-12)
    assert g.target_ratio == pytest.approx(1.0)  # one step per bar: the 1 s RV is the squared bar return
    fc = g.forecast(4000 * MINUTE_NS)
    assert fc[0].var == pytest.approx(float(horizon_variance(fit, np.array([expected]), 5)[0]), rel=1e-12)
    assert fc[1].var == pytest.approx(float(horizon_variance(fit, np.array([expected]), 60)[0]), rel=1e-12)
    assert all(f.status == "ok" and f.method == "garch" for f in fc)


@given(
    omega=st.floats(1e-3, 1.0), alpha=st.floats(0.0, 0.3), beta=st.floats(0.0, 0.99),
    sigma2=st.floats(1e-3, 10.0), bars=st.integers(1, 60), elapsed=st.floats(0.0, 0.999),
)
def test_term_variance_is_the_weighted_sum_of_k_step_forecasts(omega, alpha, beta, sigma2, bars, elapsed):
    fit = GarchFit(kind="garch", omega=omega, alpha=alpha, gamma=0.0, beta=beta, nu=8.0, sigma2_last=1.0, n_obs=0,
                   loglik=0.0)
    total, cur = 0.0, sigma2
    for k in range(bars + 1):
        total += (1.0 - elapsed if k == 0 else elapsed if k == bars else 1.0) * cur
        cur = omega + (alpha + beta) * cur  # E[sigma^2_{k+1}] = omega + (alpha + beta) E[sigma^2_k]
    assert term_variance(fit, sigma2, bars, elapsed) == pytest.approx(total, rel=1e-9)
    at_close = float(horizon_variance(fit, np.array([sigma2]), bars)[0])
    assert term_variance(fit, sigma2, bars, 0.0) == pytest.approx(at_close, rel=1e-9)


def test_one_second_steps_are_summed_into_bars_and_a_thin_bar_is_left_out():
    # SYNTHETIC 1 s returns: 150 bars of 60 steps; in bar 40 only 30 steps are observed (an unsynced book).
    rng = np.random.default_rng(4)
    steps = rng.standard_normal((150, 60)) * 1e-4 * np.repeat(rng.uniform(0.5, 2.0, 150), 60).reshape(150, 60)
    g = LiveGARCH(horizons=(M5,), min_bars=100, window_bars=200, refit_every_bars=1000)
    for b in range(150):
        for s in range(60):
            ts = (b * 60 + s + 1) * SECOND_NS
            x = None if b == 40 and s >= 30 else float(steps[b, s])
            g.observe(FeatureRow.from_dict("x:Y", ts, {} if x is None else {"log_return": x}))
    carried = steps.astype(np.float32).astype(np.float64)  # rows carry float32 features
    bar_returns = np.array([sum(row) for row in carried.tolist()])  # summed in step order, as the bars are
    kept = np.delete(np.arange(150), 40)
    assert g.fit == fit_garch(bar_returns[kept][:100], "garch")
    rv = (carried**2).sum(axis=1)
    first_fit_bars = kept[:100]
    assert g.refits == 1
    assert g.target_ratio == pytest.approx(rv[first_fit_bars].sum() / (bar_returns[first_fit_bars] ** 2).sum())


def test_between_bar_closes_the_forecast_counts_the_elapsed_part_of_the_open_bar():
    r = simulate_garch_t(300, omega=1e-8, alpha=0.08, beta=0.9, nu=6.0, seed=2)
    g = LiveGARCH(horizons=(M5,), min_bars=200, window_bars=300, refit_every_bars=1000)
    for b, x in enumerate(r.tolist()):
        for s in range(60):  # the bar's return split evenly over its 60 steps
            g.observe_step((b * 60 + s + 1) * SECOND_NS, x / 60, (x / 60) ** 2)
    g.observe_step(300 * MINUTE_NS + 30 * SECOND_NS, 0.0, 0.0)  # (steps up to 30 s into bar 301 arrive one by one)
    [fc] = g.forecast(300 * MINUTE_NS + 30 * SECOND_NS)
    expected = g.target_ratio * term_variance(g.fit, g.next_bar_variance, 5, 0.5)
    assert fc.var == pytest.approx(expected, rel=1e-12)
    assert g.target_ratio == pytest.approx(1 / 60)  # sum of 60 squared equal parts = r^2 / 60


def test_bars_without_steps_advance_the_recursion_by_its_expectation_and_the_forecast_notes_staleness():
    r = simulate_garch_t(150, omega=1e-8, alpha=0.08, beta=0.9, nu=6.0, seed=3)
    g = LiveGARCH(horizons=(M5,), cadence_ns=MINUTE_NS, min_bars=100, window_bars=200, refit_every_bars=1000)
    feed_bars(g, r)
    before = g.next_bar_variance
    g.observe_step(160 * MINUTE_NS, None, None)  # nine bars with no row, then one unobserved step
    assert g.next_bar_variance == pytest.approx(float(step_variance(g.fit, np.full(10, np.nan), before)[-1]))
    [fc] = g.forecast(160 * MINUTE_NS)
    assert fc.status == "ok" and "inputs stale: last observed step 10m ago" in fc.reason


def test_quantiles_appear_once_enough_forecasts_have_matured():
    r = simulate_garch_t(400, omega=1e-8, alpha=0.05, beta=0.9, nu=8.0, seed=5)
    g = LiveGARCH(horizons=(M5,), cadence_ns=MINUTE_NS, min_bars=100, window_bars=300, refit_every_bars=50,
                  min_independent_targets=5)
    feed_bars(g, r[:110])
    [fc] = g.forecast(110 * MINUTE_NS)
    # Fitted at bar 100; its forecasts at bars 100..105 have matured by bar 110.
    assert fc.q10 is None and fc.reason == "quantiles need 25 scored 5m forecasts, have 6"
    feed_bars(g, r[110:], start=110)
    [fc] = g.forecast(400 * MINUTE_NS)
    assert fc.q10 < fc.q50 < fc.q90 and fc.reason == ""
    assert g.refits == 1 + (400 - 100) // 50


def test_snapshot_restore_continues_identically():
    r = simulate_garch_t(600, omega=1e-8, alpha=0.08, beta=0.9, nu=6.0, seed=6)
    a = LiveGARCH(horizons=(M5, H1), cadence_ns=MINUTE_NS, min_bars=100, window_bars=300, refit_every_bars=60)
    feed_bars(a, r[:300])
    b = pickle.loads(pickle.dumps(a))
    feed_bars(a, r[300:], start=300)
    feed_bars(b, r[300:], start=300)
    assert a.refits == b.refits > 1
    assert a.forecast(600 * MINUTE_NS) == b.forecast(600 * MINUTE_NS)


def test_constructor_checks_its_arguments():
    with pytest.raises(ValueError, match="multiple of bar_ns"):
        LiveGARCH(horizons=(Horizon.parse("90s"),))
    with pytest.raises(ValueError, match="min_bars"):
        LiveGARCH(min_bars=50)
    with pytest.raises(ValueError, match="bar_ns"):
        LiveGARCH(bar_ns=1_500_000_000)
