"""The AR(1) surface-forecast baseline: recovers a known persistence, rebuilds the grid exactly, warms up honestly."""

from __future__ import annotations

import numpy as np
import pytest

from model.horizons import Horizon
from model.surface.forecast import SurfaceAR1
from model.surface.grid import resample
from model.surface.smile import Smile
from model.surface.svi import SVIParams

S = 1_000_000_000
H5, H1H = Horizon.parse("5m"), Horizon.parse("1h")


def block(atm: float, rr: float = -0.05, bf: float = 0.02) -> dict:
    return {"tenors_days": [30], "deltas": ["10P", "25P", "ATM", "25C", "10C"],
            "atm": {"30d": atm}, "rr25": {"30d": rr}, "bf25": {"30d": bf}, "rr10": {}, "bf10": {}}


def test_the_fitted_persistence_recovers_a_known_ar1():
    # SYNTHETIC: an AR(1) ATM series with mu 0.6 and phi 0.95 per 5 s sample.
    rng = np.random.default_rng(3)
    f = SurfaceAR1((H5,), sample_ns=5 * S, halflife_samples=1e9, min_pairs=30)
    x = 0.6
    for k in range(20_000):
        f.observe(k * 5 * S, block(x))
        x = 0.6 + 0.95 * (x - 0.6) + 0.01 * rng.standard_normal()
    mu, phi = f._series[("atm", "30d")].fit()  # noqa: SLF001
    assert phi == pytest.approx(0.95, abs=0.01) and mu == pytest.approx(0.6, abs=0.01)
    last = f._series[("atm", "30d")].last  # noqa: SLF001
    fc = f.forecast(20_000 * 5 * S)["horizons"]["5m"]["atm"]["30d"]
    assert fc == pytest.approx(mu + phi**60 * (last - mu))


def test_forecasts_decay_toward_the_mean_with_the_horizon():
    f = SurfaceAR1((H5, H1H), sample_ns=S, min_pairs=5)
    for k in range(200):
        f.observe(k * S, block(0.5 + 0.1 * np.sin(k / 7.0)))
    out = f.forecast(199 * S)["horizons"]
    mu, _ = f._series[("atm", "30d")].fit()  # noqa: SLF001
    last = f._series[("atm", "30d")].last  # noqa: SLF001
    assert abs(out["1h"]["atm"]["30d"] - mu) <= abs(out["5m"]["atm"]["30d"] - mu) <= abs(last - mu)


def test_the_rebuilt_surface_equals_the_nowcast_grid_when_nothing_moves():
    # A constant nowcast forecasts itself; rebuilding ATM/RR/BF gives back the grid's IVs exactly.
    smile = Smile(svi=SVIParams(a=0.02, b=0.1, rho=-0.4, m=0.0, sigma=0.2))
    grid = resample([(30 / 365, 100.0, smile), (60 / 365, 100.0, smile)], tenors_days=(30, 60))
    f = SurfaceAR1((H5,), sample_ns=S, min_pairs=3)
    for k in range(5):
        f.observe(k * S, grid)
    got = f.forecast(4 * S)["horizons"]["5m"]["iv"]
    np.testing.assert_allclose(np.array(got, dtype=float), np.array(grid["iv"]), rtol=0, atol=1e-12)


def test_warming_up_says_what_is_missing_and_a_gap_breaks_pairs():
    f = SurfaceAR1((H5,), sample_ns=S, min_pairs=10)
    for k in (0, 1, 2, 5, 6):  # a gap between 2 and 5: no pair across it
        f.observe(k * S, block(0.5))
    out = f.forecast(6 * S)
    assert out["status"] == "warming_up" and out["horizons"] == {}
    assert out["reason"] == "ar1 needs 10 consecutive samples 1 s apart of a tenor's ATM IV, has 3"
