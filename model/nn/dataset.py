"""Datasets of windows and realized-variance targets, from bar files or feature-row recordings.

Both entry points go through the one feature path: :func:`dataset_from_bars`
runs :class:`model.nn.inputs.BarRows` over the bars; :func:`dataset_from_rows`
first aggregates a recording's feature rows into bars with
:class:`model.bars.BarAggregator`, exactly as :class:`model.nn.inputs.WindowBuilder`
does live.

Rows sit on a grid, one per bar slot; a missing bar or a row still warming up
is an all-absent grid row, so a window's position is time (as
:class:`model.windows.RollingWindow` does live). A sample is a grid position
whose row exists once the window has seen ``window`` slots since the first
row: its window is ``grid[end - T + 1 : end + 1]``.

Targets, per horizon ``h`` of ``H`` bars, from the same bars:

.. math:: RV_{t,h} = \\frac{1}{c} \\sum_{k \\in (t, t+h]} r_k^2, \\qquad
          y_{t,h} = \\ln(RV_{t,h} / H) - \\ln \\text{ref}_t

``r_k`` the bar close-to-close log return, ``c`` the observed fraction of the
``H`` returns (the target is absent below 0.8, or when ``RV`` is 0).

>>> from model.nn.spec import model_spec
>>> rng = np.random.default_rng(0)
>>> n = 400
>>> bars = Bars(np.arange(1, n + 1) * 3_600 * 10**9, close=100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))),
...             bar_ns=3_600 * 10**9)
>>> ds = dataset_from_bars(bars, model_spec(3_600 * 10**9, window=8))
>>> ds.n, ds.y.shape, bool(np.isfinite(ds.y[:-24]).all())
(346, (346, 4), True)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from model.bars import Bars, bars_from_rows, read_bars
from model.features import FeatureRow
from model.nn.inputs import ModelRow, rows_from_bars
from model.nn.spec import ModelSpec, model_spec

MIN_TARGET_COVERAGE = 0.8


@dataclasses.dataclass
class Dataset:
    """Grid rows and samples of one or more sources (sources never share a window).

    ``values``/``mask``: ``[G, C]`` grid rows; per sample ``n``: ``ends`` (grid
    index of the window's last row), ``ts_ns``, ``log_ref``, ``y[n, H]``
    (relative log targets, NaN where absent), ``rv[n, H]`` (realized variance,
    NaN where absent), ``source[n]`` (index into ``sources``) and ``bar[n]``
    (index of the sample's bar within its source).
    """

    spec: ModelSpec
    values: np.ndarray
    mask: np.ndarray
    ends: np.ndarray
    ts_ns: np.ndarray
    log_ref: np.ndarray
    y: np.ndarray
    rv: np.ndarray
    source: np.ndarray
    bar: np.ndarray
    sources: list[dict[str, Any]]

    @property
    def n(self) -> int:
        return len(self.ends)

    def windows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(values[B, T, C], mask[B, T, C])`` of samples ``idx``."""
        offs = np.arange(-self.spec.window + 1, 1)
        grid = self.ends[np.asarray(idx)][:, None] + offs
        return self.values[grid], self.mask[grid]

    def subset(self, keep: np.ndarray) -> Dataset:
        """The samples where ``keep`` (a bool mask or indices) holds; the grid is shared."""
        return dataclasses.replace(
            self,
            ends=self.ends[keep],
            ts_ns=self.ts_ns[keep],
            log_ref=self.log_ref[keep],
            y=self.y[keep],
            rv=self.rv[keep],
            source=self.source[keep],
            bar=self.bar[keep],
        )


def realized_targets(bars: Bars, horizons_ns: Sequence[int]) -> np.ndarray:
    """``rv[n_bars, H]``: coverage-rescaled sum of squared bar returns over ``(t, t + h]`` (NaN where absent).

    >>> b = Bars(np.arange(1, 5) * 10, close=np.exp(np.array([0.0, 0.1, 0.3, 0.6])), bar_ns=10)
    >>> realized_targets(b, [10, 20]).round(4).tolist()
    [[0.01, 0.05], [0.04, 0.13], [0.09, nan], [nan, nan]]
    """
    ts = bars.ts_ns
    r = np.full(len(bars), np.nan)
    if len(bars) > 1:
        contiguous = np.diff(ts) == bars.bar_ns
        r[1:] = np.where(contiguous, np.diff(np.log(bars.close)), np.nan)
    r2 = np.where(np.isfinite(r), r * r, 0.0)
    cs = np.concatenate([[0.0], np.cumsum(r2)])
    cn = np.concatenate([[0.0], np.cumsum(np.isfinite(r))])
    out = np.full((len(bars), len(horizons_ns)), np.nan)
    idx = np.arange(len(bars))
    for j, h in enumerate(horizons_ns):
        n_h = h // bars.bar_ns
        last = np.searchsorted(ts, ts + h, side="right") - 1  # the last bar inside (t, t + h]
        complete = ts[-1] >= ts + h  # the data reaches the horizon's end
        total, observed = cs[last + 1] - cs[idx + 1], cn[last + 1] - cn[idx + 1]
        ok = complete & (observed >= MIN_TARGET_COVERAGE * n_h) & (total > 0)
        out[ok, j] = total[ok] * n_h / observed[ok]
    return out


def dataset_from_bars(
    bars: Bars | str | os.PathLike[str],
    spec: ModelSpec | None = None,
    *,
    window: int = 16,
    rows: list[ModelRow | None] | None = None,
) -> Dataset:
    """Samples of one bar series (or bar CSV path) under ``spec`` (default: :func:`model_spec` of its bar length)."""
    if not isinstance(bars, Bars):
        bars = read_bars(bars)
    if spec is None:
        spec = model_spec(bars.bar_ns, window=window)
    if rows is None:
        rows = rows_from_bars(bars, spec)
    T, C = spec.window, len(spec.channels)
    # Grid positions: a gap of more than T bars is compressed to T absent rows.
    pos = np.zeros(len(bars), dtype=np.int64)
    if len(bars) > 1:
        steps = np.diff(bars.ts_ns) // spec.bar_ns
        pos[1:] = np.cumsum(np.minimum(steps, T + 1))
    g = int(pos[-1]) + 1 if len(bars) else 0
    values = np.zeros((g, C), dtype=np.float32)
    mask = np.zeros((g, C), dtype=bool)
    valid = np.array([row is not None for row in rows], dtype=bool)
    log_ref = np.full(len(bars), np.nan)
    for i in np.flatnonzero(valid):
        row = rows[i]
        assert row is not None
        values[pos[i]], mask[pos[i]], log_ref[i] = row.values, row.mask, row.log_ref
    if valid.any():
        first = pos[np.argmax(valid)]
        valid &= pos - first >= T - 1
    horizons = spec.horizon_objs
    rv = realized_targets(bars, [h.ns for h in horizons])
    h_bars = np.array([h.ns // spec.bar_ns for h in horizons], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(rv / h_bars) - log_ref[:, None]
    sel = np.flatnonzero(valid)
    report = bars.report
    summary: dict[str, Any] = {
        "source": report.source if report else "rows",
        "sha256": report.sha256 if report else "",
        "bars": len(bars),
        "bar_ns": bars.bar_ns,
        "first_ts_ns": int(bars.ts_ns[0]) if len(bars) else None,
        "last_ts_ns": int(bars.ts_ns[-1]) if len(bars) else None,
        "samples": len(sel),
        "report": report.summary() if report else f"{len(bars)} bars aggregated from feature rows",
        "gaps": report.gaps if report else None,
        "missing_bars": report.missing_bars if report else None,
        "duplicates": report.duplicates if report else None,
        "channels_present": {
            name: float(mask[pos[sel], j].mean()) if len(sel) else 0.0 for j, name in enumerate(spec.channels)
        },
    }
    return Dataset(
        spec=spec,
        values=values,
        mask=mask,
        ends=pos[sel],
        ts_ns=bars.ts_ns[sel],
        log_ref=log_ref[sel],
        y=y[sel].astype(np.float32),
        rv=rv[sel],
        source=np.zeros(len(sel), dtype=np.int64),
        bar=sel.astype(np.int64),
        sources=[summary],
    )


def dataset_from_rows(
    rows: Iterable[FeatureRow],
    spec: ModelSpec | None = None,
    *,
    bar_ns: int = 60_000_000_000,
    cadence_ns: int = 1_000_000_000,
    window: int = 16,
) -> Dataset:
    """Samples from one instrument's feature rows (a recording through :class:`model.features.FeatureBuilder`).

    The rows are aggregated into bars of ``spec.bar_ns`` (or ``bar_ns``) as the
    live :class:`model.nn.inputs.WindowBuilder` does, then treated as a bar file.
    """
    bar_ns = spec.bar_ns if spec is not None else bar_ns
    bars = bars_from_rows(rows, bar_ns, cadence_ns=cadence_ns)
    if len(bars) == 0:
        raise ValueError("the rows make no complete bar")
    ds = dataset_from_bars(bars, spec, window=window)
    ds.sources[0]["source"] = "feature rows"
    return ds


def concat(datasets: Sequence[Dataset]) -> Dataset:
    """One dataset of several sources with the same spec; windows never cross sources.

    >>> from model.nn.spec import model_spec
    >>> ds = concat([])
    Traceback (most recent call last):
    ...
    ValueError: nothing to concatenate
    """
    if not datasets:
        raise ValueError("nothing to concatenate")
    spec = datasets[0].spec
    for d in datasets[1:]:
        d.spec.check_compatible(spec)
    T = spec.window
    parts_v, parts_m, ends, offset = [], [], [], 0
    for d in datasets:
        pad = np.zeros((T, d.values.shape[1]), dtype=d.values.dtype)
        parts_v += [d.values, pad]
        parts_m += [d.mask, np.zeros_like(pad, dtype=bool)]
        ends.append(d.ends + offset)
        offset += len(d.values) + T
    source_offsets = np.cumsum([0] + [len(d.sources) for d in datasets[:-1]])
    return Dataset(
        spec=spec,
        values=np.concatenate(parts_v),
        mask=np.concatenate(parts_m),
        ends=np.concatenate(ends),
        ts_ns=np.concatenate([d.ts_ns for d in datasets]),
        log_ref=np.concatenate([d.log_ref for d in datasets]),
        y=np.concatenate([d.y for d in datasets]),
        rv=np.concatenate([d.rv for d in datasets]),
        source=np.concatenate([d.source + o for d, o in zip(datasets, source_offsets)]),
        bar=np.concatenate([d.bar for d in datasets]),
        sources=[s for d in datasets for s in d.sources],
    )
