"""HAR-RV on log realized variance, fitted online: the baseline that matters (research/models.md §0).

Corsi (2009, J. Financial Econometrics 7(2):174-196) with the log transform that
Clements & Preve (2021) find systematically better. For each horizon ``h``:

.. math:: \\ln RV_{(t, t+h]} = \\beta_0 + \\sum_{L} \\beta_L \\ln RV_{(t-L, t]} + \\varepsilon

Lags: an intraday cascade matched to 5 m - 4 h horizons, ``L`` in 5m, 30m, 4h
(ratios 6 and 8, as Corsi's 1 d / 5 d / 22 d are 5 and 4.4), plus 1d *when
available*. On the real BTC month the 1 d lag lowered out-of-sample QLIKE at
every horizon, most at 4 h, with Diebold-Mariano t > 3 (``har_prior.json``,
``evaluation``); but requiring it would leave a cold start without HAR for a
day. So the 1 d lag is an ``extra_lags`` entry: the "full" variant (all lags)
forecasts once its lag and fit exist, the "base" variant (``lags`` only) before.
Each RV is the trailing sum of the per-step variance (the squared step return
by default, :func:`model.forecaster.step_rv`) rescaled by its coverage
(``rv / coverage``); it needs coverage >= ``min_coverage``.

Fitting is online. Once a minute (``sample_every_ns``) the lag vector is queued
per horizon; when ``(t, t+h]`` has passed, it is paired with its realized target
(:class:`model.realized.MaturingQueue`) and kept in a rolling sample of
``window_pairs`` pairs. OLS is refit every ``refit_every`` new pairs, once the
sample holds ``min_pairs(h) = max(min_pairs, min_independent_targets * h /
sample_every)`` pairs: overlapping targets carry little independent
information, so longer horizons wait longer. Before that, coefficients come from
``har_prior.json``, fitted with this code on a real month of BTC perpetual
1-minute closes, and ``method`` says ``har_rv(prior)``. Order of preference:
online full, online base, prior full, prior base (an online fit sees this feed's
own RV level, which matters more than the extra lag).

Log forecasts are mapped back with the lognormal bias correction
``E[RV] = exp(mu + s^2 / 2)``, ``s^2`` the regression's residual variance (a
Jensen correction: ``exp(mu)`` alone forecasts the median, not the mean).
Quantiles are ``exp(mu + e_q)``, ``e_q`` the empirical quantiles of the fit's
in-sample log residuals (parameter uncertainty ignored).

>>> m = HARRV()  # with the bundled prior
>>> [fc.status for fc in m.forecast(0)]
['warming_up', 'warming_up', 'warming_up', 'warming_up']
>>> m.forecast(0)[0].reason
'har_rv needs 4h of history for its 4h lag, has 0s'
"""

from __future__ import annotations

import importlib.resources
import math
from typing import Any, Literal

import msgspec
import numpy as np

from model.features import FeatureRow
from model.forecaster import HorizonForecast, RVSource, residual_quantiles, step_rv
from model.horizons import DEFAULT_HORIZONS, MINUTE_NS, SECOND_NS, Horizon, format_duration
from model.realized import MaturingQueue, RVHistory

DEFAULT_LAGS: tuple[Horizon, ...] = tuple(Horizon.parse(x) for x in ("5m", "30m", "4h"))
DEFAULT_EXTRA_LAGS: tuple[Horizon, ...] = (Horizon.parse("1d"),)
Variant = Literal["base", "full"]


def lag_label(lags: tuple[Horizon, ...]) -> str:
    """Key of a lag set in ``HARPrior.fits``.

    >>> lag_label(DEFAULT_LAGS)
    '5m,30m,4h'
    """
    return ",".join(lag.name for lag in lags)


class HARFit(msgspec.Struct, frozen=True, kw_only=True):
    """One horizon's fitted log-HAR: coefficients (intercept first) and residual summary."""

    beta: tuple[float, ...]
    resid_var: float  # s^2 = e'e / (n - k)
    log_quantiles: tuple[float, float, float]  # residual q10, q50, q90
    n_pairs: int
    r2: float


class HARPrior(msgspec.Struct, frozen=True, kw_only=True):
    """Coefficients fitted offline on real data, ``fits[lag_label][horizon]``, with where they came from."""

    fits: dict[str, dict[str, HARFit]]
    provenance: dict[str, Any]
    evaluation: dict[str, Any] = {}


def load_prior(path: str | None = None) -> HARPrior:
    """The bundled ``har_prior.json`` (or the file at ``path``).

    >>> sorted(load_prior().fits)
    ['5m,30m,4h', '5m,30m,4h,1d']
    """
    if path is None:
        data = importlib.resources.files("model.baselines").joinpath("har_prior.json").read_bytes()
    else:
        with open(path, "rb") as f:
            data = f.read()
    return msgspec.json.decode(data, type=HARPrior)


def fit_har(x: np.ndarray, y: np.ndarray) -> HARFit:
    """OLS of ``y`` on ``[1, x]``; residual variance s^2 = e'e/(n-k) and residual quantiles.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 1)); y = 1.0 + 0.5 * x[:, 0]
    >>> [round(b, 6) for b in fit_har(x, y).beta]
    [1.0, 0.5]
    """
    design = np.column_stack([np.ones(len(y)), x]).astype(np.float64)
    target = np.asarray(y, dtype=np.float64)
    if len(target) <= design.shape[1]:
        raise ValueError(f"HAR fit needs more than {design.shape[1]} pairs, got {len(target)}")
    beta, *_ = np.linalg.lstsq(design, target, rcond=None)
    resid = target - design @ beta
    ss_tot = float(((target - target.mean()) ** 2).sum())
    return HARFit(
        beta=tuple(float(b) for b in beta),
        resid_var=float(resid @ resid) / (len(target) - design.shape[1]),
        log_quantiles=residual_quantiles(resid),
        n_pairs=len(target),
        r2=1.0 - float(resid @ resid) / ss_tot if ss_tot > 0.0 else 0.0,
    )


class _PairSample:
    """Rolling sample of matured (sample time, log lags, log target) pairs; float32 keeps the state small."""

    def __init__(self, capacity: int, n_lags: int) -> None:
        self.t = np.zeros(capacity, dtype=np.int64)
        self.x = np.zeros((capacity, n_lags), dtype=np.float32)  # NaN: an extra lag not yet available
        self.y = np.zeros(capacity, dtype=np.float32)
        self.count = 0

    def add(self, t: int, x: tuple[float, ...], y: float) -> None:
        slot = self.count % len(self.y)
        self.t[slot], self.x[slot], self.y[slot] = t, x, y
        self.count += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(t, x, y)`` copies in time order."""
        n = min(self.count, len(self.y))
        order = np.arange(self.count - n, self.count) % len(self.y)
        return self.t[order], self.x[order], self.y[order]


class HARRV:
    """Online log-HAR-RV forecaster for several horizons, one instance per instrument.

    Parameters
    ----------
    horizons : tuple of Horizon
        Forecast horizons; multiples of ``cadence_ns``.
    lags, extra_lags : tuple of Horizon
        Trailing RV lags always used, and lags used once available (see module).
    cadence_ns : int
        Step length of the observed rows; must divide one minute (the RV bucket).
    prior : HARPrior, "bundled" or None
        Offline coefficients, looked up by lag set and horizon, used until the
        online fit takes over; "bundled": ``har_prior.json``; None: no forecast
        until the online fit exists.
    sample_every_ns : int
        Spacing of the regression pairs.
    window_pairs : int
        Rolling sample size per horizon (default: 7 days of 1-minute pairs).
    min_pairs, min_independent_targets : int
        The online fit takes over at ``max(min_pairs, min_independent_targets * h / sample_every)`` pairs.
    refit_every : int
        New matured pairs between OLS refits.
    min_coverage : float
        Observed fraction of a lag or target window needed to use it.
    rv_source : {"return", "tick"}
        Which per-step variance builds the lags and targets (:func:`model.forecaster.step_rv`).

    >>> HARRV(prior=None).name
    'har_rv'
    """

    name = "har_rv"

    def __init__(
        self,
        horizons: tuple[Horizon, ...] = DEFAULT_HORIZONS,
        lags: tuple[Horizon, ...] = DEFAULT_LAGS,
        extra_lags: tuple[Horizon, ...] = DEFAULT_EXTRA_LAGS,
        cadence_ns: int = SECOND_NS,
        prior: HARPrior | Literal["bundled"] | None = "bundled",
        sample_every_ns: int = MINUTE_NS,
        window_pairs: int = 7 * 1440,
        min_pairs: int = 120,
        min_independent_targets: int = 20,
        refit_every: int = 10,
        min_coverage: float = 0.8,
        rv_source: RVSource = "return",
    ) -> None:
        if not lags:
            raise ValueError("HAR needs at least one lag")
        for d in (*horizons, *lags, *extra_lags):
            if d.ns % cadence_ns:
                raise ValueError(f"{d.name} is not a multiple of cadence_ns ({cadence_ns})")
        if sample_every_ns % cadence_ns:
            raise ValueError(f"sample_every_ns ({sample_every_ns}) must be a multiple of cadence_ns ({cadence_ns})")
        if not 0.0 < min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
        if window_pairs <= min_pairs or refit_every < 1:
            raise ValueError("window_pairs must exceed min_pairs, and refit_every must be positive")
        self.horizons = tuple(horizons)
        self.lags = tuple(lags)
        self.extra_lags = tuple(extra_lags)
        self._all_lags = self.lags + self.extra_lags
        self._variants: dict[Variant, str] = {"base": lag_label(self.lags)}
        if self.extra_lags:
            self._variants["full"] = lag_label(self._all_lags)
        if prior == "bundled":
            prior = load_prior()
        if prior is not None and not set(self._variants.values()) & set(prior.fits):
            raise ValueError(
                f"prior has lag sets {sorted(prior.fits)}, this HAR uses {sorted(self._variants.values())}"
            )
        self.prior = prior
        self.cadence_ns = cadence_ns
        self.sample_every_ns = sample_every_ns
        self.refit_every = refit_every
        self.min_coverage = min_coverage
        self.rv_source = rv_source
        # The longest window read back is a lag, or a target read when it matures;
        # an hour of margin lets a target be read after a gap in the rows.
        longest = max(d.ns for d in (*self.horizons, *self._all_lags))
        self._history = RVHistory(cadence_ns, coarse_span_ns=max(-(-longest // MINUTE_NS) + 60, 15) * MINUTE_NS)
        self._min_pairs = {
            h.name: min(max(min_pairs, min_independent_targets * h.ns // sample_every_ns), window_pairs)
            for h in self.horizons
        }
        self._pending: dict[str, MaturingQueue[tuple[float, ...]]] = {
            h.name: MaturingQueue(h.ns, maxlen=h.ns // sample_every_ns + 2) for h in self.horizons
        }
        self._samples = {h.name: _PairSample(window_pairs, len(self._all_lags)) for h in self.horizons}
        self._since_refit = {h.name: 0 for h in self.horizons}
        self._fits: dict[str, dict[Variant, HARFit]] = {h.name: {} for h in self.horizons}

    def fit(self, horizon: str, variant: Variant = "base") -> HARFit | None:
        """The current online fit of ``variant`` for ``horizon`` (None before it takes over)."""
        return self._fits[horizon].get(variant)

    def pairs(self, horizon: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rolling sample ``(t[n], log_lags[n, L], log_target[n])`` for ``horizon``, oldest first.

        Columns follow ``lags + extra_lags``; an extra lag not yet available is NaN.
        """
        return self._samples[horizon].arrays()

    def observe(self, row: FeatureRow) -> None:
        """Consume the row's step variance (absent: an unobserved step)."""
        self.observe_rv(row.ts_ns, step_rv(row, self.rv_source))

    def observe_rv(self, ts_ns: int, rv: float | None) -> None:
        """Record one step's realized variance (None: unobserved); pair matured lags with targets; refit when due."""
        self._history.push(ts_ns, rv)
        for h in self.horizons:
            for t, lags in self._pending[h.name].pop_matured(ts_ns):
                target, coverage = self._history.trailing(h.ns, end_ns=t + h.ns)
                if coverage >= self.min_coverage and target > 0.0:
                    self._samples[h.name].add(t, lags, math.log(target / coverage))
                    self._since_refit[h.name] += 1
            if self._since_refit[h.name] >= self.refit_every:
                self._refit(h.name)
        if ts_ns % self.sample_every_ns == 0:
            now = self._log_lags(ts_ns)
            if isinstance(now, tuple):
                for h in self.horizons:
                    self._pending[h.name].add(ts_ns, now)

    def _refit(self, horizon: str) -> None:
        sample, need = self._samples[horizon], self._min_pairs[horizon]
        if sample.count < need:
            return
        _, x, y = sample.arrays()
        self._fits[horizon]["base"] = fit_har(x[:, : len(self.lags)], y)
        full = np.isfinite(x).all(axis=1)
        if "full" in self._variants and full.sum() >= need:
            self._fits[horizon]["full"] = fit_har(x[full], y[full])
        self._since_refit[horizon] = 0

    def _log_lags(self, ts_ns: int) -> tuple[float, ...] | str:
        """ln RV of each lag window ending at ``ts_ns`` (NaN for an unavailable extra lag), or why not."""
        span = self._history.span_ns(ts_ns)
        longest = max(self.lags, key=lambda lag: lag.ns)
        if span < longest.ns:
            return f"har_rv needs {longest.name} of history for its {longest.name} lag, has {format_duration(span)}"
        out = []
        for lag in self._all_lags:
            rv, coverage = self._history.trailing(lag.ns, end_ns=ts_ns) if span >= lag.ns else (0.0, 0.0)
            if coverage >= self.min_coverage and rv > 0.0:
                out.append(math.log(rv / coverage))
            elif lag in self.extra_lags:
                out.append(math.nan)
            elif coverage < self.min_coverage:
                return (
                    f"har_rv {lag.name} lag has {coverage:.0%} of its steps observed, needs "
                    f"{self.min_coverage:.0%} (unsynced book or feed gap)"
                )
            else:
                return f"har_rv {lag.name} lag has zero realized variance (the mid has not moved)"
        return tuple(out)

    def _choose(self, horizon: str, full_available: bool) -> tuple[HARFit, Variant, bool] | None:
        """The fit to use: online before prior, full before base; with its variant and whether it is the prior."""
        variants: tuple[Variant, ...] = ("full", "base") if full_available and "full" in self._variants else ("base",)
        for online in (True, False):
            for v in variants:
                fit = self._fits[horizon].get(v) if online else self._prior_fit(v, horizon)
                if fit is not None:
                    return fit, v, not online
        return None

    def _prior_fit(self, variant: Variant, horizon: str) -> HARFit | None:
        if self.prior is None:
            return None
        return self.prior.fits.get(self._variants[variant], {}).get(horizon)

    def forecast(self, ts_ns: int) -> list[HorizonForecast]:
        """Forecast every horizon as of step end ``ts_ns``."""
        x = self._log_lags(ts_ns)
        if isinstance(x, str):
            return [HorizonForecast.warming_up(h, self.name, x) for h in self.horizons]
        values = np.array((1.0, *x))
        full_available = bool(np.isfinite(values).all())
        out = []
        for h in self.horizons:
            have, need = self._samples[h.name].count, self._min_pairs[h.name]
            chosen = self._choose(h.name, full_available)
            if chosen is None:
                why = f"har_rv has {have} of {need} scored (lags, target) pairs for {h.name} and no prior for it"
                out.append(HorizonForecast.warming_up(h, self.name, why))
                continue
            fit, variant, from_prior = chosen
            notes = [f"prior until the online fit has {need} pairs, has {have}"] if from_prior else []
            if variant == "base" and self.extra_lags:
                notes.append(f"without the {lag_label(self.extra_lags)} lag")
            mu = float(values[: len(fit.beta)] @ np.asarray(fit.beta))
            var = math.exp(mu + 0.5 * fit.resid_var)
            log_q = tuple(mu + e for e in fit.log_quantiles)
            method = f"{self.name}(prior)" if from_prior else self.name
            out.append(HorizonForecast.from_var(h, var, method, log_q, "; ".join(notes)))  # type: ignore[arg-type]
        return out
