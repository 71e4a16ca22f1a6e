"""The AR(1) surface-forecast baseline: recovers a known persistence, rebuilds the grid exactly, warms up honestly."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.horizons import Horizon
from model.surface.forecast import AR1Estimator, SurfaceAR1, SurfaceForecast, rebuild_grid
from model.surface.grid import DELTAS, resample
from model.surface.smile import Smile
from model.surface.svi import SVIParams

S = 1_000_000_000
H5, H1H = Horizon.parse("5m"), Horizon.parse("1h")
NO_DECAY = 1e12  # a half-life in samples long enough that every pair weighs the same


def block(atm: float, rr: float = -0.05, bf: float = 0.02, tenor: str = "30d") -> dict:
    days = float(tenor[:-1])
    return {"tenors_days": [days], "deltas": list(DELTAS),
            "atm": {tenor: atm}, "rr25": {tenor: rr}, "bf25": {tenor: bf}, "rr10": {}, "bf10": {}}


def svi_grid(a: float, rho: float = -0.4, tenors_days=(30, 60)) -> dict:
    # Hand-chosen SVI parameters (not market data): a skewed smile, the same total variance at each expiry.
    smile = Smile(svi=SVIParams(a=a, b=0.1, rho=rho, m=0.0, sigma=0.2))
    return resample([(t / 365, 100.0, smile) for t in tenors_days], tenors_days=tenors_days)


def test_the_fitted_persistence_recovers_a_known_ar1():
    # SYNTHETIC: an AR(1) ATM series with mu 0.6 and phi 0.95 per 5 s sample.
    rng = np.random.default_rng(3)
    f = SurfaceAR1((H5,), sample_ns=5 * S, halflife_samples=NO_DECAY, min_pairs=30)
    x = 0.6
    for k in range(20_000):
        f.observe(k * 5 * S, block(x))
        x = 0.6 + 0.95 * (x - 0.6) + 0.01 * rng.standard_normal()
    fit = f.fitted("atm", "30d")
    assert fit.phi == pytest.approx(0.95, abs=0.005) and fit.mu == pytest.approx(0.6, abs=0.005)
    assert fit.pairs == 19_999 and fit.effective_pairs == pytest.approx(19_999)
    last = f.forecast_record(19_999 * 5 * S).horizons["5m"].atm["30d"]
    latest = f._series[("atm", "30d")].latest  # noqa: SLF001
    assert last == pytest.approx(fit.mu + fit.phi**60 * (latest - fit.mu))  # 5 m = 60 samples of 5 s


def test_the_kendall_correction_removes_the_small_sample_bias_of_phi():
    # SYNTHETIC: 400 short AR(1) paths with phi 0.9, 60 pairs each; plain OLS is biased low by about (1 + 3 phi)/n.
    rng = np.random.default_rng(11)
    raw, corrected = [], []
    for _ in range(400):
        x = np.empty(61)
        x[0] = rng.standard_normal() / math.sqrt(1 - 0.81)
        for k in range(60):
            x[k + 1] = 0.9 * x[k] + rng.standard_normal()
        e = AR1Estimator(decay=1.0)
        for a, b in zip(x[:-1], x[1:]):
            e.add(float(a), float(b))
        slope = float(np.polyfit(x[:-1], x[1:], 1)[0])
        raw.append(slope)
        fit = e.fit()
        if fit.phi < 1.0:
            assert fit.phi == pytest.approx(slope + (1 + 3 * slope) / 60, abs=1e-9)
        corrected.append(fit.phi)
    assert 0.9 - np.mean(raw) > 0.04  # the bias the correction is for
    assert abs(np.mean(corrected) - 0.9) < 0.015


def ar1_path(n: int, phi: float, seed: int, mu: float = 0.5, sd: float = 0.01) -> list[float]:
    """SYNTHETIC: an AR(1) path started at mu + 5 sd, so it has somewhere to revert to."""
    rng = np.random.default_rng(seed)
    x, out = mu + 5 * sd, []
    for _ in range(n):
        out.append(x)
        x = mu + phi * (x - mu) + sd * rng.standard_normal()
    return out


def test_forecasts_decay_toward_the_mean_with_the_horizon():
    f = SurfaceAR1((H5, H1H), sample_ns=S, min_pairs=5)
    for k, x in enumerate(ar1_path(200, 0.9, seed=5)):
        f.observe(k * S, block(x))
    out = f.forecast_record(199 * S).horizons
    fit = f.fitted("atm", "30d")
    latest = f._series[("atm", "30d")].latest  # noqa: SLF001
    assert 0.0 < fit.phi < 1.0
    assert abs(out["1h"].atm["30d"] - fit.mu) <= abs(out["5m"].atm["30d"] - fit.mu) <= abs(latest - fit.mu)


def test_a_forecast_made_after_the_latest_nowcast_counts_the_time_since_it():
    f = SurfaceAR1((H5,), sample_ns=S, min_pairs=5)
    for k, x in enumerate(ar1_path(100, 0.9, seed=6)):
        f.observe(k * S, block(x))
    fit, latest = f.fitted("atm", "30d"), f._series[("atm", "30d")].latest  # noqa: SLF001
    later = f.forecast_record(99 * S + 30 * S).horizons["5m"].atm["30d"]
    assert later == pytest.approx(fit.mu + fit.phi ** (300 + 30) * (latest - fit.mu))


def test_a_constant_surface_forecasts_itself_and_rebuilds_the_nowcast_grid_exactly():
    grid = svi_grid(0.02)
    f = SurfaceAR1((H5, H1H), sample_ns=S, min_pairs=3)
    for k in range(5):
        f.observe(k * S, grid)
    fc = f.forecast_record(4 * S)
    assert fc.status == "ok" and fc.reason == ""
    for h in ("5m", "1h"):
        out = fc.horizons[h]
        for q in ("atm", "rr25", "bf25", "rr10", "bf10"):
            assert getattr(out, q) == pytest.approx(grid[q], abs=1e-15)
        np.testing.assert_allclose(np.array(out.iv, dtype=float), np.array(grid["iv"]), rtol=0, atol=1e-12)
    assert f.fitted("atm", "30d").phi == 1.0  # flat: no evidence of reversion, so no change


def test_at_horizon_zero_the_rebuilt_surface_is_the_moving_nowcast():
    # The ATM level and the skew move every sample (phi < 1), yet a forecast over ~0 s is the latest grid itself.
    f = SurfaceAR1((Horizon("1ns", 1),), sample_ns=S, min_pairs=5)
    levels, skews = ar1_path(40, 0.5, seed=7, mu=0.02, sd=0.002), ar1_path(40, 0.5, seed=8, mu=-0.4, sd=0.05)
    grids = [svi_grid(a, rho=rho) for a, rho in zip(levels, skews)]
    for k, g in enumerate(grids):
        f.observe(k * S, g)
    assert f.fitted("atm", "30d").phi < 1.0 and f.fitted("rr25", "60d").phi < 1.0
    out = f.forecast_record(39 * S).horizons["1ns"]
    # 1 ns is 1e-9 samples: phi^1e-9 moves each series by about 1e-9 |ln phi| |x - mu|, far below 1e-9.
    np.testing.assert_allclose(np.array(out.iv, dtype=float), np.array(grids[-1]["iv"]), rtol=0, atol=1e-9)


@given(st.lists(st.floats(0.05, 3.0), min_size=5, max_size=5))
def test_rebuilding_inverts_the_grids_rr_and_bf_definitions(ivs):
    p10, p25, atm, c25, c10 = ivs
    values = {
        "atm": {"7d": atm},
        "rr25": {"7d": c25 - p25}, "bf25": {"7d": 0.5 * (c25 + p25) - atm},
        "rr10": {"7d": c10 - p10}, "bf10": {"7d": 0.5 * (c10 + p10) - atm},
    }
    (row,) = rebuild_grid(["7d"], list(DELTAS), values)
    np.testing.assert_allclose(row, ivs, rtol=0, atol=1e-12)


def test_a_tenor_missing_from_the_latest_nowcast_is_left_out_and_a_new_one_warms_up():
    f = SurfaceAR1((H5,), sample_ns=S, min_pairs=5)
    for k in range(10):
        f.observe(k * S, svi_grid(0.02 + 0.001 * k, tenors_days=(7, 30, 60)))
    # The 7-day expiry rolls off: the chain now reaches 30d and 60d only.
    f.observe(10 * S, svi_grid(0.03, tenors_days=(30, 60)))
    fc = f.forecast_record(10 * S)
    assert fc.status == "ok" and fc.tenors_days == (30, 60)
    assert set(fc.horizons["5m"].atm) == {"30d", "60d"} and len(fc.horizons["5m"].iv) == 2
    # A longer expiry lists (90d appears): forecast once its own series has the pairs, the others meanwhile.
    for k in range(11, 14):
        f.observe(k * S, svi_grid(0.03, tenors_days=(30, 60, 90)))
    fc = f.forecast_record(13 * S)
    assert fc.status == "ok" and fc.reason == "ar1: 90d warming up (fewer than 5 sample pairs)"
    assert set(fc.horizons["5m"].atm) == {"30d", "60d"}
    assert fc.horizons["5m"].iv[2] == (None,) * 5 and None not in fc.horizons["5m"].iv[0]
    for k in range(14, 20):
        f.observe(k * S, svi_grid(0.03, tenors_days=(30, 60, 90)))
    assert set(f.forecast_record(19 * S).horizons["5m"].atm) == {"30d", "60d", "90d"}


def test_a_tenor_without_skew_gets_its_atm_forecast_and_no_wing_ivs():
    f = SurfaceAR1((H5,), sample_ns=S, min_pairs=3)
    only_atm = {"tenors_days": [30], "deltas": list(DELTAS), "atm": {"30d": 0.5}, "rr25": {}, "bf25": {}}
    for k in range(5):
        f.observe(k * S, only_atm)
    out = f.forecast_record(4 * S).horizons["5m"]
    assert out.atm == {"30d": 0.5} and out.rr25 == {} and out.iv == ((None, None, 0.5, None, None),)


def test_warming_up_says_what_is_missing_and_a_gap_breaks_pairs():
    f = SurfaceAR1((H5,), sample_ns=S, min_pairs=10)
    assert f.forecast_record(0).reason == "ar1 needs 10 consecutive samples 1s apart of a tenor's ATM IV, has 0"
    for k in (0, 1, 2, 5, 6):  # a gap between 2 and 5: no pair across it
        f.observe(k * S, block(0.5))
    out = f.forecast_record(6 * S)
    assert out.status == "warming_up" and out.horizons == {}
    assert out.reason == "ar1 needs 10 consecutive samples 1s apart of a tenor's ATM IV, has 3"


def test_only_the_first_nowcast_of_an_interval_is_a_sample_but_the_latest_is_the_origin():
    f = SurfaceAR1((Horizon("1ns", 1),), sample_ns=5 * S, min_pairs=3)
    for k in range(20):  # a nowcast every second, samples every 5 s
        f.observe(k * S, block(0.5 + 0.01 * k))
    assert f.fitted("atm", "30d").pairs == 3
    assert f.forecast_record(19 * S).horizons["1ns"].atm["30d"] == pytest.approx(0.69, abs=1e-9)


def test_the_record_is_json_safe_and_the_dict_form_matches_it():
    f = SurfaceAR1((H5, H1H), sample_ns=S, min_pairs=3)
    for k in range(6):
        f.observe(k * S, svi_grid(0.02 + 0.001 * k))
    rec = f.forecast_record(5 * S)
    as_dict = f.forecast(5 * S)
    assert as_dict == json.loads(json.dumps(as_dict, allow_nan=False))
    assert set(as_dict) == {"method", "status", "reason", "tenors_days", "deltas", "horizons"}
    assert set(as_dict["horizons"]["5m"]) == {"atm", "rr25", "bf25", "rr10", "bf10", "iv"}
    import msgspec

    assert msgspec.convert(as_dict, SurfaceForecast) == rec


def test_snapshot_restore_continues_identically():
    a = SurfaceAR1((H5,), sample_ns=S, min_pairs=5)
    grids = [svi_grid(0.02 + 0.003 * math.sin(k / 4.0)) for k in range(60)]
    for k in range(30):
        a.observe(k * S, grids[k])
    b = pickle.loads(pickle.dumps(a))
    for k in range(30, 60):
        a.observe(k * S, grids[k])
        b.observe(k * S, grids[k])
    assert a.forecast_record(59 * S) == b.forecast_record(59 * S)


def test_an_older_nowcast_is_refused():
    f = SurfaceAR1((H5,), sample_ns=S)
    f.observe(10 * S, block(0.5))
    with pytest.raises(ValueError, match="older than the last"):
        f.observe(9 * S, block(0.5))
