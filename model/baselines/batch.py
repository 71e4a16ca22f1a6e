"""Baselines over a whole bar series, for evaluation: log-HAR(-X) with expanding refits, EWMA.

The online classes (:class:`model.baselines.har.HARRV`, :class:`model.baselines.ewma.EWMA`)
serve the live flow at a 1 s cadence with 1-minute RV buckets; these run the
same models over bars of any length (1 minute to 1 day) and reuse
:func:`model.baselines.har.fit_har` for the OLS. Index ``i`` is the forecast
origin "after bar ``i`` closed": every input ends at bar ``i``, every target
covers ``(t_i, t_i + h]``.

>>> from model.bars import Bars
>>> b = Bars(np.arange(1, 5) * 60, close=np.exp(np.array([0.0, 0.1, 0.3, 0.6])), bar_ns=60)
>>> bar_returns(b).round(3).tolist()
[nan, 0.1, 0.2, 0.3]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy.signal import lfilter

from model.bars import Bars
from model.baselines.har import fit_har

MIN_COVERAGE = 0.8
_LN2x4 = 4.0 * np.log(2.0)


def bar_returns(bars: Bars) -> np.ndarray:
    """Close-to-close log return of each bar; NaN for the first bar and after a gap."""
    r = np.full(len(bars), np.nan)
    if len(bars) > 1:
        ok = np.diff(bars.ts_ns) == bars.bar_ns
        r[1:] = np.where(ok, np.diff(np.log(bars.close)), np.nan)
    return r


def parkinson(bars: Bars) -> np.ndarray:
    """Parkinson (1980) variance ``ln(high/low)^2 / (4 ln 2)`` per bar; NaN without a range."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.log(bars.high / bars.low) ** 2 / _LN2x4
    return np.where(bars.high >= bars.low, p, np.nan)


def trailing_sum(bars: Bars, x: np.ndarray, window_ns: int) -> np.ndarray:
    """Coverage-rescaled sum of ``x`` over bars in ``(t_i - window, t_i]``; NaN below 80% coverage or before the history spans it.

    >>> b = Bars(np.arange(1, 5) * 60, close=np.ones(4), bar_ns=60)
    >>> trailing_sum(b, np.array([1.0, np.nan, 1.0, 1.0]), 120).tolist()
    [nan, nan, nan, 2.0]
    """
    ts = bars.ts_ns
    n_w = window_ns // bars.bar_ns
    cs = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(x), x, 0.0))])
    cn = np.concatenate([[0.0], np.cumsum(np.isfinite(x))])
    first = np.searchsorted(ts, ts - window_ns, side="right")
    idx = np.arange(len(ts))
    total, count = cs[idx + 1] - cs[first], cn[idx + 1] - cn[first]
    spans = ts - window_ns >= ts[0] - bars.bar_ns if len(ts) else np.zeros(0, dtype=bool)
    ok = spans & (count >= MIN_COVERAGE * n_w) & (count > 0)
    out = np.full(len(ts), np.nan)
    out[ok] = total[ok] * n_w / count[ok]
    return out


def refit_points(first: int, n: int, every: int) -> np.ndarray:
    """Refit indices ``first, first + every, ...`` below ``n``.

    >>> refit_points(5, 20, 6).tolist()
    [5, 11, 17]
    """
    return np.arange(first, n, max(int(every), 1))


def har_forecasts(
    bars: Bars,
    targets: np.ndarray,
    horizons_ns: Sequence[int],
    lags_ns: Sequence[int],
    refit_at: np.ndarray,
    with_range: bool = False,
    exog: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, object]]:
    """Log-HAR (Corsi 2009 on ln RV) mean-variance forecasts ``[n, H]``, refit on an expanding window.

    At each ``refit_at`` index ``R`` the OLS uses every pair whose target had ended
    by ``t_R`` (``t_i + h <= t_R``), from the first bar on, and serves origins
    ``R`` up to the next refit. Regressors: ``ln RV`` over each lag (and, with
    ``with_range``, ``ln`` Parkinson variance over each lag: HAR-X). Forecast
    ``exp(mu + s^2/2)`` (lognormal mean, as the online HAR).

    ``exog[n, k]`` adds regressors known at each bar's close, NaN where absent; they
    enter through :func:`exog_design` (absent values imputed with the training pairs'
    mean plus a presence indicator; see there), so an origin without them still gets
    a forecast. The info's ``exog_refits`` counts the refits whose first horizon kept
    at least one of them.
    """
    r = bar_returns(bars)
    cols = [trailing_sum(bars, r * r, lag) for lag in lags_ns]
    if with_range:
        p = parkinson(bars)
        cols += [trailing_sum(bars, p, lag) for lag in lags_ns]
    raw = np.column_stack(cols)
    # A zero lag (the price did not move) is floored at 1/1000 of the column's median up to the
    # first refit (not the whole file: that would look ahead).
    head = raw[: int(refit_at[0]) + 1]
    floor = 1e-3 * np.nanmedian(np.where(head > 0, head, np.nan), axis=0)
    x = np.log(np.maximum(raw, floor))
    with np.errstate(divide="ignore"):
        y = np.log(targets)
    ts = bars.ts_ns
    out = np.full((len(bars), len(horizons_ns)), np.nan)
    xok = np.isfinite(x).all(axis=1)
    n_fits = n_exog_fits = 0
    for start, stop in itertools.pairwise([*refit_at, len(bars)]):
        for j, h in enumerate(horizons_ns):
            train = xok & np.isfinite(y[:, j]) & (ts + h <= ts[start])
            design = x
            if exog is not None:
                extra = exog_design(exog, train)
                design = np.column_stack([x, extra])
                n_exog_fits += j == 0 and extra.shape[1] > 0
            if train.sum() <= design.shape[1] + 10:
                continue
            fit = fit_har(design[train], y[train, j])
            mu = fit.beta[0] + design[start:stop] @ np.asarray(fit.beta[1:])
            out[start:stop, j] = np.exp(mu + 0.5 * fit.resid_var)
        n_fits += 1
    info: dict[str, object] = {"refits": n_fits, "regressors": x.shape[1]}
    if exog is not None:
        info["exog_refits"] = n_exog_fits
    return out, info


def exog_design(exog: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Extra regressors for one fit: absent values imputed with the training mean, plus presence indicators.

    The missing-indicator method (Jones 1996, JASA 91(433), which also shows its bias
    when absence goes with the other regressors) lets every origin keep a forecast and
    lets the fit learn the level shift of an absent input. The mean and the columns kept
    come from the rows in ``train`` only, so nothing after the fit's data enters it. A
    column constant over ``train`` (an input never present there; the indicator of one
    always present) is dropped, being collinear with the intercept.

    >>> e = np.array([[1.0], [np.nan], [3.0], [np.nan]])
    >>> exog_design(e, np.array([True, True, True, False])).tolist()
    [[1.0, 1.0], [2.0, 0.0], [3.0, 1.0], [2.0, 0.0]]
    """
    present = np.isfinite(exog)
    counts = present[train].sum(axis=0)
    sums = np.where(present[train], exog[train], 0.0).sum(axis=0)
    mean = np.divide(sums, counts, out=np.full(exog.shape[1], np.nan), where=counts > 0)
    cols = np.column_stack([np.where(present, exog, mean), present.astype(np.float64)])
    fitted = cols[train]
    if not len(fitted):
        return cols[:, :0]
    keep = np.isfinite(fitted).all(axis=0) & (np.ptp(fitted, axis=0) > 0)
    return cols[:, keep]


def ewma_step_variance(x: np.ndarray, half_life: float) -> np.ndarray:
    """Normalized EWMA of per-bar variance ``x`` (as :class:`model.baselines.ewma.EWMA`); NaN steps are skipped.

    >>> ewma_step_variance(np.array([1.0, np.nan, 3.0]), 1.0).round(4).tolist()
    [1.0, 1.0, 2.3333]
    """
    lam = 0.5 ** (1.0 / half_life)
    obs = np.isfinite(x)
    out = np.full(len(x), np.nan)
    if not obs.any():
        return out
    xs = x[obs]
    s = lfilter([1.0 - lam], [1.0, -lam], xs)
    w = lfilter([1.0 - lam], [1.0, -lam], np.ones(len(xs)))
    last = np.cumsum(obs) - 1  # index into xs of the last observed step at or before i
    have = last >= 0
    out[have] = (s / w)[last[have]]
    return out


def tune_ewma(
    x: np.ndarray,
    targets: np.ndarray,
    horizons_bars: Sequence[int],
    tune: np.ndarray,
    grid: Sequence[float] | None = None,
) -> tuple[list[float], dict[str, list[float]]]:
    """Half-life (in bars) per horizon minimizing mean QLIKE over the origins ``tune`` (a bool mask).

    Returns the chosen half-lives and the QLIKE of every grid point per horizon.
    """
    grid = list(grid) if grid is not None else [float(2 ** (k / 2)) for k in range(27)]
    table: dict[str, list[float]] = {}
    best: list[float] = []
    paths = {hl: ewma_step_variance(x, hl) for hl in grid}
    for j, hb in enumerate(horizons_bars):
        losses = []
        for hl in grid:
            f = paths[hl] * hb
            ok = tune & np.isfinite(targets[:, j]) & (targets[:, j] > 0) & np.isfinite(f) & (f > 0)
            ratio = targets[ok, j] / f[ok]
            losses.append(float(np.mean(ratio - np.log(ratio) - 1.0)) if ok.any() else np.inf)
        table[str(hb)] = losses
        best.append(grid[int(np.argmin(losses))])
    return best, table
