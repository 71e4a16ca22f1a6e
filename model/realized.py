"""Realized-variance bookkeeping: trailing sums at two resolutions, and maturing targets.

Trailing RV over 5 minutes to a day, at a 1 s cadence, without a day of 1 s rows:
:class:`RVHistory` keeps a ring of per-step sums for the last ``fine_span_ns``
(exact) and a ring of per-bucket sums (one minute by default) for the last
``coarse_span_ns``. A window reaching past the fine ring takes whole buckets
from the coarse ring and pro-rates the oldest, partly covered bucket, so the error
is at most that one bucket (exact when the window starts on a bucket boundary).
A window ending before the fine ring (an old target) may pro-rate its newest
bucket too.

Variances are per horizon (sums of squared log returns); :func:`annualize` turns
one into an annualized vol on a 365-day, 24-hour year (ARCHITECTURE.md, units).

>>> h = RVHistory(cadence_ns=SECOND_NS)
>>> for k in range(1, 601):
...     h.push(k * SECOND_NS, 1e-8, present=k % 10 != 0)
>>> rv, coverage = h.trailing(300 * SECOND_NS)
>>> round(rv, 12), coverage
(2.7e-06, 0.9)
"""

from __future__ import annotations

import math
from collections import deque
from typing import Generic, TypeVar

import numpy as np

from model.horizons import DAY_NS, MINUTE_NS, SECOND_NS

YEAR_NS = 365 * DAY_NS

P = TypeVar("P")


def annualize(var: float, horizon_ns: int) -> float:
    """Annualized vol of a variance over ``horizon_ns``: sqrt(var * YEAR_NS / horizon_ns).

    >>> round(annualize(0.5**2 / 365, DAY_NS), 6)  # a 50% vol's one-day variance
    0.5
    """
    return math.sqrt(var * YEAR_NS / horizon_ns)


class RVHistory:
    """Trailing realized variance of one instrument from per-step RV.

    Parameters
    ----------
    cadence_ns : int
        Step length; pushed timestamps are step ends, multiples of it.
    fine_span_ns : int
        Span kept step by step; windows up to this long are exact.
    bucket_ns : int
        Coarse bucket length, a multiple of ``cadence_ns``.
    coarse_span_ns : int
        Span kept in coarse buckets; older steps count as absent.

    >>> RVHistory().trailing(60 * SECOND_NS)
    (0.0, 0.0)
    """

    def __init__(
        self,
        cadence_ns: int = SECOND_NS,
        fine_span_ns: int = 15 * MINUTE_NS,
        bucket_ns: int = MINUTE_NS,
        coarse_span_ns: int = 2 * DAY_NS,
    ) -> None:
        if cadence_ns <= 0 or bucket_ns % cadence_ns:
            raise ValueError(f"bucket_ns ({bucket_ns}) must be a positive multiple of cadence_ns ({cadence_ns})")
        if fine_span_ns % cadence_ns or fine_span_ns < bucket_ns:
            raise ValueError(f"fine_span_ns ({fine_span_ns}) must be a multiple of cadence_ns and at least bucket_ns")
        if coarse_span_ns % bucket_ns or coarse_span_ns < fine_span_ns:
            raise ValueError(
                f"coarse_span_ns ({coarse_span_ns}) must be a multiple of bucket_ns and at least fine_span_ns"
            )
        self.cadence_ns = cadence_ns
        self.bucket_ns = bucket_ns
        self.fine_span_ns = fine_span_ns
        self.coarse_span_ns = coarse_span_ns
        # Rings with rows (rv, observed steps) and one column per step k (fine) or
        # bucket j (coarse), modulo their length; rows keep the sums contiguous.
        # Skipped steps and buckets are zeroed on push, so every column in a
        # ring's span holds exactly its own step or bucket.
        self._fine = np.zeros((2, fine_span_ns // cadence_ns))
        self._coarse = np.zeros((2, coarse_span_ns // bucket_ns))
        self.first_ts_ns: int | None = None
        self.last_ts_ns: int | None = None

    def push(self, ts_ns: int, rv_step: float | None, present: bool = True) -> None:
        """Record the step ending at ``ts_ns``; ``present=False`` (or None) marks it unobserved."""
        if ts_ns % self.cadence_ns:
            raise ValueError(f"ts_ns {ts_ns} is not a step end (multiple of {self.cadence_ns})")
        if self.last_ts_ns is not None and ts_ns <= self.last_ts_ns:
            raise ValueError(f"ts_ns {ts_ns} is not after the last pushed step {self.last_ts_ns}")
        observed = present and rv_step is not None and math.isfinite(rv_step)
        row = (float(rv_step), 1.0) if observed else (0.0, 0.0)  # type: ignore[arg-type]
        k = ts_ns // self.cadence_ns
        j = -(-ts_ns // self.bucket_ns)  # bucket j holds steps ending in ((j-1)*bucket, j*bucket]
        if self.last_ts_ns is not None:
            _zero(self._fine, self.last_ts_ns // self.cadence_ns + 1, k)
            _zero(self._coarse, -(-self.last_ts_ns // self.bucket_ns) + 1, j + 1)
        self._fine[:, k % self._fine.shape[1]] = row
        self._coarse[:, j % self._coarse.shape[1]] += row
        if self.first_ts_ns is None:
            self.first_ts_ns = ts_ns
        self.last_ts_ns = ts_ns

    def span_ns(self, end_ns: int | None = None) -> int:
        """Time covered by pushed steps up to ``end_ns`` (default: the last push).

        >>> h = RVHistory(); h.push(5 * SECOND_NS, 0.0); h.push(9 * SECOND_NS, 0.0); h.span_ns()
        5000000000
        """
        if self.first_ts_ns is None:
            return 0
        end = self.last_ts_ns if end_ns is None else end_ns
        return max(end - self.first_ts_ns + self.cadence_ns, 0)  # type: ignore[operator]

    def trailing(self, window_ns: int, end_ns: int | None = None) -> tuple[float, float]:
        """Sum of observed step RV over ``(end - window, end]``, and the observed fraction of its steps.

        The sum is not rescaled for missing steps; ``rv / coverage`` estimates the
        full window's RV when coverage is high enough for the caller. Steps after
        the last push or older than ``coarse_span_ns`` count as unobserved.
        """
        if window_ns <= 0 or window_ns % self.cadence_ns:
            raise ValueError(f"window_ns ({window_ns}) must be a positive multiple of cadence_ns ({self.cadence_ns})")
        if self.last_ts_ns is None:
            return 0.0, 0.0
        end = self.last_ts_ns if end_ns is None else end_ns
        if end % self.cadence_ns:
            raise ValueError(f"end_ns {end} is not a step end (multiple of {self.cadence_ns})")
        lo = end - window_ns
        # The fine ring holds steps ending in (fine_lo, last]; hand it the part of
        # the window after the first bucket boundary at or after fine_lo, whose
        # earlier buckets are all complete.
        fine_lo = self.last_ts_ns - self.fine_span_ns
        split = -(-fine_lo // self.bucket_ns) * self.bucket_ns
        if lo >= fine_lo:
            total = self._fine_sum(lo, end)
        elif end <= split:
            total = self._coarse_sum(lo, end)
        else:
            total = self._fine_sum(split, end) + self._coarse_sum(lo, split)
        return float(total[0]), float(total[1]) / (window_ns // self.cadence_ns)

    def _fine_sum(self, lo: int, hi: int) -> np.ndarray:
        last = self.last_ts_ns
        assert last is not None
        return _ring_sum(self._fine, lo // self.cadence_ns + 1, min(hi, last) // self.cadence_ns + 1)

    def _coarse_sum(self, lo: int, hi: int) -> np.ndarray:
        b = self.bucket_ns
        last_j = -(-self.last_ts_ns // b)  # type: ignore[operator]
        n = self._coarse.shape[1]
        first = max(lo // b + 1, last_j - n + 1)
        final = min(-(-hi // b), last_j)
        if first > final:
            return np.zeros(2)

        def weight(j: int) -> float:
            # Overlap of bucket ((j-1)b, jb] with (lo, hi], as a fraction of b.
            return (min(j * b, hi) - max((j - 1) * b, lo)) / b

        total = weight(first) * self._coarse[:, first % n]
        if final > first:
            total = total + weight(final) * self._coarse[:, final % n]
            total = total + _ring_sum(self._coarse, first + 1, final)
        return total


def _ring_sum(ring: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Row sums over the columns for indices ``start <= i < stop`` (at most one ring length)."""
    n = ring.shape[1]
    if stop <= start:
        return np.zeros(ring.shape[0])
    a, b = start % n, stop % n
    if a < b:
        return ring[:, a:b].sum(axis=1)  # type: ignore[no-any-return]
    return ring[:, a:].sum(axis=1) + ring[:, :b].sum(axis=1)  # type: ignore[no-any-return]


def _zero(ring: np.ndarray, start: int, stop: int) -> None:
    """Zero the columns for indices ``start <= i < stop``: steps or buckets nothing was pushed to."""
    n = ring.shape[1]
    if stop - start >= n:
        ring[:] = 0.0
    elif stop > start:
        a, b = start % n, stop % n
        if a < b:
            ring[:, a:b] = 0.0
        else:
            ring[:, a:] = 0.0
            ring[:, :b] = 0.0


class MaturingQueue(Generic[P]):
    """Items stamped at ``t`` that mature when the clock reaches ``t + horizon``.

    A forecast (or regression features) made at ``t`` for horizon ``h`` is matched
    with the RV realised over ``(t, t + h]``, read from an :class:`RVHistory` once
    that window has passed. Bounded: the oldest items drop first past ``maxlen``.

    >>> q: MaturingQueue[str] = MaturingQueue(horizon_ns=2 * SECOND_NS, maxlen=10)
    >>> q.add(1 * SECOND_NS, "f1"); q.add(2 * SECOND_NS, "f2")
    >>> [t for t, _ in q.pop_matured(3 * SECOND_NS)]
    [1000000000]
    """

    def __init__(self, horizon_ns: int, maxlen: int) -> None:
        self.horizon_ns = horizon_ns
        self._items: deque[tuple[int, P]] = deque(maxlen=maxlen)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, ts_ns: int, payload: P) -> None:
        """Queue ``payload`` made at ``ts_ns`` (non-decreasing)."""
        self._items.append((ts_ns, payload))

    def pop_matured(self, now_ns: int) -> list[tuple[int, P]]:
        """Remove and return the items whose window ``(t, t + horizon]`` has ended by ``now_ns``."""
        out = []
        while self._items and self._items[0][0] + self.horizon_ns <= now_ns:
            out.append(self._items.popleft())
        return out
