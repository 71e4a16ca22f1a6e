"""EWMA against a plain loop; warm-up; quantiles from scored forecasts; snapshots."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from model.baselines import EWMA
from model.features import FeatureRow
from model.horizons import MINUTE_NS, Horizon
from model.realized import annualize

SEC = 1_000_000_000
H = (Horizon.parse("1m"), Horizon.parse("5m"))


def plain_ewma(xs, lam):
    """sum(lam^(n-i) x_i) / sum(lam^(n-i)) over observed x_i, written as the definition."""
    observed = [x for x in xs if x is not None]
    n = len(observed)
    weights = [lam ** (n - 1 - i) for i in range(n)]
    return sum(w * x for w, x in zip(weights, observed)) / sum(weights)


def test_matches_a_plain_loop_and_skips_unobserved_steps():
    rng = np.random.default_rng(1)
    xs = [None if rng.random() < 0.2 else float(rng.exponential(1e-8)) for _ in range(400)]
    m = EWMA(horizons=H, half_life_steps=30.0, min_steps=10)
    for k, x in enumerate(xs, start=1):
        m.observe_rv(k * SEC, x)
    lam = 0.5 ** (1 / 30.0)
    assert m.step_var == pytest.approx(plain_ewma(xs, lam), rel=1e-12)
    fc = m.forecast(400 * SEC)
    assert fc[1].var == pytest.approx(300 * plain_ewma(xs, lam), rel=1e-12)
    assert fc[1].vol == pytest.approx(annualize(fc[1].var, 300 * SEC))
    assert {f.method for f in fc} == {"ewma"} and {f.status for f in fc} == {"ok"}


def test_observe_uses_the_squared_step_return_by_default_and_tick_rv_on_request():
    row = FeatureRow.from_dict("x:Y", SEC, {"log_return": 0.002, "rv_step": 9e-6})
    by_return, by_tick = EWMA(horizons=H, min_steps=1), EWMA(horizons=H, min_steps=1, rv_source="tick")
    by_return.observe(row)
    by_tick.observe(row)
    assert by_return.step_var == pytest.approx(4e-6) and by_tick.step_var == pytest.approx(9e-6)


def test_warming_up_says_what_is_missing():
    m = EWMA(horizons=H, min_steps=60)
    for k in range(1, 13):
        m.observe_rv(k * SEC, 1e-8)
    fc = m.forecast(12 * SEC)
    assert all(f.status == "warming_up" and f.vol is None and f.var is None and f.q50 is None for f in fc)
    assert fc[0].reason == "ewma needs 60 observed steps, has 12"


def test_quantiles_appear_once_enough_forecasts_are_scored():
    rng = np.random.default_rng(2)
    m = EWMA(horizons=H, min_steps=10, sample_every_ns=10 * SEC, min_independent_targets=5)
    for k in range(1, 3001):
        m.observe_rv(k * SEC, float(rng.exponential(1e-8)))
    fc = m.forecast(3000 * SEC)
    for f in fc:
        assert f.q10 < f.q50 < f.q90, f
        assert "quantiles" not in f.reason
    # With i.i.d. steps the 5 m realized vol is near the forecast, inside the band.
    assert fc[1].q10 < fc[1].vol < fc[1].q90


def test_stale_inputs_are_noted_on_an_ok_forecast():
    m = EWMA(horizons=H, min_steps=1)
    m.observe_rv(SEC, 1e-8)
    for k in range(2, 200):
        m.observe_rv(k * SEC, None)
    [f, _] = m.forecast(199 * SEC)
    assert f.status == "ok" and "inputs stale: last observed step 3m18s ago" in f.reason


def test_snapshot_restore_continues_identically():
    rng = np.random.default_rng(3)
    xs = rng.exponential(1e-8, 2000)
    a = EWMA(horizons=H, min_steps=10, sample_every_ns=10 * SEC, min_independent_targets=5)
    for k in range(1000):
        a.observe_rv((k + 1) * SEC, float(xs[k]))
    b = pickle.loads(pickle.dumps(a))
    for k in range(1000, 2000):
        a.observe_rv((k + 1) * SEC, float(xs[k]))
        b.observe_rv((k + 1) * SEC, float(xs[k]))
    assert a.forecast(2000 * SEC) == b.forecast(2000 * SEC)


def test_constructor_checks_its_arguments():
    with pytest.raises(ValueError, match="multiple of cadence"):
        EWMA(horizons=(Horizon("odd", int(1.5 * SEC)),))
    with pytest.raises(ValueError, match="half_life"):
        EWMA(half_life_steps=0)
    assert EWMA().sample_every_ns == MINUTE_NS
