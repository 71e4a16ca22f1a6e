"""HAR-RV: OLS, online fit on a SYNTHETIC GARCH process, warm-up, prior hand-over, lag variants."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from model.baselines.fit_prior import main as fit_prior_main
from model.baselines.har import HARRV, fit_har, lag_label, load_prior
from model.horizons import MINUTE_NS, Horizon
from model.metrics import qlike

M5, H1 = Horizon.parse("5m"), Horizon.parse("1h")


def simulate_garch(n_steps, omega, alpha, beta, ticks=60, seed=0):
    """SYNTHETIC data, not market data: GARCH(1,1) on step returns, each the sum of ``ticks`` Gaussian ticks.

    Returns the known conditional variance of every step (``sig2[t]`` for step t,
    ``sig2[n]`` the next one) and each step's realized variance (sum of squared ticks).
    """
    rng = np.random.default_rng(seed)
    sig2 = np.empty(n_steps + 1)
    rv = np.empty(n_steps)
    sig2[0] = omega / (1.0 - alpha - beta)
    for t in range(n_steps):
        ticks_t = rng.standard_normal(ticks) * math.sqrt(sig2[t] / ticks)
        rv[t] = float(ticks_t @ ticks_t)
        sig2[t + 1] = omega + alpha * ticks_t.sum() ** 2 + beta * sig2[t]
    return sig2, rv


def test_fit_har_is_ols_with_unbiased_residual_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = 0.5 + x @ np.array([0.3, -0.2, 0.1]) + rng.normal(scale=0.7, size=400)
    fit = fit_har(x, y)
    design = np.column_stack([np.ones(400), x])
    beta = np.linalg.solve(design.T @ design, design.T @ y)
    resid = y - design @ beta
    np.testing.assert_allclose(fit.beta, beta, rtol=1e-10)
    assert fit.resid_var == pytest.approx(resid @ resid / (400 - 4))
    assert fit.log_quantiles == pytest.approx(tuple(np.quantile(resid, [0.1, 0.5, 0.9])))


def test_online_fit_on_synthetic_garch_is_close_to_the_oracle_and_beats_a_constant():
    omega, alpha, beta = 1e-6 * 0.01, 0.1, 0.89  # SYNTHETIC: persistence 0.99 per 1-minute step
    n = 8 * 1440
    sig2, rv = simulate_garch(n, omega, alpha, beta)
    har = HARRV((M5, H1), extra_lags=(), cadence_ns=MINUTE_NS, prior=None, refit_every=60)
    persistence, long_run = alpha + beta, omega / (1 - alpha - beta)
    losses = {h.name: {"har": [], "oracle": [], "constant": []} for h in (M5, H1)}
    constant_step = rv[: n // 2].mean()
    for k in range(n):
        har.observe_rv((k + 1) * MINUTE_NS, float(rv[k]))
        if k < n // 2 or k % 5:
            continue
        for h, fc in zip((M5, H1), har.forecast((k + 1) * MINUTE_NS)):
            steps = h.ns // MINUTE_NS
            if k + steps >= n:
                continue
            assert fc.method == "har_rv", fc
            realized = rv[k + 1 : k + 1 + steps].sum()
            # E[sum of the next `steps` conditional variances | F_k], GARCH(1,1) closed form.
            oracle = steps * long_run + (sig2[k + 1] - long_run) * (1 - persistence**steps) / (1 - persistence)
            losses[h.name]["har"].append(float(qlike(realized, fc.var)))
            losses[h.name]["oracle"].append(float(qlike(realized, oracle)))
            losses[h.name]["constant"].append(float(qlike(realized, steps * constant_step)))
    for name, by_method in losses.items():
        q = {method: np.mean(v) for method, v in by_method.items()}
        gain_captured = (q["constant"] - q["har"]) / (q["constant"] - q["oracle"])
        assert gain_captured > 0.85, (name, q)  # HAR gets most of the way to the oracle
        assert q["har"] < 0.5 * q["constant"], (name, q)  # and is clearly better than a constant


def test_warming_up_reasons_before_history_and_before_any_fit():
    har = HARRV((M5,), extra_lags=(), cadence_ns=MINUTE_NS, prior=None)
    for k in range(1, 7):
        har.observe_rv(k * MINUTE_NS, 1e-6)
    [fc] = har.forecast(6 * MINUTE_NS)
    assert fc.status == "warming_up" and fc.vol is None and fc.q50 is None
    assert fc.reason == "har_rv needs 4h of history for its 4h lag, has 6m"
    for k in range(7, 300):
        har.observe_rv(k * MINUTE_NS, 1e-6)
    [fc] = har.forecast(299 * MINUTE_NS)
    assert fc.status == "warming_up"
    # Lag vectors from t = 240m (4h of history) on; those with t + 5m <= 299m have matured.
    assert fc.reason == "har_rv has 55 of 120 scored (lags, target) pairs for 5m and no prior for it"


def test_unobserved_steps_make_a_lag_unusable_with_a_reason():
    har = HARRV((M5,), extra_lags=(), cadence_ns=MINUTE_NS)
    for k in range(1, 300):
        har.observe_rv(k * MINUTE_NS, None if k > 296 else 1e-6)
    [fc] = har.forecast(299 * MINUTE_NS)
    assert fc.reason == "har_rv 5m lag has 40% of its steps observed, needs 80% (unsynced book or feed gap)"


def test_prior_is_used_and_named_until_the_online_fit_takes_over():
    rng = np.random.default_rng(4)
    har = HARRV(cadence_ns=MINUTE_NS)  # bundled prior, default horizons and lags
    k = 0
    while k < 240:
        k += 1
        har.observe_rv(k * MINUTE_NS, float(rng.exponential(1e-6)))
    fcs = {fc.horizon.name: fc for fc in har.forecast(k * MINUTE_NS)}
    assert {fc.method for fc in fcs.values()} == {"har_rv(prior)"}
    assert fcs["5m"].reason == "prior until the online fit has 120 pairs, has 0; without the 1d lag"
    assert all(fc.q10 < fc.q50 < fc.q90 for fc in fcs.values())
    while k < 240 + 5 + 130:
        k += 1
        har.observe_rv(k * MINUTE_NS, float(rng.exponential(1e-6)))
    fcs = {fc.horizon.name: fc for fc in har.forecast(k * MINUTE_NS)}
    assert fcs["5m"].method == "har_rv" and fcs["5m"].reason == "without the 1d lag"
    assert fcs["4h"].method == "har_rv(prior)"


def test_forecast_is_the_bias_corrected_exponential_of_the_log_forecast():
    har = HARRV((M5,), extra_lags=(), cadence_ns=MINUTE_NS)
    rng = np.random.default_rng(5)
    for k in range(1, 301):
        har.observe_rv(k * MINUTE_NS, float(rng.exponential(1e-6)))
    [fc] = har.forecast(300 * MINUTE_NS)
    fit = load_prior().fits[lag_label(har.lags)]["5m"]
    x = [math.log(har._history.trailing(lag.ns)[0]) for lag in har.lags]
    mu = fit.beta[0] + sum(b * v for b, v in zip(fit.beta[1:], x))
    assert fc.var == pytest.approx(math.exp(mu + fit.resid_var / 2))
    assert fc.q50**2 * M5.ns / (365 * 86400 * 1e9) == pytest.approx(math.exp(mu + fit.log_quantiles[1]))


def test_extra_lag_joins_once_its_history_and_fit_exist():
    lags, extra = (M5,), (Horizon.parse("30m"),)
    har = HARRV(
        (M5,),
        lags,
        extra,
        cadence_ns=MINUTE_NS,
        prior=None,
        min_pairs=20,
        min_independent_targets=1,
        refit_every=5,
        window_pairs=200,
    )
    rng = np.random.default_rng(6)
    reasons = {}
    for k in range(1, 121):
        har.observe_rv(k * MINUTE_NS, float(rng.exponential(1e-6)))
        reasons[k] = har.forecast(k * MINUTE_NS)[0].reason
    assert reasons[4].startswith("har_rv needs 5m of history")
    assert reasons[20].startswith("har_rv has")  # 5m of lag history, not yet 20 pairs
    assert reasons[40] == "without the 30m lag"  # base fit online, no 30m of history for the extra lag
    assert reasons[120] == ""  # full fit: 30m lag + 20 full pairs matured
    _, x, _ = har.pairs("5m")
    assert np.isnan(x[0, 1]) and np.isfinite(x[-1]).all()
    assert har.fit("5m", "full") is not None


def test_snapshot_restore_continues_identically():
    sig2, rv = simulate_garch(1500, 1e-8, 0.1, 0.89, seed=8)
    a = HARRV((M5, H1), extra_lags=(), cadence_ns=MINUTE_NS, prior=None, refit_every=20)
    for k in range(700):
        a.observe_rv((k + 1) * MINUTE_NS, float(rv[k]))
    b = pickle.loads(pickle.dumps(a))
    for k in range(700, 1500):
        a.observe_rv((k + 1) * MINUTE_NS, float(rv[k]))
        b.observe_rv((k + 1) * MINUTE_NS, float(rv[k]))
    assert a.forecast(1500 * MINUTE_NS) == b.forecast(1500 * MINUTE_NS)
    assert a.forecast(1500 * MINUTE_NS)[0].method == "har_rv"


def test_bundled_prior_says_where_it_came_from():
    prior = load_prior()
    assert set(prior.fits) == {"5m,30m,4h", "5m,30m,4h,1d"}
    assert set(prior.fits["5m,30m,4h"]) == {"5m", "15m", "1h", "4h"}
    p = prior.provenance
    assert p["file"] == "btc-perp-20211231-20220201_1m.csv" and p["rows"] == 45031
    assert "nautilus_trader" in p["upstream"] and len(p["sha256"]) == 64
    for fit in prior.fits["5m,30m,4h"].values():
        assert fit.n_pairs > 40_000 and 0.0 < fit.r2 < 1.0 and sum(fit.beta[1:]) < 1.0
    for row in prior.evaluation["by_horizon"].values():
        assert row["qlike_har(5m,30m,4h)"] < row["qlike_constant(train mean)"]


def test_constructor_refuses_a_prior_fitted_with_other_lags():
    with pytest.raises(ValueError, match="lag sets"):
        HARRV(lags=(Horizon.parse("10m"),), extra_lags=())
    with pytest.raises(ValueError, match="multiple of cadence"):
        HARRV(cadence_ns=7 * 10**9, prior=None)


def test_prior_fitting_script_end_to_end_on_a_synthetic_csv(tmp_path):
    # SYNTHETIC prices (a GARCH path), only to exercise the script; the bundled prior is fitted on real data.
    n = int(2.5 * 1440)
    _, rv = simulate_garch(n, 1e-8, 0.1, 0.89, seed=9)
    rng = np.random.default_rng(9)
    close = 40_000.0 * np.exp(np.cumsum(np.sqrt(rv) * rng.choice([-1.0, 1.0], n)))
    stamps = np.datetime64("2024-01-01T00:00:00") + np.arange(n) * np.timedelta64(60, "s")
    csv = tmp_path / "synthetic_1m.csv"
    lines = ["timestamp,open,high,low,close,volume"]
    lines += [f"{str(t).replace('T', ' ')}.000000,{c},{c},{c},{c},1.0" for t, c in zip(stamps, close)]
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "prior.json"

    assert fit_prior_main([str(csv), "--upstream", "synthetic test data", "--out", str(out)]) == 0

    prior = load_prior(str(out))
    assert prior.provenance["rows"] == n and prior.provenance["upstream"] == "synthetic test data"
    assert set(prior.fits["5m,30m,4h,1d"]) == {"5m", "15m", "1h", "4h"}
    assert set(prior.evaluation["by_horizon"]["4h"]) >= {"dm_t_base_vs_full", "n_test"}
    HARRV(prior=prior)  # a prior the forecaster accepts
