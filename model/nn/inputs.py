"""Bar rows and windows: the attention model's inputs, built one bar at a time.

:class:`BarRows` turns bars (from a CSV, or aggregated from live feature rows by
:class:`model.bars.BarAggregator`) into model rows, one per bar, with the
channels of :func:`model.nn.spec.channel_table`. It is the only code that
computes them: offline datasets (:mod:`model.nn.dataset`), evaluation and the
live :class:`WindowBuilder` all call :meth:`BarRows.push` (principle 1).

Every channel is a log variance *relative to the reference level* ``ref``, the
per-bar variance over the reference lag (4h for 1-minute bars), or a unit-free
ratio, so a window looks the same for a quiet and a wild market. A channel
without its input (no high/low, no volume, no book, a lag whose history is not
there yet or covers less than ``min_coverage`` of its bars) is absent: mask
False, value 0. A row without ``ref`` cannot be normalized and is not a model
input (the forecaster is warming up).

.. math:: v_L = \\frac{1}{n_L c_L} \\sum_{k \\in (t-L, t]} r_k^2, \\qquad
          \\text{rv}_L = \\ln(v_L / \\text{ref} + 10^{-3})

with ``n_L`` the bars in ``L`` and ``c_L`` the observed fraction of them.

>>> import numpy as np
>>> from model.nn.spec import model_spec
>>> rows = BarRows(model_spec(3_600 * 10**9, window=4))
>>> out = [rows.push(k * 3_600 * 10**9, 100.0 * 1.01 ** (k % 2), 101.0, 99.0, 1.0) for k in range(1, 60)]
>>> out[0] is None, out[-1] is not None and bool(out[-1].mask[:2].all())
(True, True)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from model.bars import Bar, BarAggregator, Bars
from model.features import FeatureRow
from model.nn.spec import REFERENCE_LAG, ModelSpec
from model.windows import RollingWindow

_LN2x4 = 4.0 * math.log(2.0)
DAY_NS = 86_400 * 10**9


class ModelRow(NamedTuple):
    """One bar's channels ``values[C]`` (0 where absent), ``mask[C]``, and ``log_ref`` = ln(ref)."""

    ts_ns: int
    values: np.ndarray
    mask: np.ndarray
    log_ref: float


class _Ring:
    """Cumulative sums by bar index over the last ``size`` bars; missing bars add nothing."""

    def __init__(self, size: int, width: int) -> None:
        self.size = size
        self.cum = np.zeros((size, width))
        self.k: int | None = None  # index of the newest bar written
        self.start = 0  # index of the first bar since the last reset

    def advance(self, k: int, add: tuple[float, ...]) -> None:
        if self.k is None:
            self.cum[:] = 0.0
            self.start, self.k = k, k - 1
        last = self.cum[self.k % self.size].copy()
        for j in range(self.k + 1, min(k, self.k + self.size + 1)):  # skipped bars carry the sum
            self.cum[j % self.size] = last
        self.cum[k % self.size] = last + add
        self.k = k

    def trailing(self, n: int) -> list[float] | None:
        """Sums over the last ``n`` bars (None when the ring has not seen that many)."""
        assert self.k is not None
        if n >= self.size or self.k - n < self.start - 1:
            return None
        return (self.cum[self.k % self.size] - self.cum[(self.k - n) % self.size]).tolist()  # type: ignore[no-any-return]


class BarRows:
    """Streaming bar -> :class:`ModelRow` of one instrument; picklable.

    Parameters
    ----------
    spec : ModelSpec
        Bar length, lags and channels.
    min_coverage : float
        Observed fraction of a lag's bars needed to use it.

    >>> from model.nn.spec import model_spec
    >>> BarRows(model_spec(60 * 10**9)).spec.lags
    ('5m', '30m', '4h', '1d')
    """

    def __init__(self, spec: ModelSpec, min_coverage: float = 0.8) -> None:
        if not 0.0 < min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
        self.spec = spec
        self.min_coverage = min_coverage
        self.bar_ns = spec.bar_ns
        self._lag_bars = [lag.ns // spec.bar_ns for lag in spec.lag_objs]
        if any(lag.ns % spec.bar_ns for lag in spec.lag_objs):
            raise ValueError(f"lags {spec.lags} are not whole multiples of the bar ({spec.bar_ns} ns)")
        self._ref_bars = self._lag_bars[REFERENCE_LAG]
        self._index = {name: i for i, name in enumerate(spec.channels)}
        # Per lag: (bars, index of its rv channel or -1 for the reference, index of its range channel).
        self._lags = [
            (n, -1 if i == REFERENCE_LAG else self._index[f"rv_{lag.name}"], self._index[f"range_{lag.name}"])
            for i, (lag, n) in enumerate(zip(spec.lag_objs, self._lag_bars))
        ]
        # Columns: r2, r2 observed, park, park observed, volume, volume observed, log trades, trades observed.
        self._ring = _Ring(max(self._lag_bars) + 1, 8)
        self._prev: tuple[int, float] | None = None  # (bar index, close)

    def push(
        self,
        ts_ns: int,
        close: float,
        high: float = math.nan,
        low: float = math.nan,
        volume: float = math.nan,
        extra: tuple[float, ...] = (),
    ) -> ModelRow | None:
        """Consume the bar ending at ``ts_ns`` (a multiple of ``bar_ns``); its row, or None while warming up."""
        if ts_ns % self.bar_ns:
            raise ValueError(f"bar end {ts_ns} is not a multiple of the bar length {self.bar_ns}")
        k = ts_ns // self.bar_ns
        if self._ring.k is not None and k <= self._ring.k:
            raise ValueError(f"bar at {ts_ns} is not after the previous bar")
        r = math.nan
        if self._prev is not None and self._prev[0] == k - 1 and close > 0 and self._prev[1] > 0:
            r = math.log(close / self._prev[1])
        self._prev = (k, close)
        park = math.log(high / low) ** 2 / _LN2x4 if high >= low > 0 else math.nan
        trades = extra[3] if len(extra) > 3 else math.nan
        log_trades = math.log1p(trades) if trades >= 0 else math.nan
        has_r, has_park, has_trades = not math.isnan(r), not math.isnan(park), not math.isnan(log_trades)
        add = (
            r * r if has_r else 0.0,
            float(has_r),
            park if has_park else 0.0,
            float(has_park),
            volume if volume >= 0 else 0.0,
            float(volume >= 0),
            log_trades if has_trades else 0.0,
            float(has_trades),
        )
        ring = self._ring
        if ring.k is not None and k - ring.k > ring.size:  # a gap longer than the longest lag: start over
            ring.k = None
        ring.advance(k, add)
        ref_sums = ring.trailing(self._ref_bars)
        if ref_sums is None:
            return None
        ref = self._per_bar(ref_sums[0], ref_sums[1], self._ref_bars)
        if ref is None or ref <= 0.0:
            return None
        values = np.zeros(len(self.spec.channels), dtype=np.float32)
        mask = np.zeros(len(self.spec.channels), dtype=bool)
        out: dict[int, float] = {}
        ix = self._index
        if has_r:
            out[ix["ret"]] = max(-10.0, min(10.0, r / math.sqrt(ref)))
            out[ix["log_r2"]] = math.log(r * r / ref + 0.01)
        if has_park:
            out[ix["log_range"]] = math.log(park / ref + 0.01)
        for n, i_rv, i_range in self._lags:
            sums = ring.trailing(n)
            if sums is None:
                continue
            if i_rv >= 0:
                v = self._per_bar(sums[0], sums[1], n)
                if v is not None:
                    out[i_rv] = math.log(v / ref + 1e-3)
            p = self._per_bar(sums[2], sums[3], n)
            if p is not None:
                out[i_range] = math.log(p / ref + 1e-3)
        if volume >= 0:
            mean_v = self._per_bar(ref_sums[4], ref_sums[5], self._ref_bars)
            if mean_v:
                out[ix["log_volume"]] = math.log(volume / mean_v + 0.01)
        day = 2.0 * math.pi * (ts_ns % DAY_NS) / DAY_NS
        out[ix["tod_sin"]], out[ix["tod_cos"]] = math.sin(day), math.cos(day)
        if len(extra) >= 5:
            spread, imbalance, ofi, _, signed = extra[:5]
            if spread > 0:
                out[ix["log_spread"]] = math.log(spread)
            out[ix["imbalance_l1"]] = imbalance
            out[ix["ofi"]] = ofi
            if has_trades:
                mean_t = self._per_bar(ref_sums[6], ref_sums[7], self._ref_bars)
                if mean_t is not None:
                    out[ix["log_trades"]] = log_trades - mean_t
            if volume > 0:
                out[ix["signed_share"]] = signed / volume
        for i, value in out.items():
            if math.isfinite(value):
                values[i], mask[i] = value, True
        return ModelRow(ts_ns, values, mask, math.log(ref))

    def _per_bar(self, total: float, observed: float, n: int) -> float | None:
        """Mean per observed bar of a trailing sum (the coverage-rescaled sum / n), or None below ``min_coverage``."""
        if observed < self.min_coverage * n or observed <= 0:
            return None
        return float(total / observed)

    def push_bar(self, bar: Bar) -> ModelRow | None:
        """:meth:`push` for a :class:`model.bars.Bar`."""
        return self.push(bar.ts_ns, bar.close, bar.high, bar.low, bar.volume, bar.extra)


def rows_from_bars(bars: Bars, spec: ModelSpec) -> list[ModelRow | None]:
    """:meth:`BarRows.push` over every bar; one entry per bar (None while warming up).

    >>> from model.nn.spec import model_spec
    >>> b = Bars(np.arange(1, 4) * 60 * 10**9, close=np.array([1.0, 1.1, 1.0]), bar_ns=60 * 10**9)
    >>> rows_from_bars(b, model_spec(60 * 10**9))
    [None, None, None]
    """
    if bars.bar_ns != spec.bar_ns:
        raise ValueError(f"bars of {bars.bar_ns} ns cannot feed a model of {spec.bar_ns} ns bars")
    builder = BarRows(spec)
    extra_names = ("spread_bps", "imbalance_l1", "ofi", "trade_count", "signed_volume")
    extras = [bars.extra[n] for n in extra_names] if all(n in bars.extra for n in extra_names) else None
    out = []
    for i in range(len(bars)):
        extra = tuple(float(e[i]) for e in extras) if extras is not None else ()
        out.append(
            builder.push(
                int(bars.ts_ns[i]),
                float(bars.close[i]),
                float(bars.high[i]),
                float(bars.low[i]),
                float(bars.volume[i]),
                extra,
            )
        )
    return out


class Window(NamedTuple):
    """A model input: ``values[T, C]`` and ``mask[T, C]`` (oldest row first), ``log_ref`` of the last row."""

    instrument_id: str
    ts_ns: int
    values: np.ndarray
    mask: np.ndarray
    log_ref: float


class WindowBuilder:
    """Per-instrument live state: feature rows -> bars -> model rows -> windows (picklable).

    The per-instrument half of the attention forecaster (see
    :mod:`model.forecaster`): ``observe`` each feature row; when a row completes a
    bar and the window is ready, it returns the :class:`Window` to hand to
    :meth:`model.nn.infer.BatchedForecaster.forecast_batch`.

    >>> from model.nn.spec import model_spec
    >>> wb = WindowBuilder("binance:BTCUSDT", model_spec(60 * 10**9))
    >>> wb.observe(FeatureRow.from_dict("binance:BTCUSDT", 10**9, {"mid": 1.0})) is None, wb.reason
    (True, 'attention needs 4h of bars for its reference level, has 0 bars')
    """

    def __init__(self, instrument_id: str, spec: ModelSpec, cadence_ns: int = 1_000_000_000) -> None:
        self.instrument_id = instrument_id
        self.spec = spec
        self.aggregator = BarAggregator(spec.bar_ns, cadence_ns)
        self.rows = BarRows(spec)
        self.window = RollingWindow(spec.window, len(spec.channels), cadence_ns=spec.bar_ns)
        self._bars = 0
        self._log_ref: float | None = None
        self.reason = f"attention needs {spec.lags[REFERENCE_LAG]} of bars for its reference level, has 0 bars"

    def observe(self, row: FeatureRow) -> Window | None:
        """Consume the next feature row; a window when it completes a bar and the window is full."""
        for bar in self.aggregator.push(row):
            return self.push_bar(bar)
        return None

    def push_bar(self, bar: Bar) -> Window | None:
        """Consume a whole bar (bar files, tests); the window when ready."""
        self._bars += 1
        mrow = self.rows.push_bar(bar)
        if mrow is None:
            self.reason = (
                f"attention needs {self.spec.lags[REFERENCE_LAG]} of bars for its reference level, "
                f"has {self._bars} bars"
            )
            return None
        self.window.push(FeatureRow(self.instrument_id, mrow.ts_ns, mrow.values, mrow.mask, True))
        if self.window.filled < self.window.length:
            self.reason = f"attention needs a window of {self.window.length} bars, has {self.window.filled}"
            return None
        self.reason = ""
        values, mask = self.window.view()
        return Window(self.instrument_id, mrow.ts_ns, values, mask, mrow.log_ref)
