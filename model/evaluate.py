"""Score the attention model against HAR, HAR-X, EWMA, GARCH and GJR-GARCH on one bar file, honestly.

Protocol (research/models.md §1.4):

* The first ``train_fraction`` of the file's bars is the only data any model
  fits on at the start: the attention model trains there (or fine-tunes a
  checkpoint there), EWMA tunes its half-life there, HAR and GARCH make their
  first fit there. A model may only use a target once it has fully elapsed.
* Every model then forecasts at every later bar close (rolling origin), from
  data up to that close only. HAR and HAR-X refit daily on an expanding window
  of matured pairs; GARCH and GJR-GARCH refit every ``max(1 day, test/40)``
  and carry the variance by their recursion in between; EWMA runs on; the
  attention model's weights stay as trained on the first fraction.
* Targets: the realized variance over ``(t, t + h]``, the sum of squared
  bar close-to-close log returns (coverage-rescaled; absent below 80% or when
  zero). Every model is scored on the same origins: those where every target
  and every model's forecast exists.
* ``attention_base`` is an ablation: the attention model with its network
  correction removed, i.e. its own linear HAR-X base (lags, ranges, time of
  day, in logs relative to the reference level, with smearing).
* Losses on variance: QLIKE (primary; Patton 2011), MSE; Mincer-Zarnowitz
  R^2 of ``RV = a + b f``. Diebold-Mariano of attention against HAR with a
  Newey-West variance over ``2h`` lags: ``stat`` < 0 means attention's QLIKE is
  lower; ``p`` two-sided.

Mempool ablation (``mempool=``, ``volcast evaluate --mempool REC``): given the
features of a chain's mempool on the bars (:class:`MempoolInput`, one
:class:`model.mempool.MempoolRow` per bar at its close, built by ``flows`` from
recordings with the bar length as cadence), ``har_x_mempool`` is HAR-X plus, per
transform below, its mean over the first HAR lag's bars (present where 80% of them
have it, as the HAR lags), fitted exactly as HAR-X (same refits, expanding window,
matured pairs only). Absent values are imputed with the fit's training mean beside a
presence indicator (:func:`model.baselines.batch.exog_design`). Transforms, chosen
to be defined at every value and insensitive to fee spikes:

* ``ln1p_arrivals``: ``ln(1 + arrivals_per_s)``; it also defines coverage: a bar is
  *covered* when this mean is present;
* ``ln1p_fee_p50``: ``ln(1 + max(tip_p50_gwei, 0))`` (Ethereum; a tip below zero is
  a transaction not includable now) or ``ln(1 + fee_rate_p50_sat_vb)`` (Bitcoin);
* ``base_fee_change``: ln base fee over its parent's (Ethereum only).

The report's ``mempool_ablation`` block scores ``har_x`` and ``har_x_mempool`` on the
same origins: the scored origins that are covered. It gives the overlap, QLIKE per
horizon of both, and Diebold-Mariano of ``har_x_mempool`` against ``har_x`` (``stat``
< 0: the mempool lowers QLIKE; the models are nested, so read it with the gain's
size, see :func:`mempool_ablation`). Fewer than :data:`MIN_MEMPOOL_SHARE` of the test
origins covered is an error, not a report: such a score would say nothing. No
recording here holds market bars and mempool data over the same period (the bundled
Ethereum one is 29 seconds of a 2026 dev chain), so the ablation is proven on
SYNTHETIC data in the tests and has not been run on real data.

Horizons follow the bar (:func:`model.nn.spec.horizons_for`): 5m, 15m, 1h, 4h
when the bar divides them all; otherwise the first four of 1m, 5m, 15m, 1h, 4h,
12h, 1d, 3d, 7d, 14d, 28d that are whole multiples of the bar (1-hour bars: 1h,
4h, 12h, 1d). HAR lags follow the first horizon (5m, 30m, 4h, 1d; hourly: 1h,
6h, 2d, 12d).

>>> sorted(MODELS)
['attention', 'attention_base', 'ewma', 'garch', 'gjr_garch', 'har', 'har_x']
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
from typing import Any

import jax
import numpy as np
from flax import nnx

from model.bars import read_bars
from model.bars import Bars
from model.baselines.batch import (
    bar_returns,
    ewma_step_variance,
    har_forecasts,
    refit_points,
    trailing_sum,
    tune_ewma,
)
from model.baselines.garch import rolling_forecasts
from model.horizons import DAY_NS, format_duration
from model.jsonsafe import json_safe
from model.mempool import INDEX as MEMPOOL_INDEX
from model.mempool import N_CHANNELS as MEMPOOL_CHANNELS
from model.metrics import diebold_mariano, mse_var, qlike
from model.nn.checkpoint import CheckpointError, build_model, load_checkpoint
from model.nn.configs import DEFAULT, TrainConfig
from model.nn.dataset import dataset_from_bars, realized_targets
from model.nn.spec import model_spec
from model.nn.train import _meta_stub, fit, predict_fn, predict_samples

MODELS = ("attention", "attention_base", "har", "har_x", "ewma", "garch", "gjr_garch")
GARCH_REFITS = 40  # at most this many GARCH refits over the test part (each one is an `arch` MLE)
# Below this share of test origins covered by mempool features the ablation compares the
# two models mostly where they coincide (imputed inputs): refused instead of reported.
MIN_MEMPOOL_SHARE = 0.5
MEMPOOL_REGRESSORS = ("ln1p_arrivals", "ln1p_fee_p50", "base_fee_change")


@dataclasses.dataclass(frozen=True)
class MempoolInput:
    """One chain's mempool features on the bars: ``values[n, C]`` (NaN where absent), ``present[n, C]``.

    Columns are :data:`model.mempool.CHANNEL_NAMES`; row ``i`` is the step that ended
    at bar ``i``'s close (:func:`model.mempool.rows_on_bars`). ``source`` describes
    where they came from (chain, recordings, span) and is copied into the report.
    """

    values: np.ndarray
    present: np.ndarray
    source: dict[str, Any] = dataclasses.field(default_factory=dict)


def mempool_regressors(bars: Bars, mem: MempoolInput, window_ns: int) -> np.ndarray:
    """``x[n, 3]``: the :data:`MEMPOOL_REGRESSORS`, each the mean over the bars in ``(t - window, t]``.

    NaN where under 80% of the window's bars have the channel
    (:func:`model.baselines.batch.trailing_sum`, rescaled to a mean).

    >>> b = Bars(np.arange(1, 4) * 60, close=np.ones(3), bar_ns=60)
    >>> v = np.full((3, MEMPOOL_CHANNELS), np.nan); v[:, MEMPOOL_INDEX["arrivals_per_s"]] = [0.0, np.e - 1, np.nan]
    >>> mempool_regressors(b, MempoolInput(v, np.isfinite(v)), 60)[:, 0].tolist()
    [0.0, 1.0, nan]
    """
    if mem.values.shape != (len(bars), MEMPOOL_CHANNELS):
        raise ValueError(f"mempool features are {mem.values.shape}, the bars need ({len(bars)}, {MEMPOOL_CHANNELS})")

    def channel(name: str) -> np.ndarray:
        return np.where(mem.present[:, MEMPOOL_INDEX[name]], mem.values[:, MEMPOOL_INDEX[name]], np.nan)

    # One chain per input: at most one of the two fee channels is ever present.
    fee = np.where(np.isfinite(channel("tip_p50_gwei")), np.maximum(channel("tip_p50_gwei"), 0.0),
                   channel("fee_rate_p50_sat_vb"))
    per_bar = (np.log1p(channel("arrivals_per_s")), np.log1p(fee), channel("base_fee_change"))
    n_w = window_ns // bars.bar_ns
    return np.column_stack([trailing_sum(bars, x, window_ns) / n_w for x in per_bar])


def _mempool_coverage(covered: np.ndarray, scorable: np.ndarray) -> dict[str, Any]:
    """Covered bars and the covered share of the scorable test origins; ValueError below the minimum."""
    n_scorable = int(scorable.sum())
    n_covered = int((covered & scorable).sum())
    share = n_covered / n_scorable if n_scorable else 0.0
    if share < MIN_MEMPOOL_SHARE:
        raise ValueError(
            f"the mempool features cover {n_covered} of the {n_scorable} test origins ({share:.0%}); "
            f"the ablation needs at least {MIN_MEMPOOL_SHARE:.0%}"
        )
    return {"bars_covered": int(covered.sum()), "test_origins": n_scorable, "test_origins_covered": n_covered,
            "share": share}


def _mz_r2(rv: np.ndarray, f: np.ndarray) -> float:
    """R^2 of the Mincer-Zarnowitz regression RV = a + b f (the squared correlation)."""
    if len(rv) < 3 or np.std(f) == 0 or np.std(rv) == 0:
        return math.nan
    return float(np.corrcoef(rv, f)[0, 1] ** 2)


def _dm(loss_a: np.ndarray, loss_b: np.ndarray, max_lag: int) -> dict[str, float]:
    """DM statistic of mean(loss_a - loss_b) (negative: a better) and its two-sided normal p-value."""
    max_lag = min(max_lag, len(loss_a) // 4)
    _, t = diebold_mariano(loss_a, loss_b, max_lag=max_lag)
    return {"stat": float(t), "p": float(math.erfc(abs(t) / math.sqrt(2.0)))}


def forecast_table(
    bars_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    train_fraction: float = 0.3,
    *,
    config: TrainConfig | None = None,
    seed: int = 0,
    progress: bool = False,
    mempool: MempoolInput | None = None,
) -> dict[str, Any]:
    """Every model's variance forecast at every origin, with the targets; what :func:`evaluate` scores.

    Returns a dict with ``ts_ns[n]`` (bar closes), ``targets[n, H]``,
    ``forecasts[model][n, H]`` (NaN where a model has none), ``attention_log_q[n, H, 3]``
    (ln realized-variance quantiles), ``test[n]`` (origins after the fit region),
    and ``info`` (split, refits, tuned half-lives, the attention fit's summary). With
    ``mempool``, also ``mempool``: ``{"har_x_mempool"[n, H], "covered"[n], "info"}``;
    its coverage is checked before any model fits (ValueError below the minimum).
    """
    config = config or DEFAULT
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    bars = read_bars(bars_path)
    n = len(bars)
    ckpt = None
    if checkpoint is not None:
        ckpt = load_checkpoint(checkpoint)
        if ckpt.spec.bar_ns != bars.bar_ns:
            raise CheckpointError(
                f"{checkpoint} was trained on {format_duration(ckpt.spec.bar_ns)} bars; "
                f"{bars.report.source if bars.report else 'this file'} has {format_duration(bars.bar_ns)} bars"
            )
        spec = ckpt.spec
    else:
        spec = model_spec(bars.bar_ns, window=config.window)
    horizons = spec.horizon_objs
    h_ns = [h.ns for h in horizons]
    h_bars = [h.ns // bars.bar_ns for h in horizons]
    n_fit = math.floor(train_fraction * n)
    if n_fit < 10 or n_fit >= n - max(h_bars):
        raise ValueError(f"train_fraction {train_fraction} leaves {n_fit} fit bars of {n}: nothing to fit or test")
    split_ts = int(bars.ts_ns[n_fit - 1])
    ts = bars.ts_ns
    targets = realized_targets(bars, h_ns)
    test = np.arange(n) >= n_fit - 1
    forecasts: dict[str, np.ndarray] = {}
    info: dict[str, Any] = {
        "split_utc": _iso(split_ts),
        "fit_bars": n_fit,
        "bars": n,
    }
    has_range = bool(bars.report.has_range) if bars.report else bool(np.isfinite(bars.high).any())
    if mempool is not None:
        # Checked first: a useless --mempool should fail in seconds, not after the fits.
        if not has_range:
            raise ValueError("the mempool ablation builds on HAR-X, which needs bars with high and low")
        exog = mempool_regressors(bars, mempool, spec.lag_objs[0].ns)
        covered = np.isfinite(exog[:, 0])
        coverage = _mempool_coverage(covered, test & np.isfinite(targets).all(axis=1))

    # Attention: trains on windows whose targets end inside the fit region.
    ds = dataset_from_bars(bars, spec)
    fit_ds = ds.subset(ds.ts_ns <= split_ts)
    fit_ds.y = np.where(fit_ds.ts_ns[:, None] + np.array(h_ns)[None, :] <= split_ts, fit_ds.y, np.nan).astype(
        np.float32
    )
    result = fit(fit_ds, config=config, seed=seed, init=ckpt, progress=progress)
    meta = ckpt.meta if ckpt is not None else _meta_stub(spec, config, result.base_channels, result.normalization)
    model = build_model(meta, result.params)
    graphdef, state = nnx.split(model)
    predict = jax.jit(predict_fn(graphdef))
    test_idx = np.flatnonzero(ds.ts_ns >= split_ts)
    mean, quant = predict_samples(predict, state, result.normalization, ds, test_idx)
    log_scale = ds.log_ref[test_idx][:, None] + np.log(np.array(h_bars, dtype=np.float64))[None, :]
    att = np.full((n, len(horizons)), np.nan)
    att_q = np.full((n, len(horizons), 3), np.nan)
    att[ds.bar[test_idx]] = np.exp(mean + log_scale)
    att_q[ds.bar[test_idx]] = quant + log_scale[:, :, None]
    forecasts["attention"] = att
    # Ablation: the same network with its attention correction removed (heads zeroed), i.e. its
    # linear HAR-X base with smearing; shows what the attention part adds on this file.
    base_only = jax.tree.map(np.array, result.params)
    for head in base_only["heads"].values():
        head["kernel"][...] = 0.0
        head["bias"][...] = 0.0
    _, base_state = nnx.split(build_model(meta, base_only))
    base_mean, _ = predict_samples(predict, base_state, result.normalization, ds, test_idx)
    forecasts["attention_base"] = np.full((n, len(horizons)), np.nan)
    forecasts["attention_base"][ds.bar[test_idx]] = np.exp(base_mean + log_scale)
    info["attention"] = {
        "fit": "fine-tuned from the checkpoint" if ckpt else "trained from its HAR-X initialization",
        "train_windows": result.n_train,
        "validation_windows": result.n_val,
        "validation": result.validation,
    }
    if ckpt is not None:
        info["attention"]["checkpoint"] = _checkpoint_overlap(ckpt, split_ts, int(ts[-1]))

    # HAR and HAR-X: daily refits on an expanding window from the split on.
    bars_per_day = max(DAY_NS // bars.bar_ns, 1)
    refit_har = refit_points(n_fit - 1, n, bars_per_day)
    lags_ns = [lag.ns for lag in spec.lag_objs]
    forecasts["har"], har_info = har_forecasts(bars, targets, h_ns, lags_ns, refit_har)
    if has_range:
        forecasts["har_x"], _ = har_forecasts(bars, targets, h_ns, lags_ns, refit_har, with_range=True)
    info["har"] = {
        "lags": list(spec.lags),
        "refit": f"every {format_duration(bars_per_day * bars.bar_ns)}, expanding window, OLS on ln RV",
        "refits": har_info["refits"],
        "har_x": "HAR plus ln Parkinson variance over the same lags" if has_range else "not run: no high/low",
    }

    # EWMA: half-life per horizon tuned on the fit region's forecasts.
    r = bar_returns(bars)
    x = r * r
    tune = (np.arange(n) < n_fit) & (ts + max(h_ns) <= split_ts) & (ts - ts[0] >= DAY_NS)
    if tune.sum() < 50:
        tune = (np.arange(n) < n_fit) & (ts + max(h_ns) <= split_ts)
    half_lives, _ = tune_ewma(x, targets, h_bars, tune)
    ewma = np.full((n, len(horizons)), np.nan)
    for j, hl in enumerate(half_lives):
        ewma[:, j] = ewma_step_variance(x, hl) * h_bars[j]
    forecasts["ewma"] = ewma
    info["ewma"] = {"half_life_bars": dict(zip(spec.horizons, half_lives)), "tuned_on": "the fit region"}

    # GARCH(1,1)-t and GJR-GARCH(1,1,1)-t.
    every = max(bars_per_day, math.ceil((n - n_fit) / GARCH_REFITS))
    refit_g = refit_points(n_fit - 1, n, every)
    for name, kind in (("garch", "garch"), ("gjr_garch", "gjr")):
        f, fits = rolling_forecasts(r, refit_g, tuple(h_bars), kind)  # type: ignore[arg-type]
        forecasts[name] = f
        last = fits[-1]
        info[name] = {
            "refit": f"every {format_duration(every * bars.bar_ns)} ({len(fits)} fits), expanding window",
            "last_fit": {"omega": last.omega, "alpha": last.alpha, "gamma": last.gamma, "beta": last.beta,
                         "nu": last.nu},
        }
    for name, f in forecasts.items():
        f[~test] = np.nan  # only origins after the fit region are forecasts to score
    mempool_table = None
    if mempool is not None:
        har_x_mempool, mem_info = har_forecasts(bars, targets, h_ns, lags_ns, refit_har, with_range=True, exog=exog)
        har_x_mempool[~test] = np.nan
        mempool_table = {
            "har_x_mempool": har_x_mempool,
            "covered": covered,
            "info": {"source": mempool.source, "coverage": coverage, "regressors": list(MEMPOOL_REGRESSORS),
                     "window": spec.lags[0], "refits_using_mempool": mem_info["exog_refits"],
                     "refits": mem_info["refits"]},
        }
    return {
        "ts_ns": ts,
        "targets": targets,
        "forecasts": forecasts,
        "attention_log_q": att_q,
        "test": test,
        "horizons": list(spec.horizons),
        "h_bars": h_bars,
        "bar_ns": bars.bar_ns,
        "report": bars.report,
        "info": info,
        "mempool": mempool_table,
    }


def mempool_ablation(
    targets: np.ndarray,
    har_x: np.ndarray,
    har_x_mempool: np.ndarray,
    origins: np.ndarray,
    horizons: list[str],
    h_bars: list[int],
) -> dict[str, Any]:
    """QLIKE of ``har_x`` and ``har_x_mempool`` on the same ``origins`` (a bool mask), and their DM test.

    Only origins where every target and both forecasts are positive and finite count.
    DM is ``har_x_mempool`` minus ``har_x`` on QLIKE with a Newey-West variance over
    ``2h`` lags (Diebold & Mariano 1995): ``stat`` < 0 means the mempool lowers QLIKE.
    ``qlike_gain`` is ``1 - QLIKE(har_x_mempool) / QLIKE(har_x)``.

    The models are nested and refit recursively, where DM is not standard normal under
    the null (Clark & McCracken 2001): with SYNTHETIC noise inputs the tests here see
    |stat| near 4 at gains of 0.1-0.4%, in both directions. A small p-value with a gain
    that small is no evidence of a gain.
    """
    ok = origins & np.isfinite(targets).all(axis=1) & (targets > 0).all(axis=1)
    for f in (har_x, har_x_mempool):
        ok &= np.isfinite(f).all(axis=1) & (f > 0).all(axis=1)
    n = int(ok.sum())
    if n < 10:
        raise ValueError(f"only {n} origins covered by mempool features have every target and forecast")
    losses = {
        name: np.column_stack([qlike(targets[ok, j], f[ok, j]) for j in range(len(horizons))])
        for name, f in (("har_x", har_x), ("har_x_mempool", har_x_mempool))
    }
    qlike_means = {name: {h: float(ql[:, j].mean()) for j, h in enumerate(horizons)} for name, ql in losses.items()}
    return {
        "n": n,
        "qlike": qlike_means,
        "qlike_gain": {h: 1.0 - qlike_means["har_x_mempool"][h] / qlike_means["har_x"][h] for h in horizons},
        "dm": {
            h: _dm(losses["har_x_mempool"][:, j], losses["har_x"][:, j], 2 * h_bars[j]) for j, h in enumerate(horizons)
        },
    }


def _checkpoint_overlap(ckpt: Any, split_ts: int, end_ts: int) -> dict[str, Any]:
    """Whether the checkpoint's training data overlaps this file's test period (then attention is in-sample)."""
    overlaps = []
    for src in ckpt.meta.training_data:
        first, last = src.get("first_ts_ns"), src.get("last_ts_ns")
        if first is not None and last is not None and first <= end_ts and last >= split_ts:
            overlaps.append(src.get("source"))
    return {
        "sha256": ckpt.sha256,
        "trained_on": [s.get("report") for s in ckpt.meta.training_data],
        "test_overlap": overlaps,
        "note": (
            "the checkpoint was trained on data from this test period: attention scores are in-sample"
            if overlaps
            else "no overlap between the checkpoint's training data and the test period"
        ),
    }


def _iso(ts_ns: int | np.integer) -> str:
    return dt.datetime.fromtimestamp(int(ts_ns) / 1e9, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def evaluate(
    bars_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    train_fraction: float = 0.3,
    plot_dir: str | os.PathLike[str] | None = None,
    *,
    config: TrainConfig | None = None,
    seed: int = 0,
    progress: bool = False,
    mempool: MempoolInput | None = None,
) -> dict[str, Any]:
    """Score every model on the same test origins of one bar file; see the module docstring.

    Returns
    -------
    dict
        ``{"horizons", "n_test", "models": {name: {"qlike", "mse_var", "mz_r2",
        "qlike_top_decile"}}, "dm_vs_har": {h: {"stat", "p"}},
        "coverage_q10_q90": {h: c}, "data", "protocol", "details"}``; per-horizon
        values are keyed by horizon label. ``plot_dir`` also writes
        ``forecast_vs_realized.png`` and ``qlike_by_regime.png``. With ``mempool``,
        also ``"mempool_ablation": {"n", "qlike": {"har_x", "har_x_mempool"},
        "dm": {h: {"stat", "p"}}, "coverage", "source", ...}`` on the scored origins
        that the mempool covers.
    """
    table = forecast_table(
        bars_path, checkpoint, train_fraction, config=config, seed=seed, progress=progress, mempool=mempool
    )
    horizons, targets, fc = table["horizons"], table["targets"], table["forecasts"]
    ok = table["test"] & np.isfinite(targets).all(axis=1) & (targets > 0).all(axis=1)
    for f in fc.values():
        ok &= np.isfinite(f).all(axis=1) & (f > 0).all(axis=1)
    n_test = int(ok.sum())
    if n_test < 10:
        raise ValueError(f"only {n_test} test origins have every target and forecast; the file is too short")
    out: dict[str, Any] = {"horizons": horizons, "n_test": n_test, "models": {}}
    losses: dict[str, np.ndarray] = {}
    for name, f in fc.items():
        m: dict[str, dict[str, float]] = {"qlike": {}, "mse_var": {}, "mz_r2": {}, "qlike_top_decile": {}}
        ql = np.column_stack([qlike(targets[ok, j], f[ok, j]) for j in range(len(horizons))])
        losses[name] = ql
        for j, h in enumerate(horizons):
            rv = targets[ok, j]
            top = rv >= np.quantile(rv, 0.9)
            m["qlike"][h] = float(ql[:, j].mean())
            m["mse_var"][h] = float(mse_var(rv, f[ok, j]).mean())
            m["mz_r2"][h] = _mz_r2(rv, f[ok, j])
            m["qlike_top_decile"][h] = float(ql[top, j].mean())
        out["models"][name] = m
    out["dm_vs_har"] = {
        h: _dm(losses["attention"][:, j], losses["har"][:, j], 2 * table["h_bars"][j]) for j, h in enumerate(horizons)
    }
    q = table["attention_log_q"]
    out["coverage_q10_q90"] = {
        h: float(
            np.mean((np.log(targets[ok, j]) >= q[ok, j, 0]) & (np.log(targets[ok, j]) <= q[ok, j, 2]))
        )
        for j, h in enumerate(horizons)
    }
    report = table["report"]
    out["data"] = {
        "file": report.source if report else str(bars_path),
        "sha256": report.sha256 if report else "",
        "summary": report.summary() if report else "",
        "bar": format_duration(table["bar_ns"]),
        "gaps": report.gap_examples if report else (),
        "repeated_rows": report.repeated_examples if report else (),
    }
    out["protocol"] = {
        "train_fraction": train_fraction,
        "split_utc": table["info"]["split_utc"],
        "first_test_utc": _iso(table["ts_ns"][ok][0]),
        "last_test_utc": _iso(table["ts_ns"][ok][-1]),
        "target": "sum of squared bar close-to-close log returns over (t, t+h], coverage-rescaled",
        "dm": "Diebold-Mariano on QLIKE, attention minus har, Newey-West over 2h lags; stat < 0: attention lower",
        "horizon_rule": "5m/15m/1h/4h when the bar divides them; else the first four of 1m,5m,15m,1h,4h,12h,1d,3d,"
        "7d,14d,28d that are multiples of the bar",
    }
    out["details"] = table["info"]
    if table["mempool"] is not None:
        mem = table["mempool"]
        out["mempool_ablation"] = {
            **mempool_ablation(targets, fc["har_x"], mem["har_x_mempool"], ok & mem["covered"], horizons,
                               table["h_bars"]),
            **mem["info"],
            "scored_on": "the scored test origins covered by the mempool (its arrivals mean present)",
            "dm_rule": "har_x_mempool minus har_x on QLIKE, Newey-West over 2h lags; stat < 0: mempool lower",
        }
    if plot_dir is not None:
        out["plots"] = _plots(table, ok, losses, os.fspath(plot_dir))
    return json_safe(out)  # type: ignore[no-any-return]


def _plots(table: dict[str, Any], ok: np.ndarray, losses: dict[str, np.ndarray], folder: str) -> list[str]:
    """Forecast-versus-realized and loss-by-volatility-regime PNGs (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    horizons, targets, fc = table["horizons"], table["targets"], table["forecasts"]
    ts = table["ts_ns"][ok].astype("datetime64[ns]")
    bar_ns = table["bar_ns"]
    shown = ("attention", "har", "ewma", "garch")
    fig, axes = plt.subplots(len(horizons), 1, figsize=(12, 2.6 * len(horizons)), sharex=True)
    for j, (h, ax) in enumerate(zip(horizons, np.atleast_1d(axes))):
        h_ns = table["h_bars"][j] * bar_ns

        def vol(v: np.ndarray, h_ns: int = h_ns) -> np.ndarray:
            return np.sqrt(v * (365 * DAY_NS) / h_ns)  # type: ignore[no-any-return]  # annualized, decimal
        ax.plot(ts, vol(targets[ok, j]), ".", ms=1.5, color="0.6", label="realized")
        for name in shown:
            ax.plot(ts, vol(fc[name][ok, j]), lw=0.8, label=name)
        ax.set_ylabel(f"{h} vol (ann.)")
        ax.set_yscale("log")
    np.atleast_1d(axes)[0].legend(loc="upper right", ncol=5, fontsize=8)
    fig.suptitle(f"{table['report'].source if table['report'] else ''}: forecast vs realized, test period")
    fig.tight_layout()
    p1 = os.path.join(folder, "forecast_vs_realized.png")
    fig.savefig(p1, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(horizons), figsize=(4 * len(horizons), 3.4))
    for j, (h, ax) in enumerate(zip(horizons, np.atleast_1d(axes))):
        rv = targets[ok, j]
        edges = np.quantile(rv, [0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0])
        bucket = np.clip(np.searchsorted(edges, rv, side="right") - 1, 0, len(edges) - 2)
        names = list(losses)
        width = 0.8 / len(names)
        for k, name in enumerate(names):
            means = [losses[name][bucket == b, j].mean() for b in range(len(edges) - 1)]
            ax.bar(np.arange(len(means)) + k * width, means, width, label=name)
        ax.set_xticks(np.arange(len(edges) - 1) + 0.4, ["0-20", "20-40", "40-60", "60-80", "80-90", "90-100"],
                      fontsize=7)
        ax.set_title(f"{h}: QLIKE by realized-vol percentile", fontsize=9)
        ax.set_yscale("log")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    p2 = os.path.join(folder, "qlike_by_regime.png")
    fig.savefig(p2, dpi=110)
    plt.close(fig)
    return [p1, p2]
