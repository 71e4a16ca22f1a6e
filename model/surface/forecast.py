"""Forecasts of the surface's ATM level and skew per tenor: a mean-reverting AR(1) baseline.

Until a checkpoint is trained with surface heads (it needs recordings that hold
option tickers over months), the ATM IV, RR and BF forecasts come from this
named baseline, ``method="ar1"`` (principle 7). Each series (ATM, RR25, BF25,
RR10, BF10 of each grid tenor) is sampled every ``sample_ns`` from the nowcasts
and follows

.. math:: x_{t+\\Delta} - \\mu = \\phi (x_t - \\mu) + \\varepsilon, \\qquad
          \\hat x_{t+h} = \\mu + \\phi^{h/\\Delta} (x_t - \\mu)

with ``mu`` and ``phi`` from exponentially weighted moments of consecutive
sample pairs (half-life ``halflife_samples``), ``phi`` clipped to [0, 1): implied
vol levels and skews mean-revert (Cont and da Fonseca 2002). A pair is formed
only from samples one interval apart, so a gap in the chain adds no false
persistence.

The forecast surface per horizon is rebuilt on the nowcast's tenor x delta grid
from the forecast ATM, RR and BF of each tenor, inverting the grid's own
definitions (:mod:`model.surface.grid`): ``RR = iv(C) - iv(P)``,
``BF = (iv(C) + iv(P)) / 2 - ATM`` give ``iv(C) = ATM + BF + RR/2`` and
``iv(P) = ATM + BF - RR/2`` exactly, for 25 and 10 delta.

>>> from model.horizons import Horizon
>>> f = SurfaceAR1((Horizon.parse("5m"),), sample_ns=10**9, min_pairs=3)
>>> flat = {"tenors_days": [30], "deltas": ["ATM"], "atm": {"30d": 0.5}, "rr25": {}, "bf25": {}}
>>> for k in range(6):
...     f.observe(k * 10**9, flat)
>>> f.forecast(5 * 10**9)["horizons"]["5m"]["atm"], f.forecast(5 * 10**9)["horizons"]["5m"]["iv"]
({'30d': 0.5}, [[0.5]])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from model.horizons import DEFAULT_HORIZONS, Horizon

METHOD = "ar1"
QUANTITIES = ("atm", "rr25", "bf25", "rr10", "bf10")


class _Series:
    """Exponentially weighted moments of (previous, current) sample pairs of one series."""

    __slots__ = ("last_k", "last", "w", "sx", "sy", "sxx", "sxy", "pairs")

    def __init__(self) -> None:
        self.last_k: int | None = None  # sample index of the last value
        self.last = math.nan
        self.w = self.sx = self.sy = self.sxx = self.sxy = 0.0
        self.pairs = 0

    def add(self, k: int, value: float, decay: float) -> None:
        if self.last_k is not None and k == self.last_k + 1:
            x, y = self.last, value
            self.w = decay * self.w + 1.0
            self.sx = decay * self.sx + x
            self.sy = decay * self.sy + y
            self.sxx = decay * self.sxx + x * x
            self.sxy = decay * self.sxy + x * y
            self.pairs += 1
        self.last_k, self.last = k, value

    def fit(self) -> tuple[float, float]:
        """(mu, phi): the OLS fit of ``y = a + phi x`` on the weighted pairs, ``mu = a / (1 - phi)``."""
        mx, my = self.sx / self.w, self.sy / self.w
        var = self.sxx / self.w - mx * mx
        if var <= 1e-14:  # a flat series: it stays where it is
            return self.last, 0.0
        phi = min(max((self.sxy / self.w - mx * my) / var, 0.0), 0.999999)
        mu = (my - phi * mx) / (1.0 - phi)
        return mu, phi


class SurfaceAR1:
    """AR(1) forecasts of every ATM/RR/BF series of one underlying's surface; picklable.

    Parameters
    ----------
    horizons : tuple of Horizon
        Forecast horizons.
    sample_ns : int
        Sampling interval of the series (the AR step).
    halflife_samples : float
        Half-life of the moment weights, in samples.
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
        self._grid: tuple[list[float], list[str]] = ([], [])  # tenors_days, deltas of the last nowcast
        self._last_k: int | None = None

    def observe(self, ts_ns: int, nowcast: Mapping[str, Any]) -> None:
        """Sample the nowcast block (``atm``/``rr25``/... by tenor label) if a new interval began."""
        k = ts_ns // self.sample_ns
        if self._last_k is not None and k <= self._last_k:
            return
        self._last_k = k
        self._grid = (list(nowcast.get("tenors_days", [])), list(nowcast.get("deltas", [])))
        for q in QUANTITIES:
            for tenor, value in nowcast.get(q, {}).items():
                if value is not None and math.isfinite(value):
                    self._series.setdefault((q, tenor), _Series()).add(k, float(value), self.decay)

    def forecast(self, ts_ns: int) -> dict[str, Any]:
        """Per horizon, the forecast ATM/RR/BF by tenor and the rebuilt tenor x delta surface.

        ``status`` is ``warming_up`` (with a ``reason``) until some series of the
        latest grid has ``min_pairs`` pairs; tenors still warming are left out.
        """
        tenors_days, deltas = self._grid
        labels = [f"{d:g}d" for d in tenors_days]
        ready = {
            key: s.fit() for key, s in self._series.items()
            if s.pairs >= self.min_pairs and key[1] in labels and s.last_k == self._last_k
        }
        out: dict[str, Any] = {"method": METHOD, "tenors_days": tenors_days, "deltas": deltas, "horizons": {}}
        if not any(q == "atm" for q, _ in ready):
            most = max((s.pairs for s in self._series.values()), default=0)
            out.update(status="warming_up", reason=(
                f"{METHOD} needs {self.min_pairs} consecutive samples {self.sample_ns / 1e9:g} s apart of a tenor's "
                f"ATM IV, has {most}"))
            return out
        out.update(status="ok", reason="")
        for h in self.horizons:
            steps = h.ns / self.sample_ns
            per_q: dict[str, dict[str, float]] = {q: {} for q in QUANTITIES}
            for (q, tenor), (mu, phi) in ready.items():
                x = self._series[(q, tenor)].last
                per_q[q][tenor] = mu + phi**steps * (x - mu)
            per_q["iv"] = _rebuild(labels, deltas, per_q)  # type: ignore[assignment]
            out["horizons"][h.name] = per_q
        return out


def _rebuild(labels: Sequence[str], deltas: Sequence[str], f: Mapping[str, Mapping[str, float]]) -> list[list]:
    """The tenor x delta IVs from ATM, RR and BF: ``iv(C) = ATM + BF + RR/2``, ``iv(P) = ATM + BF - RR/2``."""
    rows = []
    for tenor in labels:
        atm = f["atm"].get(tenor)
        row: list[float | None] = []
        for d in deltas:
            if atm is None:
                row.append(None)
            elif d == "ATM":
                row.append(atm)
            else:
                rr, bf = f[f"rr{d[:-1]}"].get(tenor), f[f"bf{d[:-1]}"].get(tenor)
                if rr is None or bf is None:
                    row.append(None)
                else:
                    row.append(atm + bf + (0.5 if d.endswith("C") else -0.5) * rr)
        rows.append(row)
    return rows
