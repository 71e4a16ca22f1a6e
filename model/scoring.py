"""Online scoring: every forecast is scored once its horizon has elapsed (principle 7).

:class:`OnlineScorer` is fed, in time order, the per-step realized variance of
the forecast instrument (:meth:`OnlineScorer.observe`) and the forecasts made at
each step end (:meth:`OnlineScorer.add`), per method and horizon. A forecast
made at ``t`` for ``h`` is held in a :class:`model.realized.MaturingQueue`; when
the stream reaches ``t + h`` it is scored against the variance realized over
``(t, t + h]``, read from the scorer's own :class:`model.realized.RVHistory` and
rescaled by its coverage (``rv / coverage``, as the baselines build their
targets), provided at least ``min_coverage`` of its steps were observed.

Two scores per method and horizon, over a rolling window of matured forecasts:

* QLIKE (:func:`model.metrics.qlike`, on variances): the mean loss; lower is
  better, 0 is perfect. Patton (2011): it ranks variance forecasts correctly
  with a noisy proxy such as realized variance.
* q10-q90 coverage: the share of realized vols inside the forecast's own
  ``[q10, q90]`` band (annualized vols); 0.8 is calibrated. Only forecasts that
  carried quantiles count.

Forecasts are sampled every ``sample_every_ns`` (default 10 s) for scoring:
consecutive 1 s forecasts of a 5 m window share 299 of its 300 steps, so
scoring each adds cost and no information. The rolling window is kept as
``window_ns / bucket_ns`` buckets of sums (scoring time, default 24 one-hour
buckets), so the state is small, picklable (Bytewax snapshots it) and the
window is exact to one bucket.

>>> from model.horizons import Horizon, SECOND_NS
>>> from model.forecaster import HorizonForecast
>>> h = Horizon.parse("10s")
>>> s = OnlineScorer((h,), sample_every_ns=SECOND_NS)
>>> s.observe(1 * SECOND_NS, 1e-8)
>>> s.add(1 * SECOND_NS, "flat", HorizonForecast.from_var(h, 1e-7, "flat"))
>>> for k in range(2, 12):
...     s.observe(k * SECOND_NS, 1e-8)
>>> [(x.method, x.horizon, x.n, round(x.qlike, 12)) for x in s.summary()]
[('flat', '10s', 1, 0.0)]
"""

from __future__ import annotations

from collections import deque

import msgspec

from model.forecaster import HorizonForecast
from model.horizons import HOUR_NS, MINUTE_NS, SECOND_NS, Horizon
from model.metrics import qlike
from model.realized import MaturingQueue, RVHistory, annualize


class Score(msgspec.Struct, frozen=True, kw_only=True):
    """Rolling scores of one method at one horizon.

    ``n`` forecasts scored in the window and their mean ``qlike``; ``n_band`` of
    them had quantiles, ``coverage`` is the share of those whose realized vol fell
    inside ``[q10, q90]`` (None when ``n_band`` is 0). ``scored_total`` and
    ``unscorable_total`` count since start: matured forecasts scored, and matured
    forecasts whose window had too few observed steps or no variance.
    """

    method: str
    horizon: str
    n: int
    qlike: float | None
    n_band: int
    coverage: float | None
    scored_total: int
    unscorable_total: int


class _Rolling:
    """Bucketed sums for one (method, horizon): [bucket, sum qlike, n, n band, n inside]."""

    def __init__(self, n_buckets: int) -> None:
        self.buckets: deque[list[float]] = deque(maxlen=n_buckets)
        self.scored_total = 0
        self.unscorable_total = 0

    def add(self, bucket: int, loss: float, inside: bool | None) -> None:
        if not self.buckets or self.buckets[-1][0] != bucket:
            self.buckets.append([bucket, 0.0, 0, 0, 0])
        b = self.buckets[-1]
        b[1] += loss
        b[2] += 1
        if inside is not None:
            b[3] += 1
            b[4] += int(inside)
        self.scored_total += 1

    def sums(self, oldest_bucket: int) -> tuple[float, int, int, int]:
        """(sum of losses, scored, with a band, inside the band) over buckets from ``oldest_bucket`` on."""
        live = [b for b in self.buckets if b[0] >= oldest_bucket]
        return (
            sum(b[1] for b in live),
            int(sum(b[2] for b in live)),
            int(sum(b[3] for b in live)),
            int(sum(b[4] for b in live)),
        )


class OnlineScorer:
    """Scores matured forecasts of several methods against the stream's realized variance.

    Parameters
    ----------
    horizons : tuple of Horizon
        Horizons that may be scored; multiples of ``cadence_ns``.
    cadence_ns : int
        Step length of :meth:`observe`; must divide one minute.
    sample_every_ns : int
        Forecasts at step ends that are multiples of this are kept for scoring.
    window_ns, bucket_ns : int
        The rolling window of scoring times, kept in buckets of ``bucket_ns``.
    min_coverage : float
        Observed fraction of a target window needed to score a forecast.
    """

    def __init__(
        self,
        horizons: tuple[Horizon, ...],
        cadence_ns: int = SECOND_NS,
        sample_every_ns: int = 10 * SECOND_NS,
        window_ns: int = 24 * HOUR_NS,
        bucket_ns: int = HOUR_NS,
        min_coverage: float = 0.8,
    ) -> None:
        if not horizons:
            raise ValueError("OnlineScorer needs at least one horizon")
        for name, ns in [(h.name, h.ns) for h in horizons] + [("sample_every_ns", sample_every_ns)]:
            if ns <= 0 or ns % cadence_ns:
                raise ValueError(f"{name} ({ns} ns) must be a positive multiple of cadence_ns ({cadence_ns})")
        if window_ns < bucket_ns or window_ns % bucket_ns:
            raise ValueError(f"window_ns ({window_ns}) must be a positive multiple of bucket_ns ({bucket_ns})")
        if not 0.0 < min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
        self.horizons = {h.name: h for h in horizons}
        self.cadence_ns = cadence_ns
        self.sample_every_ns = sample_every_ns
        self.window_ns = window_ns
        self.bucket_ns = bucket_ns
        self.min_coverage = min_coverage
        longest = max(h.ns for h in horizons)
        # A target is read when it matures; an hour of margin covers a gap in the rows.
        self._history = RVHistory(cadence_ns, coarse_span_ns=max(-(-longest // MINUTE_NS) + 60, 15) * MINUTE_NS)
        # Per horizon: the sampled forecasts of each method, (method, var, q10, q90).
        self._pending: dict[str, MaturingQueue[list[tuple[str, float, float | None, float | None]]]] = {
            h.name: MaturingQueue(h.ns, maxlen=h.ns // sample_every_ns + 2) for h in horizons
        }
        # The entry list of the newest queued time per horizon, which later methods extend.
        self._newest: dict[str, tuple[int, list[tuple[str, float, float | None, float | None]]]] = {}
        self._rolling: dict[tuple[str, str], _Rolling] = {}
        self._n_buckets = window_ns // bucket_ns
        self._now_ns: int | None = None

    def observe(self, ts_ns: int, rv_step: float | None) -> None:
        """Push the step ending at ``ts_ns`` (None: unobserved) and score what matured by then."""
        self._history.push(ts_ns, rv_step)
        self._now_ns = ts_ns
        bucket = ts_ns // self.bucket_ns
        for name, h in self.horizons.items():
            for t, entries in self._pending[name].pop_matured(ts_ns):
                rv, coverage = self._history.trailing(h.ns, end_ns=t + h.ns)
                ok = coverage >= self.min_coverage and rv > 0.0
                realized_var = rv / coverage if ok else 0.0
                realized_vol = annualize(realized_var, h.ns) if ok else 0.0
                for method, var, q10, q90 in entries:
                    roll = self._roll(method, name)
                    if not ok:
                        roll.unscorable_total += 1
                        continue
                    inside = None if q10 is None or q90 is None else q10 <= realized_vol <= q90
                    roll.add(bucket, float(qlike(realized_var, var)), inside)

    def add(self, ts_ns: int, method: str, forecast: HorizonForecast) -> None:
        """Keep ``method``'s forecast made at step end ``ts_ns`` for scoring (if sampled and ``ok``).

        Call after :meth:`observe` of the same step; forecasts without a number are ignored.
        """
        h = forecast.horizon
        if h.name not in self.horizons or ts_ns % self.sample_every_ns:
            return
        if forecast.status != "ok" or forecast.var is None or not forecast.var > 0.0:
            return
        entry = (method, forecast.var, forecast.q10, forecast.q90)
        newest = self._newest.get(h.name)
        if newest is not None and newest[0] == ts_ns:
            newest[1].append(entry)
        else:
            entries = [entry]
            self._newest[h.name] = (ts_ns, entries)
            self._pending[h.name].add(ts_ns, entries)

    def _roll(self, method: str, horizon: str) -> _Rolling:
        key = (method, horizon)
        roll = self._rolling.get(key)
        if roll is None:
            roll = self._rolling[key] = _Rolling(self._n_buckets)
        return roll

    def summary(self) -> list[Score]:
        """The rolling scores of every (method, horizon) that has matured forecasts, sorted."""
        if self._now_ns is None:
            return []
        oldest = self._now_ns // self.bucket_ns - self._n_buckets + 1
        out = []
        for (method, horizon), roll in sorted(self._rolling.items()):
            q, n, nb, ni = roll.sums(oldest)
            out.append(
                Score(
                    method=method,
                    horizon=horizon,
                    n=n,
                    qlike=q / n if n else None,
                    n_band=nb,
                    coverage=ni / nb if nb else None,
                    scored_total=roll.scored_total,
                    unscorable_total=roll.unscorable_total,
                )
            )
        return out

    def realized_vol(self, horizon: str, end_ns: int | None = None) -> float | None:
        """Annualized vol realized over the ``horizon`` ending at ``end_ns`` (default: the last step).

        None while fewer than ``min_coverage`` of its steps were observed or it had no variance.
        """
        h = self.horizons[horizon]
        rv, coverage = self._history.trailing(h.ns, end_ns=end_ns)
        if coverage < self.min_coverage or not rv > 0.0:
            return None
        return annualize(rv / coverage, h.ns)

    def pending(self, horizon: str) -> int:
        """Sampled forecast times waiting for ``horizon`` to elapse."""
        return len(self._pending[horizon])

