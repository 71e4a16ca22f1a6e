"""OHLCV bars: reading bar CSVs honestly, and building bars from feature rows.

Bars are the model's unit of time (:mod:`model.nn.inputs`): a bar CSV and the
live 1 s :class:`~model.features.FeatureRow` stream both become :class:`Bars`,
so one code path turns either into model inputs (ARCHITECTURE.md principle 1).

Reading a CSV (:func:`read_bars`)
---------------------------------
* Header: the first line naming a time column and ``close``; lines before it are
  a preamble (CryptoDataDownload puts a comment there) and are reported.
  Time column, first match of ``timestamp, open_time, date, datetime, time,
  unix, ts`` (case and spaces ignored); ``open, high, low, volume`` optional.
  Volume is the column named ``volume`` if any, else the first ``volume*``.
* Times: epoch seconds, milliseconds, microseconds or nanoseconds (told apart by
  magnitude), ISO-8601 with or without a zone (naive means UTC), or
  CryptoDataDownload's ``YYYY-MM-DD HH-AM`` / ``HH-PM``.
* A bar's timestamp is its *open* time by default (Binance ``open_time``,
  CryptoDataDownload ``date``), so the bar is known at ``open + bar_ns``: that end
  time is what :attr:`Bars.ts_ns` holds. Pass ``stamp="close"`` for files
  stamped at the close.
* Either sort order. Duplicated timestamps keep the first row in file order;
  rows that do not parse or violate OHLC sanity (close <= 0, high < low) are
  dropped. Both are counted in :class:`BarReport`, as are gaps (missing bars),
  which are never filled: a missing bar is simply absent downstream.

>>> import io
>>> text = "ts,open,high,low,close,volume\\n120,1,2,1,2,5\\n0,1,1,1,1,5\\n0,1,1,1,1,5\\n"
>>> bars = read_bars(io.StringIO(text), bar_ns=60 * 10**9)
>>> bars.ts_ns.tolist(), bars.report.duplicates, bars.report.order, bars.report.missing_bars
([60000000000, 180000000000], 1, 'descending', 1)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
import os
import re
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple, TextIO

import msgspec
import numpy as np

from model.features import FeatureRow

TIME_COLUMNS = ("timestamp", "open_time", "date", "datetime", "time", "unix", "ts")
_CDD = re.compile(r"^(\d{4}-\d{2}-\d{2})[ T](\d{1,2})(?::(\d{2}))?-(AM|PM)$", re.IGNORECASE)
_MAX_EXAMPLES = 5


class BarReport(msgspec.Struct, frozen=True, kw_only=True):
    """What reading a bar file found: kept rows, order, cadence, and every irregularity."""

    source: str
    sha256: str
    rows_read: int
    bars: int
    time_column: str
    time_format: str  # "epoch_s", "epoch_ms", "epoch_us", "epoch_ns", "iso8601", "cryptodatadownload"
    stamp: str  # "open" or "close": what the file's timestamps mark
    order: str  # "ascending", "descending" or "unsorted"
    bar_ns: int
    first_utc: str
    last_utc: str
    preamble: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    duplicates: int = 0
    conflicting_duplicates: int = 0  # duplicates whose values differ from the kept row
    dropped: int = 0  # unparseable or insane rows
    drop_examples: tuple[str, ...] = ()
    gaps: int = 0  # places where at least one bar is missing
    missing_bars: int = 0
    largest_gap_bars: int = 0
    gap_examples: tuple[str, ...] = ()  # "from -> to (n missing)"
    misaligned: int = 0  # spacings that are not a whole number of bars
    repeated_values: int = 0  # bars whose OHLCV (volume > 0) equals an earlier bar's: copied rows under new times
    repeated_examples: tuple[str, ...] = ()
    has_range: bool = False  # high/low present and informative
    has_volume: bool = False

    def summary(self) -> str:
        """One line for logs and training summaries.

        >>> BarReport(source="f.csv", sha256="", rows_read=3, bars=3, time_column="ts", time_format="epoch_s",
        ...           stamp="open", order="ascending", bar_ns=60_000_000_000, first_utc="a", last_utc="b").summary()
        'f.csv: 3 bars of 1m, a .. b, ascending, 0 duplicates, 0 gaps (0 missing bars), 0 dropped, 0 repeated rows'
        """
        from model.horizons import format_duration

        return (
            f"{self.source}: {self.bars} bars of {format_duration(self.bar_ns)}, {self.first_utc} .. {self.last_utc}, "
            f"{self.order}, {self.duplicates} duplicates, {self.gaps} gaps ({self.missing_bars} missing bars), "
            f"{self.dropped} dropped, {self.repeated_values} repeated rows"
        )


class Bars:
    """Time-ordered bars of one instrument: ``ts_ns`` (bar *end*), OHLC and volume (NaN where absent).

    Parameters
    ----------
    ts_ns : array of int64
        Bar end times, strictly increasing multiples of nothing in particular.
    open, high, low, close, volume : arrays of float64
        ``close`` is required and positive; the others may be NaN.
    bar_ns : int
        The bar length.
    report : BarReport or None
        What reading found (None for bars built from rows).
    extra : dict of str to array
        Per-bar aggregates of book features, from :func:`bars_from_rows`.

    >>> b = Bars(np.array([60, 120]) * 10**9, close=np.array([1.0, 2.0]), bar_ns=60 * 10**9)
    >>> len(b), bool(np.isnan(b.high).all())
    (2, True)
    """

    def __init__(
        self,
        ts_ns: np.ndarray,
        *,
        close: np.ndarray,
        bar_ns: int,
        open: np.ndarray | None = None,
        high: np.ndarray | None = None,
        low: np.ndarray | None = None,
        volume: np.ndarray | None = None,
        report: BarReport | None = None,
        extra: dict[str, np.ndarray] | None = None,
    ) -> None:
        ts = np.asarray(ts_ns, dtype=np.int64)
        n = len(ts)
        if bar_ns <= 0:
            raise ValueError(f"bar_ns must be positive, got {bar_ns}")
        if n > 1 and not (np.diff(ts) > 0).all():
            raise ValueError("bar times must be strictly increasing")

        def col(a: np.ndarray | None) -> np.ndarray:
            out = np.full(n, np.nan) if a is None else np.asarray(a, dtype=np.float64)
            if out.shape != (n,):
                raise ValueError(f"a bar column has shape {out.shape}, expected ({n},)")
            return out

        self.ts_ns = ts
        self.close = col(close)
        self.open, self.high, self.low, self.volume = col(open), col(high), col(low), col(volume)
        self.bar_ns = int(bar_ns)
        self.report = report
        self.extra = {k: col(v) for k, v in (extra or {}).items()}

    def __len__(self) -> int:
        return len(self.ts_ns)

    def slice(self, start: int, stop: int) -> Bars:
        """Bars ``[start, stop)`` (the report is kept as-is)."""
        return Bars(
            self.ts_ns[start:stop],
            close=self.close[start:stop],
            bar_ns=self.bar_ns,
            open=self.open[start:stop],
            high=self.high[start:stop],
            low=self.low[start:stop],
            volume=self.volume[start:stop],
            report=self.report,
            extra={k: v[start:stop] for k, v in self.extra.items()},
        )


def _iso(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_times(texts: list[str]) -> tuple[np.ndarray, str]:
    """Nanoseconds UTC per text (INT64_MIN where unparseable) and the detected format."""
    bad = np.iinfo(np.int64).min
    out = np.full(len(texts), bad, dtype=np.int64)
    sample = next((t for t in texts if t), "")
    try:
        float(sample)
        numeric = True
    except ValueError:
        numeric = False
    if numeric:
        vals = np.array([_float_or_nan(t) for t in texts])
        mag = np.nanmedian(np.abs(vals)) if np.isfinite(vals).any() else 0.0
        # Seconds until year 5138, then ms, us, ns: the usual magnitudes are far apart.
        unit, scale = (
            ("epoch_s", 1e9) if mag < 1e11 else ("epoch_ms", 1e6) if mag < 1e14 else ("epoch_us", 1e3)
            if mag < 1e17 else ("epoch_ns", 1.0)
        )
        ok = np.isfinite(vals)
        if unit == "epoch_ns":
            out[ok] = [int(t) if t.lstrip("-").isdigit() else round(float(t)) for t, o in zip(texts, ok) if o]
        else:
            out[ok] = np.round(vals[ok] * scale).astype(np.int64)
        return out, unit
    fmt = "cryptodatadownload" if _CDD.match(sample.strip()) else "iso8601"
    for i, t in enumerate(texts):
        t = t.strip()
        try:
            if fmt == "cryptodatadownload":
                m = _CDD.match(t)
                if m is None:
                    continue
                hour = int(m.group(2)) % 12 + (12 if m.group(4).upper() == "PM" else 0)
                d = dt.datetime.fromisoformat(m.group(1)).replace(hour=hour, minute=int(m.group(3) or 0))
            else:
                d = dt.datetime.fromisoformat(t.replace("z", "Z"))
        except ValueError:
            continue
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.UTC)
        delta = d - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        out[i] = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
    return out, fmt


def _float_or_nan(t: str) -> float:
    try:
        return float(t)
    except ValueError:
        return math.nan


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().strip('"').lower())


def read_bars(
    source: str | os.PathLike[str] | TextIO,
    *,
    stamp: Literal["open", "close"] = "open",
    bar_ns: int | None = None,
) -> Bars:
    """Read an OHLCV CSV into ascending :class:`Bars`, reporting (never fixing) its irregularities.

    Parameters
    ----------
    source : path or text stream
    stamp : {"open", "close"}
        Whether the file's timestamps mark the bar's open (default) or close.
    bar_ns : int or None
        The bar length; None infers it as the most common spacing.

    Raises
    ------
    ValueError
        No header with a time column and ``close``, or fewer than two usable bars.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            raw = f.read()
        name = os.path.basename(os.fspath(source))
    else:
        raw = source.read().encode()
        name = getattr(source, "name", "<stream>")
    digest = hashlib.sha256(raw).hexdigest()
    lines = raw.decode("utf-8-sig", errors="replace").splitlines()
    header_at, columns = -1, []
    for i, line in enumerate(lines[:50]):
        cols = [_norm(c) for c in line.split(",")]
        if "close" in cols and any(c in cols for c in TIME_COLUMNS):
            header_at, columns = i, cols
            break
    if header_at < 0:
        raise ValueError(f"{name}: no header line naming a time column ({', '.join(TIME_COLUMNS)}) and 'close'")
    time_col = next(c for c in TIME_COLUMNS if c in columns)
    idx: dict[str, int] = {c: columns.index(c) for c in ("open", "high", "low", "close") if c in columns}
    vol_col = "volume" if "volume" in columns else next((c for c in columns if c.startswith("volume")), None)
    if vol_col is not None:
        idx["volume"] = columns.index(vol_col)
    t_i = columns.index(time_col)
    body = [ln for ln in lines[header_at + 1 :] if ln.strip()]
    fields = list(_rows(body))
    width = max(max(idx.values()), t_i) + 1
    times_txt = [f[t_i].strip().strip('"') if len(f) >= width else "" for f in fields]
    t_ns, fmt = _parse_times(times_txt)
    if stamp == "open":
        pass  # shifted by bar_ns below, once it is known
    elif stamp != "close":
        raise ValueError(f"stamp must be 'open' or 'close', got {stamp!r}")

    def column(key: str) -> np.ndarray:
        if key not in idx:
            return np.full(len(fields), np.nan)
        j = idx[key]
        return np.array([_float_or_nan(f[j]) if len(f) > j else math.nan for f in fields])

    o, h, lo, c, v = (column(k) for k in ("open", "high", "low", "close", "volume"))
    bad_time = t_ns == np.iinfo(np.int64).min
    insane = ~(c > 0) | (np.isfinite(h) & np.isfinite(lo) & (h < lo))
    insane |= np.isfinite(h) & np.isfinite(lo) & ((c > h * (1 + 1e-9)) | (c < lo * (1 - 1e-9)))
    drop = bad_time | insane
    drop_examples = tuple(body[i][:80] for i in np.flatnonzero(drop)[:_MAX_EXAMPLES])
    keep = np.flatnonzero(~drop)
    if len(keep) < 2:
        raise ValueError(f"{name}: fewer than two usable bars ({int(drop.sum())} of {len(fields)} rows dropped)")
    tk = t_ns[keep]
    d = np.diff(tk)
    order = "ascending" if (d >= 0).all() else "descending" if (d <= 0).all() else "unsorted"
    # Stable sort keeps file order among equal times, so "first in the file" wins.
    srt = keep[np.argsort(tk, kind="stable")]
    ts_sorted = t_ns[srt]
    first = np.ones(len(srt), dtype=bool)
    first[1:] = ts_sorted[1:] != ts_sorted[:-1]
    dup_rows = srt[~first]
    kept_for = srt[first][np.searchsorted(ts_sorted[first], t_ns[dup_rows])]
    vals = np.column_stack([o, h, lo, c, v])
    conflicting = int(
        (~np.isclose(vals[dup_rows], vals[kept_for], equal_nan=True).all(axis=1)).sum() if len(dup_rows) else 0
    )
    sel = srt[first]
    ts = t_ns[sel]
    spacing = np.diff(ts)
    if bar_ns is None:
        vals_, counts = np.unique(spacing, return_counts=True)
        bar_ns = int(vals_[int(np.argmax(counts))])
    if bar_ns <= 0:
        raise ValueError(f"{name}: could not infer a positive bar length")
    steps = spacing / bar_ns
    misaligned = int((spacing % bar_ns != 0).sum())
    gap_at = np.flatnonzero(steps > 1)
    missing = np.floor(steps[gap_at] - 1e-9).astype(np.int64)
    end_ts = ts + (bar_ns if stamp == "open" else 0)
    gap_examples = tuple(
        f"{_iso(int(end_ts[i]))} -> {_iso(int(end_ts[i + 1]))} ({int(m)} missing)"
        for i, m in zip(gap_at[:_MAX_EXAMPLES], missing[:_MAX_EXAMPLES])
    )
    ohlcv = np.column_stack([o[sel], h[sel], lo[sel], c[sel], v[sel]])
    seen: dict[bytes, int] = {}
    repeated: list[int] = []
    for i in np.flatnonzero(np.isfinite(ohlcv).all(axis=1) & (ohlcv[:, 4] > 0)).tolist():
        key = ohlcv[i].tobytes()
        if key in seen:
            repeated.append(i)
        else:
            seen[key] = i
    repeated_examples = tuple(
        f"{_iso(int(end_ts[i]))} repeats {_iso(int(end_ts[seen[ohlcv[i].tobytes()]]))}"
        for i in repeated[:_MAX_EXAMPLES]
    )
    high, low = h[sel], lo[sel]
    has_range = bool(np.isfinite(high).mean() > 0.5 and (high > low).mean() > 0.1)
    volume = v[sel]
    has_volume = bool(np.isfinite(volume).mean() > 0.5 and (volume > 0).mean() > 0.1)
    report = BarReport(
        source=name,
        sha256=digest,
        rows_read=len(fields),
        bars=len(sel),
        time_column=time_col,
        time_format=fmt,
        stamp=stamp,
        order=order,
        bar_ns=bar_ns,
        first_utc=_iso(int(end_ts[0])),
        last_utc=_iso(int(end_ts[-1])),
        preamble=tuple(lines[:header_at]),
        columns=tuple(columns),
        duplicates=len(dup_rows),
        conflicting_duplicates=conflicting,
        dropped=int(drop.sum()),
        drop_examples=drop_examples,
        gaps=len(gap_at),
        missing_bars=int(missing.sum()),
        largest_gap_bars=int(missing.max()) if len(missing) else 0,
        gap_examples=gap_examples,
        misaligned=misaligned,
        repeated_values=len(repeated),
        repeated_examples=repeated_examples,
        has_range=has_range,
        has_volume=has_volume,
    )
    return Bars(
        end_ts,
        open=o[sel],
        high=high if has_range else None,
        low=low if has_range else None,
        close=c[sel],
        volume=volume if has_volume else None,
        bar_ns=bar_ns,
        report=report,
    )


def _rows(lines: list[str]) -> Iterable[list[str]]:
    """CSV fields per line; quotes only matter when a line has them (rare in bar files)."""
    import csv

    for line in lines:
        if '"' in line:
            yield next(csv.reader(io.StringIO(line)))
        else:
            yield line.split(",")


# Book features aggregated per bar by bars_from_rows: (name, FeatureRow column, how).
BOOK_AGGREGATES: tuple[tuple[str, str, str], ...] = (
    ("spread_bps", "spread_bps", "mean"),
    ("imbalance_l1", "imbalance_l1", "mean"),
    ("ofi", "ofi", "mean"),
    ("trade_count", "trade_count", "sum"),
    ("signed_volume", "signed_volume", "sum"),
)


class BarAggregator:
    """Streaming aggregation of one instrument's feature rows into bars of ``bar_ns``.

    A bar covers rows stamped in ``(end - bar_ns, end]`` and is emitted by the row
    stamped ``end``. It exists when that row carries a ``mid`` (the close at the
    bar end) and at least ``min_coverage`` of its steps do; high and low are the
    extreme step-end mids (a lower bound of the true range), open the first,
    volume the sum of ``trade_volume`` (NaN when no step had the trade stream), and
    the book aggregates of ``BOOK_AGGREGATES`` go to ``extra`` (NaN where no step
    had them). Picklable.

    >>> agg = BarAggregator(bar_ns=2 * 10**9, cadence_ns=10**9)
    >>> agg.push(FeatureRow.from_dict("x:Y", 1 * 10**9, {"mid": 10.0}))
    []
    >>> [bar] = agg.push(FeatureRow.from_dict("x:Y", 2 * 10**9, {"mid": 12.0}))
    >>> bar.ts_ns, bar.open, bar.high, bar.close
    (2000000000, 10.0, 12.0, 12.0)
    """

    def __init__(self, bar_ns: int, cadence_ns: int = 1_000_000_000, min_coverage: float = 0.8) -> None:
        if cadence_ns <= 0 or bar_ns <= 0 or bar_ns % cadence_ns:
            raise ValueError(f"bar_ns ({bar_ns}) must be a positive multiple of the row cadence ({cadence_ns})")
        if not 0.0 < min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
        from model.features import INDEX

        self.bar_ns, self.cadence_ns, self.min_coverage = bar_ns, cadence_ns, min_coverage
        self._cols = [INDEX["mid"], INDEX["trade_volume"]] + [INDEX[c] for _, c, _ in BOOK_AGGREGATES]
        self._end: int | None = None
        self._acc: list[np.ndarray] = []  # values of the columns above, NaN where absent
        self._last_ts: int | None = None

    def push(self, row: FeatureRow) -> list[Bar]:
        """Add the next row (time order); return the bar it completes, if any."""
        if self._last_ts is not None and row.ts_ns <= self._last_ts:
            raise ValueError(f"rows must be in time order: {row.ts_ns} after {self._last_ts}")
        self._last_ts = row.ts_ns
        end = -(-row.ts_ns // self.bar_ns) * self.bar_ns
        if end != self._end:
            self._end, self._acc = end, []
        self._acc.append(np.where(row.present[self._cols], row.values[self._cols], np.nan).astype(np.float64))
        if row.ts_ns != end:
            return []
        acc = np.array(self._acc)
        self._acc = []
        mids = acc[:, 0][np.isfinite(acc[:, 0])]
        if not np.isfinite(acc[-1, 0]) or len(mids) < self.min_coverage * (self.bar_ns // self.cadence_ns):
            return []
        extra = []
        for k, (_, _, how) in enumerate(BOOK_AGGREGATES):
            xs = acc[:, 2 + k][np.isfinite(acc[:, 2 + k])]
            extra.append(math.nan if not len(xs) else float(xs.mean() if how == "mean" else xs.sum()))
        vols = acc[:, 1][np.isfinite(acc[:, 1])]
        return [
            Bar(
                end,
                float(mids[0]),
                float(mids.max()),
                float(mids.min()),
                float(mids[-1]),
                float(vols.sum()) if len(vols) else math.nan,
                tuple(extra),
            )
        ]


class Bar(NamedTuple):
    """One bar: end time, OHLC, volume (NaN: absent) and the ``BOOK_AGGREGATES`` values."""

    ts_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    extra: tuple[float, ...] = ()


def bars_from_rows(
    rows: Iterable[FeatureRow], bar_ns: int, *, cadence_ns: int = 1_000_000_000, min_coverage: float = 0.8
) -> Bars:
    """All complete bars of one instrument's rows, through :class:`BarAggregator`.

    >>> rows = [FeatureRow.from_dict("x:Y", t * 10**9, {"mid": 100.0 + t, "trade_volume": 1.0}) for t in range(1, 121)]
    >>> b = bars_from_rows(rows, 60 * 10**9)
    >>> b.ts_ns.tolist() == [60 * 10**9, 120 * 10**9], b.close.tolist(), b.high.tolist(), b.volume.tolist()
    (True, [160.0, 220.0], [160.0, 220.0], [60.0, 60.0])
    """
    agg = BarAggregator(bar_ns, cadence_ns, min_coverage)
    bars = [bar for row in rows for bar in agg.push(row)]
    cols: list[Any] = list(zip(*bars)) if bars else [[]] * 7
    extra = np.array(cols[6], dtype=np.float64).reshape(len(bars), len(BOOK_AGGREGATES))
    return Bars(
        np.array(cols[0], dtype=np.int64),
        open=np.array(cols[1], dtype=np.float64),
        high=np.array(cols[2], dtype=np.float64),
        low=np.array(cols[3], dtype=np.float64),
        close=np.array(cols[4], dtype=np.float64),
        volume=np.array(cols[5], dtype=np.float64),
        bar_ns=bar_ns,
        extra={name: extra[:, k] for k, (name, _, _) in enumerate(BOOK_AGGREGATES)},
    )
