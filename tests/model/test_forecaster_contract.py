"""Every forecaster honours the interface: warm-up without numbers, records, snapshots, the one feature path."""

from __future__ import annotations

import pickle

import msgspec
import numpy as np
import pytest

from model.baselines import EWMA, HARRV
from model.features import FEATURE_NAMES, FeatureBuilder
from model.forecaster import Forecaster, HorizonForecast
from model.horizons import DEFAULT_HORIZONS, Horizon
from model.windows import RollingWindow

SEC = 1_000_000_000
FORECASTERS = [EWMA, HARRV]


@pytest.mark.parametrize("make", FORECASTERS)
def test_fresh_forecaster_is_warming_up_with_a_reason_for_every_default_horizon(make):
    f = make()
    assert isinstance(f, Forecaster)
    out = f.forecast(10 * SEC)
    assert [fc.horizon for fc in out] == list(DEFAULT_HORIZONS)
    for fc in out:
        assert fc.status == "warming_up" and fc.reason.startswith(f.name)
        assert (fc.vol, fc.var, fc.q10, fc.q50, fc.q90) == (None,) * 5


def test_forecast_records_round_trip_through_json():
    fc = HorizonForecast.from_var(Horizon.parse("5m"), 1e-6, "ewma", (-13.0, -12.0, -11.0))
    assert msgspec.json.decode(msgspec.json.encode(fc), type=HorizonForecast) == fc
    assert fc.q10 < fc.q50 < fc.q90


def test_a_forecast_never_carries_a_bad_number():
    with pytest.raises(ValueError, match="non-positive"):
        HorizonForecast.from_var(Horizon.parse("5m"), 0.0, "ewma")


def test_the_bytewax_step_path_from_events_to_forecasts(ev):
    """What a keyed ``stateful_map`` step does per event, snapshotting state midway."""
    state = {
        "builder": FeatureBuilder("binance:BTCUSDT"),
        "window": RollingWindow(32, len(FEATURE_NAMES), cadence_ns=SEC),
        "ewma": EWMA(min_steps=30),
        "har": HARRV(),
    }
    rng = np.random.default_rng(0)
    mid, outputs = 60_000.0, []
    state["builder"].on_event(ev.status(0.0, "synced"))
    for k in range(1, 1200):
        if k == 600:
            state = pickle.loads(pickle.dumps(state))
        mid *= float(np.exp(rng.normal(0.0, 2e-5)))
        for row in state["builder"].on_event(ev.bbo(k * 0.5, mid - 0.5, 1.0, mid + 0.5, 2.0)):
            state["window"].push(row)
            for name in ("ewma", "har"):
                state[name].observe(row)
            outputs.append((row.ts_ns, state["ewma"].forecast(row.ts_ns), state["har"].forecast(row.ts_ns)))
    ts, ewma, har = outputs[-1]
    assert ts == 599 * SEC and len(outputs) == 599
    assert ewma[0].status == "ok" and 0.1 < ewma[0].vol < 1.0  # the simulated path has ~0.5 annualized vol
    assert har[0].status == "warming_up" and har[0].reason.endswith("has 9m59s")
    values, mask = state["window"].view()
    assert mask[:, FEATURE_NAMES.index("rv_step")].all() and values.shape == (32, len(FEATURE_NAMES))
