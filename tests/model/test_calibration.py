"""Online quantile calibration: real 1-minute BTC bars, no look-ahead, a regime shift, snapshots.

Data: ``tests/data/bars/nautilus_trader/btc-perp-20211231-20220103_1m.csv`` (real BTC
perpetual 1-minute bars, see its PROVENANCE.md). Returns built in this file are SYNTHETIC.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from model.bars import read_bars
from model.baselines.ewma import EWMA
from model.calibration import Calibrated, QuantileCalibrator
from model.features import FeatureRow
from model.horizons import DEFAULT_HORIZONS, MINUTE_NS
from model.scoring import OnlineScorer

BARS = Path(__file__).resolve().parents[1] / "data" / "bars" / "nautilus_trader" / "btc-perp-20211231-20220103_1m.csv"


def rows_of(returns: np.ndarray, start_ns: int = 0) -> list[FeatureRow]:
    """One row per 1-minute step carrying its log return (absent where NaN)."""
    return [
        FeatureRow.from_dict("x:BTC", start_ns + (i + 1) * MINUTE_NS, {"log_return": float(r)} if math.isfinite(r) else {})
        for i, r in enumerate(returns)
    ]


def calibrated_ewma() -> Calibrated:
    return Calibrated(EWMA(cadence_ns=MINUTE_NS), QuantileCalibrator(DEFAULT_HORIZONS, cadence_ns=MINUTE_NS))


def score(rows: list[FeatureRow]) -> dict[tuple[str, str], tuple[float | None, float | None]]:
    """(method, horizon) -> (QLIKE, q10-q90 coverage) of raw and calibrated EWMA over the whole run."""
    forecasters = {"raw": EWMA(cadence_ns=MINUTE_NS), "calibrated": calibrated_ewma()}
    scorer = OnlineScorer(DEFAULT_HORIZONS, cadence_ns=MINUTE_NS, sample_every_ns=MINUTE_NS,
                          window_ns=30 * 24 * 60 * MINUTE_NS)
    for row in rows:
        r = row.get("log_return")
        scorer.observe(row.ts_ns, None if r is None else r * r)
        for name, f in forecasters.items():
            f.observe(row)
            for fc in f.forecast(row.ts_ns):
                scorer.add(row.ts_ns, name, fc)
    return {(s.method, s.horizon): (s.qlike, s.coverage) for s in scorer.summary()}


def test_on_real_bars_the_band_covers_closer_to_80_percent_and_the_mean_is_untouched():
    bars = read_bars(BARS)
    returns = np.diff(np.log(np.asarray(bars.close, dtype=np.float64)))
    scores = score(rows_of(returns, int(bars.ts_ns[0])))
    for h in ("5m", "15m", "1h"):  # 4h has too few scored forecasts in three days for a band
        (q_raw, c_raw), (q_cal, c_cal) = scores[("raw", h)], scores[("calibrated", h)]
        assert q_cal == q_raw  # only the quantiles move
        assert c_raw is not None and c_cal is not None
        assert abs(c_cal - 0.8) < abs(c_raw - 0.8), (h, c_raw, c_cal)


def test_a_forecast_uses_no_outcome_after_it():
    rng = np.random.default_rng(3)
    base = rng.normal(0.0, 1e-3, 3000)  # SYNTHETIC returns
    other = base.copy()
    other[2000:] *= 5.0  # what happens after minute 2000 differs
    a, b = calibrated_ewma(), calibrated_ewma()
    for row_a, row_b in zip(rows_of(base), rows_of(other)):
        a.observe(row_a)
        b.observe(row_b)
        fa, fb = a.forecast(row_a.ts_ns), b.forecast(row_b.ts_ns)
        if row_a.ts_ns <= 2000 * MINUTE_NS:
            assert fa == fb


def test_after_a_variance_shift_the_band_widens_up_then_settles():
    rng = np.random.default_rng(7)
    returns = np.concatenate([rng.normal(0.0, 1e-3, 3000), rng.normal(0.0, 4e-3, 3000)])  # SYNTHETIC, 16x variance
    cal = QuantileCalibrator(DEFAULT_HORIZONS, cadence_ns=MINUTE_NS)
    f = Calibrated(EWMA(cadence_ns=MINUTE_NS), cal)
    upper: list[float] = []
    for row in rows_of(returns):
        f.observe(row)
        f.forecast(row.ts_ns)
        upper.append(cal.offsets("5m")[2])
    before = upper[2999]
    # EWMA's mean lags the jump, so outcomes land above the band: its top rises at once...
    assert max(upper[3000:3300]) > before + 0.5
    # ...and comes back once EWMA has caught up (the offsets only correct what is left).
    assert abs(upper[-1]) < 0.5 and cal.matured("5m") > 5000


def test_quantiles_stay_ordered_and_the_calibrator_pickles():
    rng = np.random.default_rng(11)
    f = calibrated_ewma()
    for row in rows_of(rng.standard_t(3, 4000) * 1e-3):  # SYNTHETIC heavy-tailed returns
        f.observe(row)
        for fc in f.forecast(row.ts_ns):
            if fc.q10 is not None:
                assert fc.q10 <= fc.q50 <= fc.q90
    clone = pickle.loads(pickle.dumps(f))
    assert clone.calibrator.offsets("5m") == f.calibrator.offsets("5m")
    with pytest.raises(ValueError, match="horizons"):
        Calibrated(EWMA(cadence_ns=MINUTE_NS), QuantileCalibrator(DEFAULT_HORIZONS[:1], cadence_ns=MINUTE_NS))
