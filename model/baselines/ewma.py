"""EWMA (RiskMetrics) realized-variance forecaster, a named baseline (research/models.md §6.2).

The RiskMetrics recursion (J.P. Morgan/Reuters, RiskMetrics Technical Document,
4th ed., 1996) on the per-step variance ``x_t``: the squared step log return
by default, or the step's tick RV (``rv_source``; see
:func:`model.forecaster.step_rv`). The same ``x_t`` summed over ``(t, t+h]``
is the realized target that scores it.

.. math:: \\sigma^2_t = \\lambda \\sigma^2_{t-1} + (1 - \\lambda) x_t,
          \\quad \\lambda = 2^{-1/\\text{half\\_life}}

Kept as the normalized weighted mean ``s_t / w_t`` with
``s_t = λ s_{t-1} + (1-λ) x_t`` and ``w_t = λ w_{t-1} + (1-λ)``, so no seed value
biases the start. Steps without ``x_t`` (unsynced book) neither update nor
decay it. The forecast for ``h`` is ``var_h = (h / cadence) σ²_t``: RiskMetrics'
square-root-of-time rule, a flat term structure.

>>> from model.horizons import Horizon
>>> m = EWMA(horizons=(Horizon.parse("1m"),), half_life_steps=10, min_steps=3)
>>> for k in range(1, 4):
...     m.observe_rv(k * 1_000_000_000, 1e-8)
>>> [fc] = m.forecast(3_000_000_000)
>>> fc.status, fc.method, round(fc.var, 12)
('ok', 'ewma', 6e-07)
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from model.features import FeatureRow
from model.forecaster import HorizonForecast, RVSource, residual_quantiles, step_rv
from model.horizons import DEFAULT_HORIZONS, MINUTE_NS, SECOND_NS, Horizon, format_duration
from model.realized import MaturingQueue, RVHistory


class EWMA:
    """Online EWMA forecaster of realized variance for several horizons.

    Parameters
    ----------
    horizons : tuple of Horizon
        Forecast horizons, multiples of ``cadence_ns``.
    cadence_ns : int
        Step length of the observed rows; must divide one minute (the RV bucket).
    half_life_steps : float
        Half-life of the weights, in observed steps; 300 (5 minutes of 1 s steps)
        lets the estimate follow intraday regime changes while averaging ~430
        effective steps. It is a default, not a tuned value (§6.2 asks to tune
        it on validation data).
    min_steps : int
        Observed steps needed before the first forecast.
    sample_every_ns : int
        Spacing of the forecasts kept to score residuals for the quantiles.
    min_independent_targets : int
        Quantiles need this many non-overlapping horizons' worth of matured
        forecasts (``min_independent_targets * h / sample_every`` of them).
    residual_window : int
        Matured log residuals kept per horizon (rolling).
    min_coverage : float
        Observed fraction of a target window needed to score a forecast.
    stale_after_ns : int
        An ``ok`` forecast notes stale inputs when the last observed step is older.
    rv_source : {"return", "tick"}
        Which per-step variance to average and forecast (:func:`model.forecaster.step_rv`).

    >>> EWMA().name
    'ewma'
    """

    name = "ewma"

    def __init__(
        self,
        horizons: tuple[Horizon, ...] = DEFAULT_HORIZONS,
        cadence_ns: int = SECOND_NS,
        half_life_steps: float = 300.0,
        min_steps: int = 60,
        sample_every_ns: int = MINUTE_NS,
        min_independent_targets: int = 20,
        residual_window: int = 10_080,
        min_coverage: float = 0.8,
        stale_after_ns: int = MINUTE_NS,
        rv_source: RVSource = "return",
    ) -> None:
        if half_life_steps <= 0.0 or min_steps < 1:
            raise ValueError(f"half_life_steps and min_steps must be positive, got {half_life_steps} and {min_steps}")
        for h in horizons:
            if h.ns % cadence_ns:
                raise ValueError(f"horizon {h.name} must be a multiple of cadence_ns ({cadence_ns})")
        if sample_every_ns % cadence_ns:
            raise ValueError(f"sample_every_ns ({sample_every_ns}) must be a multiple of cadence_ns ({cadence_ns})")
        if not 0.0 < min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
        self.horizons = tuple(horizons)
        self.cadence_ns = cadence_ns
        self.lam = 0.5 ** (1.0 / half_life_steps)
        self.min_steps = min_steps
        self.sample_every_ns = sample_every_ns
        self.min_coverage = min_coverage
        self.stale_after_ns = stale_after_ns
        self.rv_source = rv_source
        self._s = 0.0
        self._w = 0.0
        self._n = 0
        self._last_observed_ns: int | None = None
        longest = max(h.ns for h in self.horizons)
        self._history = RVHistory(cadence_ns, coarse_span_ns=max(2 * longest // MINUTE_NS, 15) * MINUTE_NS)
        self._min_residuals = {
            h.name: min(
                max(min_independent_targets * h.ns // sample_every_ns, min_independent_targets), residual_window
            )
            for h in self.horizons
        }
        self._pending: dict[str, MaturingQueue[float]] = {
            h.name: MaturingQueue(h.ns, maxlen=h.ns // sample_every_ns + 2) for h in self.horizons
        }
        self._residuals: dict[str, deque[float]] = {h.name: deque(maxlen=residual_window) for h in self.horizons}
        self._quantiles: dict[str, tuple[float, float, float] | None] = {h.name: None for h in self.horizons}

    @property
    def step_var(self) -> float | None:
        """Current per-step variance estimate σ²_t, None before any observed step."""
        return self._s / self._w if self._n else None

    def observe(self, row: FeatureRow) -> None:
        """Update from the row's step variance (absent: no update)."""
        self.observe_rv(row.ts_ns, step_rv(row, self.rv_source))

    def observe_rv(self, ts_ns: int, rv: float | None) -> None:
        """Update from one step's realized variance; None marks an unobserved step."""
        self._history.push(ts_ns, rv)
        if rv is not None and math.isfinite(rv):
            self._s = self.lam * self._s + (1.0 - self.lam) * rv
            self._w = self.lam * self._w + (1.0 - self.lam)
            self._n += 1
            self._last_observed_ns = ts_ns
        for h in self.horizons:
            self._score_matured(h, ts_ns)
        var = self.step_var
        if ts_ns % self.sample_every_ns == 0 and self._n >= self.min_steps and var and var > 0.0:
            for h in self.horizons:
                self._pending[h.name].add(ts_ns, math.log(var * h.ns / self.cadence_ns))

    def _score_matured(self, h: Horizon, now_ns: int) -> None:
        matured = self._pending[h.name].pop_matured(now_ns)
        for t, log_f in matured:
            rv, coverage = self._history.trailing(h.ns, end_ns=t + h.ns)
            if coverage >= self.min_coverage and rv > 0.0:
                self._residuals[h.name].append(math.log(rv / coverage) - log_f)
        res = self._residuals[h.name]
        if matured and len(res) >= self._min_residuals[h.name]:
            self._quantiles[h.name] = residual_quantiles(np.fromiter(res, dtype=np.float64))

    def forecast(self, ts_ns: int) -> list[HorizonForecast]:
        """Forecast every horizon as of ``ts_ns``; ``warming_up`` until ``min_steps`` observed steps."""
        var = self.step_var
        if self._n < self.min_steps or not var:
            why = (
                f"ewma needs {self.min_steps} observed steps, has {self._n}"
                if self._n < self.min_steps
                else "ewma per-step variance is 0 (the mid has not moved)"
            )
            return [HorizonForecast.warming_up(h, self.name, why) for h in self.horizons]
        stale = ""
        assert self._last_observed_ns is not None
        if ts_ns - self._last_observed_ns > self.stale_after_ns:
            stale = f"inputs stale: last observed step {format_duration(ts_ns - self._last_observed_ns)} ago"
        out = []
        for h in self.horizons:
            var_h = var * h.ns / self.cadence_ns
            q = self._quantiles[h.name]
            notes = [stale] if stale else []
            if q is None:
                have, need = len(self._residuals[h.name]), self._min_residuals[h.name]
                notes.append(f"quantiles need {need} scored {h.name} forecasts, have {have}")
            log_q = None if q is None else tuple(math.log(var_h) + e for e in q)
            out.append(HorizonForecast.from_var(h, var_h, self.name, log_q, "; ".join(notes)))  # type: ignore[arg-type]
        return out
