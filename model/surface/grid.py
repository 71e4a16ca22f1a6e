"""The fitted surface on a fixed tenor x delta grid; ATM term structure; risk reversals and butterflies.

Conventions (also in docs/surface.md):

- **Tenors** 1d, 7d, 14d, 30d, 60d, 90d, 180d (365-day year), each only where the
  chain reaches: between its first and last fitted expiry. In between, total
  variance is linear in time at fixed log-forward-moneyness ``k``,
  ``w(k, T) = (1 - x) w(k, T1) + x w(k, T2)``, which keeps the calendar order; the
  tenor's forward is interpolated log-linearly in time.
- **Delta** is the forward Black-76 delta, *not* premium-adjusted: ``N(d1)`` for a
  call and ``N(d1) - 1`` for a put, ``d1 = -k/sqrt(w) + sqrt(w)/2``. This is the delta
  Deribit publishes in its tickers for its coin-settled options (checked in the
  tests). A premium-adjusted delta (``e^k N(d2)`` for a call) puts the 25-delta call
  slightly further out of the money; it is not used.
- **ATM** is forward ATM, ``k = 0`` (strike = forward), not the delta-neutral straddle.
- ``25C`` is the strike with call delta 0.25, ``25P`` the one with put delta -0.25
  (likewise 10). Each is found by bisection on ``k``: ``d1(k)`` decreases in ``k`` on a
  butterfly-free smile (Fukasawa 2012), so the root is unique.
- ``RR25 = iv(25C) - iv(25P)``, ``BF25 = (iv(25C) + iv(25P)) / 2 - iv(ATM)``; same for 10.

>>> from model.surface.smile import Smile
>>> from model.surface.svi import SVIParams
>>> flat = Smile(svi=SVIParams(a=0.04, b=0.0, rho=0.0, m=0.0, sigma=0.1))
>>> g = resample([(0.1, 100.0, flat), (0.3, 100.0, flat)], tenors_days=(30, 60, 90))
>>> g["tenors_days"], [round(x, 6) for x in g["atm"].values()]
([60, 90], [0.493288, 0.402768])
>>> [round(x, 12) for x in g["rr25"].values()]
[0.0, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from model.surface.black import ndtri
from model.surface.smile import Smile

__all__ = ["TENORS_DAYS", "DELTAS", "resample", "d1_targets"]

TENORS_DAYS: tuple[int, ...] = (1, 7, 14, 30, 60, 90, 180)
DELTAS: tuple[str, ...] = ("10P", "25P", "ATM", "25C", "10C")
_YEAR_DAYS = 365.0
_K_BRACKET = 5.0  # |k| searched for a delta strike (strikes 0.7% to 150x the forward)


def d1_targets(deltas: Sequence[str] = DELTAS) -> dict[str, float]:
    """``d1`` at each named delta: a call delta ``D`` has ``N(d1) = D``, a put delta ``-D`` has ``N(d1) = 1 - D``.

    >>> {k: round(v, 4) for k, v in d1_targets(("25P", "25C")).items()}
    {'25P': 0.6745, '25C': -0.6745}
    """
    out = {}
    for name in deltas:
        if name == "ATM":
            continue
        d = int(name[:-1]) / 100.0
        out[name] = float(ndtri(1.0 - d) if name.endswith("P") else ndtri(d))
    return out


def _w_at(smiles: Sequence[tuple[float, float, Smile]], t: float):
    """``(w(k) function, forward)`` at time ``t``, linear in ``t`` in total variance between smiles."""
    ts = [s[0] for s in smiles]
    i = int(np.searchsorted(ts, t))
    if i < len(ts) and abs(ts[i] - t) < 1e-12:
        sm, fwd = smiles[i][2], smiles[i][1]
        return sm.w, fwd
    (t1, f1, s1), (t2, f2, s2) = smiles[i - 1], smiles[i]
    x = (t - t1) / (t2 - t1)
    fwd = math.exp((1 - x) * math.log(f1) + x * math.log(f2))
    return (lambda k: (1 - x) * s1.w(k) + x * s2.w(k)), fwd


def _solve_k(w, t: float, d1: np.ndarray) -> np.ndarray:
    """``k`` with ``-k/sqrt(w(k)) + sqrt(w(k))/2 = d1`` (``d1`` decreasing in ``k``).

    ``d1`` is tabulated on 2001 points of ``[-5, 5]``, the root bracketed by its grid
    cell and refined by 30 bisection steps on all targets at once.
    """
    grid = np.linspace(-_K_BRACKET, _K_BRACKET, 2001)
    sw = np.sqrt(np.maximum(w(grid), 1e-300))
    d1_grid = -grid / sw + 0.5 * sw
    # first grid index where d1 falls to or below the target
    idx = np.clip(np.argmax(d1_grid[None, :] <= d1[:, None], axis=1), 1, len(grid) - 1)
    idx = np.where((d1_grid <= d1[:, None]).any(axis=1), idx, len(grid) - 1)
    lo, hi = grid[idx - 1], grid[idx]
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        sw = np.sqrt(np.maximum(w(mid), 1e-300))
        above = (-mid / sw + 0.5 * sw) > d1  # d1 still too high: move right
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return 0.5 * (lo + hi)


def resample(smiles: Sequence[tuple[float, float, Smile]], tenors_days: Sequence[float] = TENORS_DAYS,
             deltas: Sequence[str] = DELTAS) -> dict:
    """The grid from ``(t_years, forward, smile)`` per expiry, sorted by ``t``.

    Returns ``tenors_days`` (those reached), ``deltas``, ``iv`` / ``k`` / ``strike``
    matrices (tenor x delta), and per tenor label (``"30d"``) ``atm``, ``rr25``,
    ``bf25``, ``rr10``, ``bf10`` where the deltas are on the grid.
    """
    smiles = sorted(smiles, key=lambda s: s[0])
    out: dict = {"tenors_days": [], "deltas": list(deltas), "iv": [], "k": [], "strike": [],
                 "atm": {}, "rr25": {}, "bf25": {}, "rr10": {}, "bf10": {}}
    if not smiles:
        return out
    t_lo, t_hi = smiles[0][0], smiles[-1][0]
    targets = d1_targets(deltas)
    names = [d for d in deltas if d != "ATM"]
    for days in tenors_days:
        t = days / _YEAR_DAYS
        if t < t_lo - 1e-12 or t > t_hi + 1e-12:
            continue
        w, fwd = _w_at(smiles, min(max(t, t_lo), t_hi))
        ks = dict(zip(names, _solve_k(w, t, np.array([targets[n] for n in names])))) if names else {}
        ks["ATM"] = 0.0
        k_row = np.array([ks[d] for d in deltas], dtype=np.float64)
        iv_row = np.sqrt(np.maximum(w(k_row), 0.0) / t)
        label = f"{days:g}d"
        out["tenors_days"].append(days)
        out["iv"].append(iv_row.tolist())
        out["k"].append(k_row.tolist())
        out["strike"].append((fwd * np.exp(k_row)).tolist())
        iv = dict(zip(deltas, iv_row.tolist()))
        if "ATM" in iv:
            out["atm"][label] = iv["ATM"]
        for d in (25, 10):
            c, p = f"{d}C", f"{d}P"
            if c in iv and p in iv:
                out[f"rr{d}"][label] = iv[c] - iv[p]
                if "ATM" in iv:
                    out[f"bf{d}"][label] = 0.5 * (iv[c] + iv[p]) - iv["ATM"]
    return out
