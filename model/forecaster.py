"""The forecaster interface that baselines implement and the attention model will.

A forecaster is per-instrument state fed the feature rows of one instrument in
time order (``observe``) and asked for a forecast at a step end (``forecast``).
``observe`` also does the online learning: a forecast or regression row made at
``t`` for horizon ``h`` is matched with the RV realised over ``(t, t + h]`` once
that window has passed (:class:`model.realized.MaturingQueue`). A forecaster never
returns a number it cannot stand behind: until its inputs exist it answers
``status="warming_up"`` with ``vol=None`` and a reason that says what is missing.

How the attention model plugs in (principles 5 and 6): running the network per
instrument is what principle 6 forbids, so its forecaster comes in two parts.
The per-instrument part is :class:`model.nn.inputs.WindowBuilder`: ``observe``
each feature row; it aggregates them into 1-minute bars (the checkpoint's bar
length), turns each bar into a model row and keeps a
:class:`model.windows.RollingWindow` of them, and returns a window once one is
ready (its ``reason`` says what is missing until then). A batching step
collects those windows (bounded time and size) and calls
:meth:`model.nn.infer.BatchedForecaster.forecast_batch`, which pads them to a
bucket size, runs one ``jax.jit`` of a pure function over the split Flax state
and returns ``HorizonForecast`` records with ``method="attention"``. The
checkpoint's :class:`model.nn.spec.ModelSpec` is checked against the flow's
:class:`model.features.FeatureSpec` on load. Outputs it was not trained for come
from a named baseline beside it, with that baseline's ``method`` (principle 7).

>>> fc = HorizonForecast.warming_up(Horizon.parse("5m"), "ewma", "ewma needs 60 observed steps, has 3")
>>> fc.status, fc.vol
('warming_up', None)
"""

from __future__ import annotations

import math
from typing import Literal, Protocol, runtime_checkable

import msgspec
import numpy as np

from model.features import FeatureRow
from model.horizons import Horizon
from model.realized import annualize

Status = Literal["ok", "warming_up"]
RVSource = Literal["return", "tick"]
QUANTILE_LEVELS: tuple[float, float, float] = (0.1, 0.5, 0.9)


class HorizonForecast(msgspec.Struct, frozen=True, kw_only=True):
    """One horizon's forecast: variance over the horizon and its annualized vol (decimal).

    ``q10/q50/q90`` are quantiles of the realized vol over the horizon
    (annualized), from the method's own residual distribution; None while that
    distribution is not yet estimated. ``reason`` explains a warm-up, or notes
    stale inputs on an ``ok`` forecast.
    """

    horizon: Horizon
    vol: float | None
    var: float | None
    method: str
    status: Status
    reason: str = ""
    q10: float | None = None
    q50: float | None = None
    q90: float | None = None

    @classmethod
    def warming_up(cls, horizon: Horizon, method: str, reason: str) -> HorizonForecast:
        """A forecast with no number, saying what is missing."""
        return cls(horizon=horizon, vol=None, var=None, method=method, status="warming_up", reason=reason)

    @classmethod
    def from_var(
        cls,
        horizon: Horizon,
        var: float,
        method: str,
        log_quantiles: tuple[float, float, float] | None = None,
        reason: str = "",
    ) -> HorizonForecast:
        """An ``ok`` forecast from a horizon variance; ``log_quantiles`` are ln-variance quantiles.

        >>> fc = HorizonForecast.from_var(Horizon.parse("1d"), 0.5**2 / 365, "ewma")
        >>> round(fc.vol, 6)
        0.5
        """
        if not (var > 0.0 and math.isfinite(var)):
            raise ValueError(f"{method} produced a non-positive or non-finite variance {var!r} for {horizon.name}")
        q = (None, None, None)
        if log_quantiles is not None:
            q = tuple(annualize(math.exp(lq), horizon.ns) for lq in log_quantiles)  # type: ignore[assignment]
        return cls(
            horizon=horizon,
            vol=annualize(var, horizon.ns),
            var=var,
            method=method,
            status="ok",
            reason=reason,
            q10=q[0],
            q50=q[1],
            q90=q[2],
        )


@runtime_checkable
class Forecaster(Protocol):
    """Per-instrument online forecaster; picklable, so Bytewax can snapshot it."""

    name: str  # method tag, e.g. "ewma", "har_rv"
    horizons: tuple[Horizon, ...]

    def observe(self, row: FeatureRow) -> None:
        """Consume the next row of this instrument (rows in time order, one per step)."""
        ...

    def forecast(self, ts_ns: int) -> list[HorizonForecast]:
        """Forecasts for every horizon as of step end ``ts_ns`` (not before the last observed row)."""
        ...


def step_rv(row: FeatureRow, source: RVSource = "return") -> float | None:
    """A row's contribution to realized variance: ``log_return**2`` ("return") or ``rv_step`` ("tick").

    Forecasters default to "return", the squared step (1 s) mid return: on the
    real Binance spot BTCUSDT recording (hftbacktest, 2024-08-08/09, 11 min)
    tick-by-tick mid returns are positively autocorrelated (+0.09: the quote
    walks through intermediate levels), so their squared sum is about a quarter
    of the 1 s-sampled RV (33% vs 64% annualized); a forecast of tick RV would
    understate the vol of returns at any horizon a user trades.

    >>> row = FeatureRow.from_dict("x:Y", 1, {"log_return": -0.001, "rv_step": 3e-6})
    >>> round(step_rv(row), 12), round(step_rv(row, "tick"), 12)
    (1e-06, 3e-06)
    """
    if source == "tick":
        return row.get("rv_step")
    r = row.get("log_return")
    return None if r is None else r * r


def residual_quantiles(residuals: np.ndarray) -> tuple[float, float, float]:
    """Empirical q10, q50, q90 of log residuals ln(rv) - ln(forecast).

    >>> residual_quantiles(np.arange(11.0))
    (1.0, 5.0, 9.0)
    """
    q = np.quantile(residuals, QUANTILE_LEVELS)
    return float(q[0]), float(q[1]), float(q[2])
