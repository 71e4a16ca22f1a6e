"""GARCH(1,1)-t run live on 1-minute returns, a named baseline beside HAR and EWMA (research/models.md §6.2).

Bollerslev (1986) GARCH(1,1) with Student-t innovations, fitted by maximum
likelihood with ``arch`` (:func:`model.baselines.garch.fit_garch`), on the
returns of bars of ``bar_ns`` (default one minute) summed from the rows' 1 s
log returns:

.. math:: \\sigma^2_{n+1} = \\omega + \\alpha r_n^2 + \\beta \\sigma^2_n

Why bars and not the 1 s steps: on the real Binance spot BTCUSDT recording
(hftbacktest, 2024-08-08/09, 650 one-second mid returns) 50% of 1 s returns are
exactly zero (the mid did not move) and their lag-1 autocorrelation is +0.075;
``arch``'s GARCH-t fit of them lands on the boundary (``nu`` = 2.2, the variance
barely exists; ``alpha + beta`` = 1.000) and took 1.4 s for 650 returns. On the
real month of BTC perpetual 1-minute bars (nautilus_trader, 2022-01) 2.1% of
1-minute returns are zero, and fits on 2-day windows keep ``nu`` in 3.6-6.7 and
``alpha + beta`` in 0.969-0.998.

Schedule: the recursion advances at every bar close (a bar with less than
``min_bar_coverage`` of its steps observed adds its expectation instead,
``omega + (alpha + beta) sigma^2``); the parameters are re-estimated every
``refit_every_bars`` bars on the trailing ``window_bars`` bars, first once
``min_bars`` bar returns exist (warming up until then). ``arch`` cannot append
observations to a fit (bashtage/arch#416), hence the recursion between refits.
Measured on the real 1-minute month, a refit of 2,880 bars takes 30-60 ms on
this project's 2-vCPU machine (it depends on the load); once an hour that does
not stall a 1 s flow.

Forecast, every step: the expected variance over ``(t, t + h]``, which starts
``e`` (a fraction of a bar) into the open bar, from the GARCH term structure
``E_n sigma^2_{n+k} = sbar + p^{k-1} (sigma^2_{n+1} - sbar)``,
``sbar = omega / (1 - p)``, ``p = alpha + beta`` (Bollerslev 1986; Tsay 2010,
Analysis of Financial Time Series, §3.5): the open bar's remaining ``1 - e``, the
next ``h / bar - 1`` whole bars and ``e`` of the last (:func:`term_variance`).
The information set advances per bar, the window per step.

Scale: the flow scores every method against the sum of squared 1 s returns
(:func:`model.forecaster.step_rv`), which is not the squared 1-minute return when
1 s returns are autocorrelated. Each refit measures ``target_ratio``, the sum of
the bars' 1 s realized variance over the sum of their squared returns in the
fit window (the measurement scale of Realized GARCH, Hansen, Huang and Shek
2012, in its simplest form), and the forecast is the GARCH variance times it.
With 1-minute steps it is 1 exactly.

Quantiles: as for EWMA, empirical quantiles of matured log residuals
``ln RV - ln forecast`` (forecasts sampled every ``sample_every_ns``).

>>> LiveGARCH().forecast(0)[0].reason
'garch needs 240 1m returns for its first fit, has 0'
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np

from model.baselines.garch import GarchFit, fit_garch, step_variance
from model.features import FeatureRow
from model.forecaster import HorizonForecast, RVSource, residual_quantiles, step_rv
from model.horizons import DEFAULT_HORIZONS, MINUTE_NS, SECOND_NS, Horizon, format_duration
from model.realized import RealizedTargets


def term_variance(fit: GarchFit, sigma2_next: float, bars: int, elapsed: float) -> float:
    """Expected variance of ``bars`` bar lengths starting ``elapsed`` into the open bar (GARCH term structure).

    Weights ``1 - elapsed``, ``1``, ..., ``1``, ``elapsed`` on ``E sigma^2_{n+1..n+bars+1}``;
    for ``p < 1`` the closed form ``bars sbar + (sigma^2_{n+1} - sbar)(1 - p^bars)(1/(1 - p) - elapsed)``
    (Bollerslev 1986), else the recursion ``E sigma^2_{k+1} = omega + p E sigma^2_k``.

    >>> f = GarchFit(kind="garch", omega=0.1, alpha=0.1, gamma=0.0, beta=0.8, nu=8, sigma2_last=1.0, n_obs=0, loglik=0)
    >>> # half a bar of sigma^2 = 2, a bar of omega + p 2 = 1.9, half a bar of omega + p 1.9 = 1.81
    >>> round(term_variance(f, 2.0, 2, 0.5), 12), round(0.5 * 2.0 + 1.9 + 0.5 * 1.81, 12)
    (3.805, 3.805)
    """
    p = fit.persistence
    if p < 1.0 - 1e-9:
        sbar = fit.omega / (1.0 - p)
        return bars * sbar + (sigma2_next - sbar) * (1.0 - p**bars) * (1.0 / (1.0 - p) - elapsed)
    total, cur = 0.0, sigma2_next
    for k in range(bars + 1):
        weight = 1.0 - elapsed if k == 0 else (elapsed if k == bars else 1.0)
        total += weight * cur
        cur = fit.omega + p * cur
    return total


class LiveGARCH:
    """Online GARCH(1,1)-t forecaster of realized variance for several horizons, one per instrument; picklable.

    Parameters
    ----------
    horizons : tuple of Horizon
        Forecast horizons, multiples of ``bar_ns``.
    cadence_ns : int
        Step length of the observed rows; divides ``bar_ns``, and one minute.
    bar_ns : int
        Bar length the model is fitted and run on (see the module on why 1 minute).
    window_bars : int
        Trailing bars each fit uses (default 2 days of 1-minute bars).
    min_bars : int
        Observed bar returns needed for the first fit (default 4 hours, as HAR's
        longest lag); at least 100 (:func:`model.baselines.garch.fit_garch`).
    refit_every_bars : int
        Bars between refits (default hourly).
    min_bar_coverage : float
        Observed fraction of a bar's steps needed for its return to count.
    sample_every_ns, min_independent_targets, residual_window, min_coverage :
        Residual quantiles, as in :class:`model.baselines.ewma.EWMA`.
    stale_after_ns : int
        An ``ok`` forecast notes stale inputs when the last observed step is older.
    rv_source : {"return", "tick"}
        The per-step variance the forecast is scaled to and scored against.

    >>> LiveGARCH().name
    'garch'
    """

    name = "garch"

    def __init__(
        self,
        horizons: tuple[Horizon, ...] = DEFAULT_HORIZONS,
        cadence_ns: int = SECOND_NS,
        bar_ns: int = MINUTE_NS,
        window_bars: int = 2 * 1440,
        min_bars: int = 240,
        refit_every_bars: int = 60,
        min_bar_coverage: float = 0.8,
        sample_every_ns: int = MINUTE_NS,
        min_independent_targets: int = 20,
        residual_window: int = 10_080,
        min_coverage: float = 0.8,
        stale_after_ns: int = MINUTE_NS,
        rv_source: RVSource = "return",
    ) -> None:
        if bar_ns <= 0 or bar_ns % cadence_ns:
            raise ValueError(f"bar_ns ({bar_ns}) must be a positive multiple of cadence_ns ({cadence_ns})")
        for h in horizons:
            if h.ns % bar_ns:
                raise ValueError(f"horizon {h.name} must be a multiple of bar_ns ({format_duration(bar_ns)})")
        if not 100 <= min_bars <= window_bars or refit_every_bars < 1:
            raise ValueError("need 100 <= min_bars <= window_bars and refit_every_bars >= 1")
        if not 0.0 < min_bar_coverage <= 1.0:
            raise ValueError(f"min_bar_coverage must be in (0, 1], got {min_bar_coverage}")
        self.horizons = tuple(horizons)
        self.cadence_ns = cadence_ns
        self.bar_ns = bar_ns
        self.window_bars = window_bars
        self.min_bars = min_bars
        self.refit_every_bars = refit_every_bars
        self.min_bar_coverage = min_bar_coverage
        self.stale_after_ns = stale_after_ns
        self.rv_source = rv_source
        self._steps_per_bar = bar_ns // cadence_ns
        # The open bar j holds the steps ending in ((j-1) bar, j bar]: its return, RV and their observed steps.
        self._bar_j: int | None = None
        self._bar_return, self._bar_returns_seen = 0.0, 0
        self._bar_rv, self._bar_rvs_seen = 0.0, 0
        self._returns: deque[float] = deque(maxlen=window_bars)  # closed bars' returns, NaN where unobserved
        self._observed = 0  # bars in _returns that are not NaN (counted, not recounted per step)
        self._rvs: deque[float] = deque(maxlen=window_bars)  # their coverage-rescaled 1 s RV, NaN likewise
        self._bars_since_refit = 0
        self.fit: GarchFit | None = None
        self.target_ratio = 1.0
        self.refits = 0
        self.last_refit_s: float | None = None  # wall time of the last refit
        self._fit_error = ""
        self._sigma2_next = math.nan  # Var(return of the open bar | closed bars)
        self._last_observed_ns: int | None = None
        self._targets: RealizedTargets[float] = RealizedTargets(self.horizons, cadence_ns, sample_every_ns,
                                                                min_coverage)
        self._min_residuals = {
            h.name: min(max(min_independent_targets * h.ns // sample_every_ns, min_independent_targets),
                        residual_window)
            for h in self.horizons
        }
        self._residuals: dict[str, deque[float]] = {h.name: deque(maxlen=residual_window) for h in self.horizons}
        self._quantiles: dict[str, tuple[float, float, float] | None] = {h.name: None for h in self.horizons}

    @property
    def next_bar_variance(self) -> float | None:
        """Var(return of the open bar | closed bars) from the recursion (bar units); None before the first fit."""
        return None if self.fit is None else self._sigma2_next

    def observe(self, row: FeatureRow) -> None:
        """Consume the row's step log return and step variance (absent: an unobserved step)."""
        self.observe_step(row.ts_ns, row.get("log_return"), step_rv(row, self.rv_source))

    def observe_step(self, ts_ns: int, log_return: float | None, rv: float | None) -> None:
        """One step ending at ``ts_ns``: add it to its bar, close bars that ended, score matured forecasts."""
        j = -(-ts_ns // self.bar_ns)
        if self._bar_j is None:
            self._bar_j = j
        elif j > self._bar_j:  # the open bar ended without its last step; bars in between saw no step
            self._close_bar()
            for _ in range(min(j - self._bar_j - 1, self.window_bars)):
                self._close_bar()
            self._bar_j = j
        if log_return is not None and math.isfinite(log_return):
            self._bar_return += log_return
            self._bar_returns_seen += 1
            self._last_observed_ns = ts_ns
        if rv is not None and math.isfinite(rv):
            self._bar_rv += rv
            self._bar_rvs_seen += 1
        if ts_ns % self.bar_ns == 0:
            self._close_bar()
            self._bar_j = j + 1
        for name, _t, log_f, realized in self._targets.push(ts_ns, rv):
            self._residuals[name].append(math.log(realized) - log_f)
            res = self._residuals[name]
            if len(res) >= self._min_residuals[name]:
                self._quantiles[name] = residual_quantiles(np.fromiter(res, dtype=np.float64))
        if self.fit is not None and ts_ns % self._targets.sample_every_ns == 0:
            for h in self.horizons:
                var = self._horizon_variance(ts_ns, h)
                if var > 0.0 and math.isfinite(var):
                    self._targets.add(ts_ns, h.name, math.log(var))

    def _close_bar(self) -> None:
        """Append the open bar's return and RV (NaN where too few steps were seen), advance the recursion, refit."""
        need = self.min_bar_coverage * self._steps_per_bar
        r = self._bar_return if self._bar_returns_seen >= need else math.nan
        rv = self._bar_rv * self._steps_per_bar / self._bar_rvs_seen if self._bar_rvs_seen >= need else math.nan
        if len(self._returns) == self.window_bars and not math.isnan(self._returns[0]):
            self._observed -= 1  # the oldest bar leaves the window
        self._returns.append(r)
        self._observed += not math.isnan(r)
        self._rvs.append(rv)
        self._bar_return, self._bar_returns_seen, self._bar_rv, self._bar_rvs_seen = 0.0, 0, 0.0, 0
        if self.fit is not None:
            self._sigma2_next = float(step_variance(self.fit, np.array([r]), self._sigma2_next)[0])
        self._bars_since_refit += 1
        if self._bars_since_refit >= self.refit_every_bars or self.fit is None:
            self._refit()

    def _refit(self) -> None:
        returns = np.fromiter(self._returns, dtype=np.float64)
        observed = np.isfinite(returns)
        if observed.sum() < self.min_bars:
            return
        self._bars_since_refit = 0
        t0 = time.perf_counter()
        try:
            fit = fit_garch(returns, "garch")
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
            self._fit_error = f"garch fit failed ({e}); keeping the previous fit"
            return
        finally:
            self.last_refit_s = time.perf_counter() - t0
        params = (fit.omega, fit.alpha, fit.beta, fit.nu, fit.sigma2_last)
        if not (all(math.isfinite(x) for x in params) and fit.omega > 0.0 and fit.alpha >= 0.0 and fit.beta >= 0.0):
            self._fit_error = f"garch fit gave unusable parameters {params}; keeping the previous fit"
            return
        self.fit, self._fit_error = fit, ""
        self.refits += 1
        # sigma2_last is Var(last observed return); run the recursion through it and any unobserved bars after it.
        last = int(np.flatnonzero(observed)[-1])
        self._sigma2_next = float(step_variance(fit, returns[last:], fit.sigma2_last)[-1])
        rvs = np.fromiter(self._rvs, dtype=np.float64)
        both = observed & np.isfinite(rvs)
        squared = float(np.sum(returns[both] ** 2))
        if squared > 0.0:
            self.target_ratio = float(np.sum(rvs[both])) / squared

    def _horizon_variance(self, ts_ns: int, h: Horizon) -> float:
        assert self.fit is not None
        elapsed = (ts_ns % self.bar_ns) / self.bar_ns
        return self.target_ratio * term_variance(self.fit, self._sigma2_next, h.ns // self.bar_ns, elapsed)

    def forecast(self, ts_ns: int) -> list[HorizonForecast]:
        """Forecast every horizon as of step end ``ts_ns``; ``warming_up`` until the first fit."""
        if self.fit is None:
            why = self._fit_error or (
                f"garch needs {self.min_bars} {format_duration(self.bar_ns)} returns for its first fit, "
                f"has {self._observed}"
            )
            return [HorizonForecast.warming_up(h, self.name, why) for h in self.horizons]
        common = [self._fit_error] if self._fit_error else []
        if self._last_observed_ns is not None and ts_ns - self._last_observed_ns > self.stale_after_ns:
            common.append(f"inputs stale: last observed step {format_duration(ts_ns - self._last_observed_ns)} ago")
        out = []
        for h in self.horizons:
            var = self._horizon_variance(ts_ns, h)
            notes = list(common)
            q = self._quantiles[h.name]
            if q is None:
                have, need = len(self._residuals[h.name]), self._min_residuals[h.name]
                notes.append(f"quantiles need {need} scored {h.name} forecasts, have {have}")
            log_q = None if q is None else (math.log(var) + q[0], math.log(var) + q[1], math.log(var) + q[2])
            out.append(HorizonForecast.from_var(h, var, self.name, log_q, "; ".join(notes)))
        return out
