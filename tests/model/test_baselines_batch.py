"""Batch baselines against oracles: EWMA vs the online class, GARCH recursion vs arch, HAR vs a direct OLS."""

from __future__ import annotations

import math
import pathlib

import numpy as np
import pytest

from model.bars import read_bars
from model.baselines.batch import bar_returns, ewma_step_variance, har_forecasts, trailing_sum
from model.baselines.ewma import EWMA
from model.baselines.garch import GarchFit, fit_garch, horizon_variance, rolling_forecasts, step_variance
from model.baselines.har import fit_har
from model.horizons import MINUTE_NS, Horizon

NAUTILUS = (
    pathlib.Path(__file__).resolve().parents[1] / "data" / "bars" / "nautilus_trader" / "btc-perp-20211231-20220103_1m.csv"
)


@pytest.fixture(scope="module")
def bars():
    return read_bars(NAUTILUS)


def test_batch_ewma_equals_the_online_ewma_with_missing_steps(bars):
    r = bar_returns(bars)[:600]
    x = r * r
    x[100:110] = np.nan  # unobserved steps neither update nor decay
    online = EWMA(horizons=(Horizon.parse("5m"),), cadence_ns=MINUTE_NS, half_life_steps=30.0, min_steps=1)
    expected = []
    for k, v in enumerate(x.tolist()):
        online.observe_rv((k + 1) * MINUTE_NS, None if math.isnan(v) else v)
        expected.append(online.step_var if online.step_var is not None else math.nan)
    np.testing.assert_allclose(ewma_step_variance(x, 30.0), expected, rtol=1e-10)


@pytest.mark.parametrize("kind", ["garch", "gjr"])
def test_garch_recursion_reproduces_arch_conditional_variance(bars, kind):
    from arch import arch_model

    r = bar_returns(bars)[1:2001]
    fit = fit_garch(r, kind)
    scale = 5.0 / r.std()
    params = [fit.omega * scale**2, fit.alpha] + ([fit.gamma] if kind == "gjr" else []) + [fit.beta, fit.nu]
    am = arch_model(r * scale, mean="Zero", vol="GARCH", p=1, o=1 if kind == "gjr" else 0, q=1, dist="t",
                    rescale=False)
    arch_s2 = am.fix(params).conditional_volatility ** 2 / scale**2
    ours = step_variance(fit, r[:-1], arch_s2[0])  # out[i] = Var(r_{i+1})
    np.testing.assert_allclose(ours, arch_s2[1:], rtol=1e-8)
    assert fit.sigma2_last == pytest.approx(arch_s2[-1], rel=1e-6)


def test_horizon_variance_is_the_sum_of_k_step_forecasts():
    fit = GarchFit(kind="gjr", omega=0.02, alpha=0.05, gamma=0.1, beta=0.85, nu=6.0, sigma2_last=1.0, n_obs=0,
                   loglik=0.0)
    s, total = 2.0, 0.0
    for _ in range(10):
        total += s
        s = fit.omega + fit.persistence * s
    assert horizon_variance(fit, np.array([2.0]), 10)[0] == pytest.approx(total)


def test_rolling_garch_uses_only_past_returns(bars):
    r = bar_returns(bars)[1:3001].copy()
    a, _ = rolling_forecasts(r, np.array([1500, 2200]), (5,), "garch")
    r[2500:] *= 4.0
    b, _ = rolling_forecasts(r, np.array([1500, 2200]), (5,), "garch")
    np.testing.assert_array_equal(a[:2500], b[:2500])
    assert np.isnan(a[:1500]).all() and np.isfinite(a[1500:]).all()


def test_har_refit_is_ols_on_matured_pairs_only(bars):
    h, lags = 15 * MINUTE_NS, [5 * MINUTE_NS, 30 * MINUTE_NS, 240 * MINUTE_NS]
    r = bar_returns(bars)
    targets = np.full((len(bars), 1), np.nan)
    targets[:-15, 0] = [np.sum(r[i + 1 : i + 16] ** 2) for i in range(len(bars) - 15)]
    refit = np.array([3000, 3500])
    f, info = har_forecasts(bars, targets, [h], lags, refit)
    x = np.log(np.column_stack([trailing_sum(bars, r * r, lag) for lag in lags]))
    y = np.log(targets[:, 0])
    train = np.isfinite(x).all(axis=1) & np.isfinite(y) & (bars.ts_ns + h <= bars.ts_ns[3000])
    fit = fit_har(x[train], y[train])
    expected = np.exp(fit.beta[0] + x[3000:3500] @ np.array(fit.beta[1:]) + 0.5 * fit.resid_var)
    np.testing.assert_allclose(f[3000:3500, 0], expected, rtol=1e-10)
    assert np.isnan(f[:3000]).all() and info["refits"] == 2
