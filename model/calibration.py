"""Online recalibration of a forecaster's q10/q50/q90 so their realized coverage tracks the nominal levels.

A method's quantiles come from its own residual distribution (HAR's fit
residuals, EWMA's and GARCH's matured residuals over a week); after a regime
change they stay miscalibrated for as long as that history remembers the old
regime. :class:`QuantileCalibrator` corrects each emitted quantile level
``tau`` in (0.1, 0.5, 0.9) with an offset ``theta_tau`` on the log-variance
scale, learned online from matured outcomes by quantile tracking, the
adaptive-conformal update of Angelopoulos, Candès and Tibshirani (2023,
"Conformal PID control for time series prediction", the P term), which
generalizes adaptive conformal inference (Gibbs and Candès 2021) from the
miscoverage level to the quantile itself:

.. math:: \\theta_\\tau \\leftarrow \\theta_\\tau
          + \\eta_h \\big(\\tau - 1\\{\\ln RV \\le \\ln q_\\tau + \\theta_\\tau\\}\\big)

It is online subgradient descent on the pinball loss of ``ln q_tau + theta``:
too many outcomes below the quantile lower it, too few raise it, and the long-run
share of outcomes below it converges to ``tau`` whatever the data do (their
Proposition 1). Why not ACI's own form: it adapts the level fed to a quantile
function, which a method that only emits q10/q50/q90 does not have, and its
level can leave [0, 1] and give an infinite band. The log-variance scale makes
the offsets unitless and a multiplicative error additive.

No look-ahead: a forecast made at ``t`` for ``h`` is matched with the variance
realized over ``(t, t + h]`` only once the step at ``t + h`` has been observed
(:class:`model.realized.RealizedTargets`), so a band at ``t`` uses only
outcomes matured by ``t``. Forecasts are sampled every ``sample_every_ns``, so a
window of ``h`` holds ``h / sample_every`` overlapping outcomes that mostly
agree; ``eta_h = step_size * sample_every / h`` gives each horizon's worth of
outcomes the same total step, whatever ``h`` is. The adjusted levels are sorted
(rearrangement: Chernozhukov, Fernández-Val and Galichon 2010, which never
worsens a quantile estimate), so q10 <= q50 <= q90 always.

Offsets start at 0: until outcomes mature the method's own band is emitted.
A forecast without quantiles passes through unchanged; ``vol`` and ``var`` (the
method's mean forecast) are never changed.

>>> from model.horizons import Horizon
>>> h = Horizon.parse("1m")
>>> cal = QuantileCalibrator((h,), cadence_ns=SECOND_NS, sample_every_ns=MINUTE_NS, step_size=0.5)
>>> fc = HorizonForecast.from_var(h, 6e-7, "ewma", (math.log(3e-7), math.log(6e-7), math.log(9e-7)))
>>> for k in range(1, 601):  # every 1 s step realizes 4e-8: every minute 2.4e-6, 4 times the median
...     cal.observe(k * SECOND_NS, 4e-8)
...     out = cal.calibrate(k * SECOND_NS, [fc])
>>> cal.matured("1m"), [round(t, 3) for t in cal.offsets("1m")]
(9, [0.45, 1.25, 1.05])
>>> [round(log_variance(q, h.ns) - math.log(2.4e-6), 2) for q in (out[0].q10, out[0].q50, out[0].q90)]
[-1.63, -0.14, 0.07]
>>> out[0].vol == fc.vol
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from model.features import FeatureRow
from model.forecaster import QUANTILE_LEVELS, Forecaster, HorizonForecast, RVSource, step_rv
from model.horizons import MINUTE_NS, SECOND_NS, Horizon
from model.realized import YEAR_NS, RealizedTargets, annualize


def log_variance(vol: float, horizon_ns: int) -> float:
    """ln of the horizon variance of an annualized vol (the inverse of :func:`model.realized.annualize`)."""
    return math.log(vol * vol * horizon_ns / YEAR_NS)


class QuantileCalibrator:
    """Online offsets for one method's q10/q50/q90 per horizon, learned from matured outcomes; picklable.

    Feed it, in time order, each step's realized variance (:meth:`observe`) and then
    the method's forecasts made at that step end (:meth:`calibrate`).

    Parameters
    ----------
    horizons : tuple of Horizon
        Horizons it calibrates; multiples of ``sample_every_ns``.
    cadence_ns : int
        Step length of :meth:`observe`; divides one minute.
    sample_every_ns : int
        Forecasts at step ends that are multiples of this are kept to learn from.
    step_size : float
        Offset step (ln-variance units) per horizon's worth of matured outcomes.
        0.2 moves an offset by a factor e^0.18 in variance per horizon of
        consecutive misses, so a fourfold variance shift is absorbed in about 8
        horizons (40 minutes at 5m, 32 hours at 4h); in a stable regime it
        keeps the offsets within about 0.15 of their targets.
    min_coverage : float
        Observed fraction of a target window needed to learn from it.
    """

    def __init__(
        self,
        horizons: tuple[Horizon, ...],
        cadence_ns: int = SECOND_NS,
        sample_every_ns: int = MINUTE_NS,
        step_size: float = 0.2,
        min_coverage: float = 0.8,
    ) -> None:
        if not step_size > 0.0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.horizons = tuple(horizons)
        self.step_size = step_size
        self._targets: RealizedTargets[tuple[float, float, float]] = RealizedTargets(
            self.horizons, cadence_ns, sample_every_ns, min_coverage
        )
        self._eta = {h.name: step_size * sample_every_ns / h.ns for h in self.horizons}
        self._offsets = {h.name: [0.0, 0.0, 0.0] for h in self.horizons}
        self._matured = {h.name: 0 for h in self.horizons}

    def offsets(self, horizon: str) -> tuple[float, float, float]:
        """The current ln-variance offsets of q10, q50, q90 for ``horizon``."""
        return tuple(self._offsets[horizon])  # type: ignore[return-value]

    def matured(self, horizon: str) -> int:
        """Outcomes learned from so far for ``horizon``."""
        return self._matured[horizon]

    def observe(self, ts_ns: int, rv_step: float | None) -> None:
        """Push the step ending at ``ts_ns`` (None: unobserved); learn from the forecasts whose window it ends."""
        for name, _t, raw, realized in self._targets.push(ts_ns, rv_step):
            y = math.log(realized)
            theta, eta = self._offsets[name], self._eta[name]
            for i, tau in enumerate(QUANTILE_LEVELS):
                below = y <= raw[i] + theta[i]
                theta[i] += eta * (tau - below)
            self._matured[name] += 1

    def calibrate(self, ts_ns: int, forecasts: Sequence[HorizonForecast]) -> list[HorizonForecast]:
        """``forecasts`` made at step end ``ts_ns`` with q10/q50/q90 shifted by the current offsets.

        Call after :meth:`observe` of the same step. The method's raw quantiles of
        sampled steps are queued to learn from once their horizon has elapsed.
        """
        out = []
        for fc in forecasts:
            name = fc.horizon.name
            if fc.status != "ok" or fc.q10 is None or fc.q50 is None or fc.q90 is None or name not in self._offsets:
                out.append(fc)
                continue
            h_ns = fc.horizon.ns
            raw = (log_variance(fc.q10, h_ns), log_variance(fc.q50, h_ns), log_variance(fc.q90, h_ns))
            self._targets.add(ts_ns, name, raw)
            adjusted = sorted(r + t for r, t in zip(raw, self._offsets[name]))
            q10, q50, q90 = (annualize(math.exp(lq), h_ns) for lq in adjusted)
            note = f"q10/q50/q90 recalibrated online from {self._matured[name]} matured forecasts"
            reason = f"{fc.reason}; {note}" if fc.reason else note
            out.append(msgspec.structs.replace(fc, q10=q10, q50=q50, q90=q90, reason=reason))
        return out


class Calibrated:
    """A forecaster whose quantiles pass through a :class:`QuantileCalibrator`; a Forecaster itself, picklable.

    ``name``, ``horizons``, ``vol``, ``var``, ``method`` and warm-up are the inner
    forecaster's; only ``q10/q50/q90`` (and a note in ``reason``) change.

    Parameters
    ----------
    inner : Forecaster
        The method whose band is calibrated.
    calibrator : QuantileCalibrator or None
        Its calibrator; None builds one for ``inner.horizons`` at a 1 s cadence.
    rv_source : {"return", "tick"}
        The per-step variance outcomes are measured in (as the method is scored).
    """

    def __init__(
        self, inner: Forecaster, calibrator: QuantileCalibrator | None = None, rv_source: RVSource = "return"
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.horizons = inner.horizons
        self.calibrator = QuantileCalibrator(inner.horizons) if calibrator is None else calibrator
        if set(self.calibrator.horizons) != set(self.horizons):
            raise ValueError("the calibrator's horizons must be the forecaster's")
        self.rv_source = rv_source

    def observe(self, row: FeatureRow) -> None:
        """Feed the row to the inner forecaster and its realized variance to the calibrator."""
        self.inner.observe(row)
        self.calibrator.observe(row.ts_ns, step_rv(row, self.rv_source))

    def forecast(self, ts_ns: int) -> list[HorizonForecast]:
        """The inner forecasts with calibrated quantiles."""
        return self.calibrator.calibrate(ts_ns, self.inner.forecast(ts_ns))
