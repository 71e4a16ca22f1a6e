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

from model.horizons import DAY_NS, MINUTE_NS, SECOND_NS, Horizon

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


class RealizedTargets(Generic[P]):
    """Payloads queued at sampled step ends, each handed back with the variance realized over ``(t, t + h]``.

    What online learners of a forecast's error need (the residual quantiles of
    :class:`model.baselines.garch_live.LiveGARCH`): a payload queued at ``t`` for
    horizon ``h`` comes back from :meth:`push` only once the step at ``t + h`` has
    been pushed, so nothing learned from it can reach a forecast made before
    ``t + h``. The realized variance is the sum of the observed step variances
    rescaled by coverage (``rv / coverage``, as the scorer builds its targets); a
    window with less than ``min_coverage`` of its steps observed, or no variance,
    is dropped and counted in ``unscorable``.

    Parameters
    ----------
    horizons : tuple of Horizon
        Horizons payloads may be queued for; multiples of ``sample_every_ns``.
    cadence_ns : int
        Step length of :meth:`push`; must divide one minute (the RV bucket).
    sample_every_ns : int
        Only step ends that are multiples of this are queued: consecutive
        forecasts of one window share almost all of it, so more add cost, not
        information.
    min_coverage : float
        Observed fraction of a target window needed to use it.

    >>> from model.horizons import Horizon
    >>> t = RealizedTargets((Horizon.parse("2s"),), cadence_ns=SECOND_NS, sample_every_ns=SECOND_NS)
    >>> t.push(SECOND_NS, 1e-8), t.add(SECOND_NS, "2s", "f1")
    ([], True)
    >>> t.push(2 * SECOND_NS, 1e-8)
    []
    >>> [(h, ts, p, round(rv, 12)) for h, ts, p, rv in t.push(3 * SECOND_NS, 3e-8)]
    [('2s', 1000000000, 'f1', 4e-08)]
    """

    def __init__(
        self,
        horizons: tuple[Horizon, ...],
        cadence_ns: int = SECOND_NS,
        sample_every_ns: int = MINUTE_NS,
        min_coverage: float = 0.8,
    ) -> None:
        if not horizons:
            raise ValueError("RealizedTargets needs at least one horizon")
        if sample_every_ns <= 0 or sample_every_ns % cadence_ns:
            raise ValueError(
                f"sample_every_ns ({sample_every_ns}) must be a positive multiple of cadence_ns ({cadence_ns})"
            )
        for h in horizons:
            if h.ns % sample_every_ns:
                raise ValueError(f"horizon {h.name} must be a multiple of sample_every_ns ({sample_every_ns})")
        if not 0.0 < min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
        self.horizons = {h.name: h for h in horizons}
        self.sample_every_ns = sample_every_ns
        self.min_coverage = min_coverage
        self.unscorable = 0
        longest = max(h.ns for h in horizons)
        # A target is read when it matures; an hour of margin covers a gap in the steps.
        self._history = RVHistory(cadence_ns, coarse_span_ns=max(-(-longest // MINUTE_NS) + 60, 15) * MINUTE_NS)
        self._pending: dict[str, MaturingQueue[P]] = {
            h.name: MaturingQueue(h.ns, maxlen=h.ns // sample_every_ns + 2) for h in horizons
        }

    def push(self, ts_ns: int, rv_step: float | None) -> list[tuple[str, int, P, float]]:
        """Record the step ending at ``ts_ns`` (None: unobserved); return the ``(horizon, t, payload, var)`` matured."""
        self._history.push(ts_ns, rv_step)
        out = []
        for name, h in self.horizons.items():
            for t, payload in self._pending[name].pop_matured(ts_ns):
                rv, coverage = self._history.trailing(h.ns, end_ns=t + h.ns)
                if coverage >= self.min_coverage and rv > 0.0:
                    out.append((name, t, payload, rv / coverage))
                else:
                    self.unscorable += 1
        return out

    def add(self, ts_ns: int, horizon: str, payload: P) -> bool:
        """Queue ``payload`` made at step end ``ts_ns`` for ``horizon`` if ``ts_ns`` is sampled; whether it was."""
        if ts_ns % self.sample_every_ns:
            return False
        self._pending[horizon].add(ts_ns, payload)
        return True

    def pending(self, horizon: str) -> int:
        """Queued payloads of ``horizon`` still waiting for their window to end."""
        return len(self._pending[horizon])
