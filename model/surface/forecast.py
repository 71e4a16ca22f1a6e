"""Forecasts of the surface's ATM level and skew per tenor: a mean-reverting AR(1) baseline.

Until a checkpoint is trained with surface heads (it needs recordings that hold
option tickers over months), the ATM IV, RR and BF forecasts come from this
named baseline, ``method="ar1"`` (principle 7). Each series (ATM, RR25, BF25,
RR10, BF10 of each grid tenor label) is sampled every ``sample_ns`` (``dt``): the
first nowcast in ``[k dt, (k+1) dt)`` is sample ``k``. A pair is formed only from
samples one interval apart, so a gap in the chain adds no false persistence.
Implied vol levels and skews mean-revert (Cont and da Fonseca 2002), so each
series follows a stationary AR(1):

.. math:: x_{k+1} - \\mu = \\phi (x_k - \\mu) + \\varepsilon_{k+1}, \\qquad
          \\hat x_{t+h} = \\mu + \\phi^{(t + h - t_x)/\\Delta} (x - \\mu)

where ``x`` is the series' latest nowcast value, made at ``t_x``; ``h`` steps of
length ``dt`` give ``phi^h`` (the AR(1) forecast function, Hamilton 1994, Time
Series Analysis, eq. 4.2.19), and a horizon that is not a whole number of
samples uses the same power, as the AR(1) sampled from an Ornstein-Uhlenbeck
process does.

Fit, online: exponentially weighted moments (half-life ``halflife_samples``) of
the sample pairs ``(x_k, x_{k+1})``; ``phi`` is their weighted least-squares slope,
corrected for its small-sample downward bias ``-(1 + 3 phi) / n`` (Kendall 1954;
Marriott and Pope 1954) with ``n`` the effective number of pairs
``(sum w)^2 / sum w^2``. The correction matters here because the forecast raises
``phi`` to hundreds of steps (a 4 h horizon of 5 s samples is 2,880): on 2,000
effective pairs a true 0.999 is estimated near 0.997, and ``0.997^2880`` is about
300 times smaller than ``0.999^2880``. ``mu`` is the weighted mean of the samples
(stabler than the intercept ``a / (1 - phi)`` when ``phi`` is near 1). ``phi`` is
clipped to ``[0, 1]``; at 1 (a unit root, or a flat series that shows no reversion)
the forecast is no change, the random-walk benchmark of surface forecasting
(research/models.md §2.2).

The forecast surface per horizon is rebuilt on the nowcast's tenor x delta grid
from each tenor's forecast ATM, RR and BF (:func:`rebuild_grid`), inverting the
grid's own definitions (:mod:`model.surface.grid`): ``RR = iv(C) - iv(P)`` and
``BF = (iv(C) + iv(P)) / 2 - ATM`` give ``iv(C) = ATM + BF + RR/2`` and
``iv(P) = ATM + BF - RR/2``, for 25 and 10 delta. The inversion is exact, so when
the forecast equals the nowcast (horizon 0, or ``phi = 1``) the rebuilt grid is
the nowcast's grid, to rounding.

>>> from model.horizons import Horizon
>>> f = SurfaceAR1((Horizon.parse("5m"),), sample_ns=10**9, min_pairs=3)
>>> flat = {"tenors_days": [30], "deltas": ["ATM"], "atm": {"30d": 0.5}, "rr25": {}, "bf25": {}}
>>> for k in range(6):
...     f.observe(k * 10**9, flat)
>>> fc = f.forecast_record(5 * 10**9)
>>> fc.status, fc.horizons["5m"].atm, fc.horizons["5m"].iv
('ok', {'30d': 0.5}, ((0.5,),))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from model.horizons import DEFAULT_HORIZONS, Horizon, format_duration
from model.jsonsafe import json_safe

METHOD = "ar1"
QUANTITIES: tuple[str, ...] = ("atm", "rr25", "bf25", "rr10", "bf10")
_FLAT_VARIANCE = 1e-14  # sample variance below which a series counts as flat (IV units squared)


class AR1Fit(msgspec.Struct, frozen=True, kw_only=True):
    """One series' fitted AR(1): mean, per-sample persistence (bias-corrected), pairs and effective pairs."""

    mu: float
    phi: float
    pairs: int
    effective_pairs: float


class AR1Estimator:
    """Exponentially weighted moments of consecutive sample pairs ``(x, y)`` of one series; picklable.

    >>> e = AR1Estimator(decay=1.0)
    >>> for x, y in [(1.0, 2.0), (2.0, 3.0), (3.0, 3.5), (3.5, 4.0)]:
    ...     e.add(x, y)
    >>> round(e.effective_pairs, 6), e.pairs
    (4.0, 4)
    """

    __slots__ = ("decay", "w", "w2", "sx", "sy", "sxx", "sxy", "pairs")

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.decay = decay
        self.w = self.w2 = self.sx = self.sy = self.sxx = self.sxy = 0.0
        self.pairs = 0

    @property
    def effective_pairs(self) -> float:
        """Kish's effective sample size of the weights, ``(sum w)^2 / sum w^2``."""
        return self.w * self.w / self.w2 if self.w2 > 0.0 else 0.0

    def add(self, x: float, y: float) -> None:
        """Add the pair (sample ``k``, sample ``k + 1``), discounting older pairs by ``decay``."""
        d = self.decay
        self.w = d * self.w + 1.0
        self.w2 = d * d * self.w2 + 1.0
        self.sx = d * self.sx + x
        self.sy = d * self.sy + y
        self.sxx = d * self.sxx + x * x
        self.sxy = d * self.sxy + x * y
        self.pairs += 1

    def fit(self) -> AR1Fit:
        """Weighted LS slope of ``y`` on ``x``, Kendall-corrected ``phi + (1 + 3 phi) / n``, clipped to [0, 1].

        >>> e = AR1Estimator(decay=1.0)
        >>> for _ in range(5):
        ...     e.add(0.4, 0.4)
        >>> e.fit().phi, e.fit().mu  # flat: no evidence of reversion, so no change
        (1.0, 0.4)
        """
        if self.pairs < 2:
            raise ValueError(f"an AR(1) fit needs at least 2 pairs, has {self.pairs}")
        mx, my = self.sx / self.w, self.sy / self.w
        var = self.sxx / self.w - mx * mx
        n = self.effective_pairs
        if var <= _FLAT_VARIANCE:
            return AR1Fit(mu=my, phi=1.0, pairs=self.pairs, effective_pairs=n)
        phi = (self.sxy / self.w - mx * my) / var
        phi += (1.0 + 3.0 * phi) / n  # Kendall (1954): E[phi_hat] - phi = -(1 + 3 phi) / n + O(n^-2)
        return AR1Fit(mu=my, phi=min(max(phi, 0.0), 1.0), pairs=self.pairs, effective_pairs=n)


class _Series:
    """One series: its pair moments, the last sample (index and value) and the latest nowcast value."""

    __slots__ = ("moments", "sample_k", "sample", "latest", "latest_ts_ns")

    def __init__(self, decay: float) -> None:
        self.moments = AR1Estimator(decay)
        self.sample_k: int | None = None
        self.sample = math.nan
        self.latest = math.nan
        self.latest_ts_ns = 0


class SurfaceHorizonForecast(msgspec.Struct, frozen=True, kw_only=True):
    """One horizon's forecast: ATM/RR/BF by tenor label (ready tenors only) and the rebuilt tenor x delta IVs.

    ``iv[i][j]`` is the forecast IV at ``tenors_days[i]`` and ``deltas[j]`` of the
    enclosing :class:`SurfaceForecast`; None where the tenor's ATM, or the
    delta's RR or BF, has no forecast.
    """

    atm: dict[str, float]
    rr25: dict[str, float]
    bf25: dict[str, float]
    rr10: dict[str, float]
    bf10: dict[str, float]
    iv: tuple[tuple[float | None, ...], ...]


class SurfaceForecast(msgspec.Struct, frozen=True, kw_only=True):
    """ATM IV, RR and BF forecasts per tenor at each horizon, on the latest nowcast's grid.

    ``horizons`` is empty while ``status`` is ``warming_up``; ``reason`` says what
    is missing then, and names tenors still warming up on an ``ok`` forecast.
    """

    method: str
    status: Literal["ok", "warming_up"]
    reason: str
    tenors_days: tuple[float, ...]
    deltas: tuple[str, ...]
    horizons: dict[str, SurfaceHorizonForecast]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (the record's ``surface_forecast`` block)."""
        return json_safe(msgspec.to_builtins(self))  # type: ignore[no-any-return]


def tenor_label(days: float) -> str:
    """The grid's tenor key: ``30 -> "30d"`` (as :func:`model.surface.grid.resample` writes it)."""
    return f"{days:g}d"


def rebuild_grid(
    labels: Sequence[str], deltas: Sequence[str], values: Mapping[str, Mapping[str, float]]
) -> tuple[tuple[float | None, ...], ...]:
    """Tenor x delta IVs from ATM, RR and BF per tenor: ``iv(C) = ATM + BF + RR/2``, ``iv(P) = ATM + BF - RR/2``.

    The inverse of the grid's ``RR = iv(C) - iv(P)``, ``BF = (iv(C) + iv(P))/2 - ATM``
    (FX convention; :mod:`model.surface.grid`). ``values[q][label]`` for ``q`` in
    ``atm, rr25, bf25, rr10, bf10``; a missing input gives None.

    >>> values = {"atm": {"30d": 0.5}, "rr25": {"30d": -0.04}, "bf25": {"30d": 0.01}}
    >>> rebuild_grid(["30d"], ["25P", "ATM", "25C"], values)
    ((0.53, 0.5, 0.49),)
    """
    rows = []
    for label in labels:
        atm = values.get("atm", {}).get(label)
        row: list[float | None] = []
        for d in deltas:
            if atm is None:
                row.append(None)
            elif d == "ATM":
                row.append(atm)
            else:
                rr = values.get(f"rr{d[:-1]}", {}).get(label)
                bf = values.get(f"bf{d[:-1]}", {}).get(label)
                if rr is None or bf is None:
                    row.append(None)
                else:
                    row.append(atm + bf + (0.5 if d.endswith("C") else -0.5) * rr)
        rows.append(tuple(row))
    return tuple(rows)


class SurfaceAR1:
    """AR(1) forecasts of every ATM/RR/BF series of one underlying's surface; picklable.

    Parameters
    ----------
    horizons : tuple of Horizon
        Forecast horizons.
    sample_ns : int
        Sampling interval ``dt`` of the series (the AR step).
    halflife_samples : float
        Half-life of the moment weights, in samples (720 of 5 s: one hour).
    min_pairs : int
        Consecutive sample pairs a series needs before it is forecast.
    """

    def __init__(
        self,
        horizons: Sequence[Horizon] = DEFAULT_HORIZONS,
        sample_ns: int = 5_000_000_000,
        halflife_samples: float = 720.0,
        min_pairs: int = 30,
    ) -> None:
        if sample_ns <= 0 or halflife_samples <= 0 or min_pairs < 2:
            raise ValueError("sample_ns and halflife_samples must be positive, min_pairs at least 2")
        self.horizons = tuple(horizons)
        self.sample_ns = sample_ns
        self.decay = 0.5 ** (1.0 / halflife_samples)
        self.min_pairs = min_pairs
        self._series: dict[tuple[str, str], _Series] = {}
        self._tenors_days: tuple[float, ...] = ()  # the latest nowcast's grid
        self._deltas: tuple[str, ...] = ()
        self._latest_ts_ns: int | None = None
        self._sample_k: int | None = None

    def observe(self, ts_ns: int, nowcast: Mapping[str, Any]) -> None:
        """Take a nowcast grid (:func:`model.surface.grid.resample`'s dict: ``atm``/``rr25``/... by tenor label).

        Every nowcast updates the latest values the forecasts start from; the
        first one of each sampling interval also extends the fitted series.
        Tenors missing from a nowcast are simply absent from it.
        """
        if self._latest_ts_ns is not None and ts_ns < self._latest_ts_ns:
            raise ValueError(f"nowcast at {ts_ns} is older than the last one observed ({self._latest_ts_ns})")
        k = ts_ns // self.sample_ns
        sampled = self._sample_k is None or k > self._sample_k
        self._latest_ts_ns = ts_ns
        if sampled:
            self._sample_k = k
        self._tenors_days = tuple(nowcast.get("tenors_days", ()))
        self._deltas = tuple(nowcast.get("deltas", ()))
        for q in QUANTITIES:
            for tenor, value in nowcast.get(q, {}).items():
                if value is None or not math.isfinite(value):
                    continue
                s = self._series.get((q, tenor))
                if s is None:
                    s = self._series[(q, tenor)] = _Series(self.decay)
                s.latest, s.latest_ts_ns = float(value), ts_ns
                if sampled:
                    if s.sample_k is not None and k == s.sample_k + 1:
                        s.moments.add(s.sample, float(value))
                    s.sample_k, s.sample = k, float(value)

    def fitted(self, quantity: str, tenor: str) -> AR1Fit | None:
        """The current fit of one series (``quantity`` in ``QUANTITIES``, ``tenor`` a label), None before 2 pairs."""
        s = self._series.get((quantity, tenor))
        return None if s is None or s.moments.pairs < 2 else s.moments.fit()

    def forecast_record(self, ts_ns: int) -> SurfaceForecast:
        """Per horizon, the forecast ATM/RR/BF by tenor and the rebuilt tenor x delta surface, as of ``ts_ns``.

        ``warming_up`` (with a reason) until some tenor of the latest nowcast has an
        ATM series with ``min_pairs`` pairs; tenors still warming up, or missing
        from the latest nowcast, are left out of an ``ok`` forecast.
        """
        labels = [tenor_label(d) for d in self._tenors_days]
        ready: dict[tuple[str, str], tuple[_Series, AR1Fit]] = {}
        for label in labels:
            for q in QUANTITIES:
                s = self._series.get((q, label))
                if s is not None and s.latest_ts_ns == self._latest_ts_ns and s.moments.pairs >= self.min_pairs:
                    ready[(q, label)] = (s, s.moments.fit())
        ready_tenors = [label for label in labels if ("atm", label) in ready]
        if not ready_tenors:
            most = max((s.moments.pairs for (q, _), s in self._series.items() if q == "atm"), default=0)
            why = (
                f"{METHOD} needs {self.min_pairs} consecutive samples {format_duration(self.sample_ns)} apart of "
                f"a tenor's ATM IV, has {most}"
            )
            return SurfaceForecast(method=METHOD, status="warming_up", reason=why, tenors_days=self._tenors_days,
                                   deltas=self._deltas, horizons={})
        waiting = [label for label in labels if label not in ready_tenors]
        reason = (
            f"{METHOD}: {', '.join(waiting)} warming up (fewer than {self.min_pairs} sample pairs)" if waiting else ""
        )
        horizons = {}
        for h in self.horizons:
            per_q: dict[str, dict[str, float]] = {q: {} for q in QUANTITIES}
            for (q, label), (s, fit) in ready.items():
                if label not in ready_tenors:
                    continue
                steps = max(ts_ns - s.latest_ts_ns + h.ns, 0) / self.sample_ns
                per_q[q][label] = s.latest if fit.phi >= 1.0 else fit.mu + fit.phi**steps * (s.latest - fit.mu)
            horizons[h.name] = SurfaceHorizonForecast(
                **per_q, iv=rebuild_grid(labels, self._deltas, per_q)
            )
        return SurfaceForecast(method=METHOD, status="ok", reason=reason, tenors_days=self._tenors_days,
                               deltas=self._deltas, horizons=horizons)

    def forecast(self, ts_ns: int) -> dict[str, Any]:
        """:meth:`forecast_record` as plain JSON types (what records and metrics carry)."""
        return self.forecast_record(ts_ns).to_json()
