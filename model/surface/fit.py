"""Fit an arbitrage-free surface (raw SVI + a small spline correction per expiry), cold or warm.

The steps (docs/surface.md gives the reasoning):

1. :func:`~model.surface.slices.build_slices` cleans the quotes and gives, per
   expiry, the forward, ``k = ln(K/F)``, targets, bid/ask IV bounds and weights.
2. **Cold** smiles: the two best quasi-explicit starts (for a grid of ``(m, sigma)``
   SVI is linear in its other three parameters), refined side by side by a batched
   Levenberg-Marquardt (one damping per smile)
   with the butterfly and Lee penalties; the best start per expiry wins. **Warm**
   smiles (the expiry is in the previous fit) start from the previous smile.
3. Smiles with fewer than ``sparse_quotes`` fitted quotes take their shape prior
   (skew, curvature, vertex, in ``z``) from the nearest well-quoted expiry, and
   smiles with fewer than ``spline_min_quotes`` get no spline correction.
4. One joint Levenberg-Marquardt over all smiles adds the calendar rows
   ``w_T2(k) >= w_T1(k)`` between consecutive expiries.
5. The result is checked on a dense grid (:func:`arbitrage_counts`). Where it finds
   violations, the offending points join the penalty grids, the calendar rows'
   augmented-Lagrangian multipliers are raised and the calendar weight grows, and
   step 4 runs again (up to four rounds). A smile that still has ``g(k) < 0`` is then
   blended toward a butterfly-free SSVI slice with the same ATM variance and skew
   sign; a calendar crossing is removed by raising the later smile's level. The
   counts reported are those after this repair.

>>> fit = fit_surface([], now_ns=0)
>>> fit.status, len(fit.smiles)
('empty: no quotes', 0)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from connectors.events import OptionQuote
from model.surface import engine, engine_numba
from model.surface.config import FitConfig
from model.surface.slices import Slice, build_slices
from model.surface.smile import Smile
from model.surface.svi import SVIParams, ssvi_slice

__all__ = ["SmileFit", "SurfaceFit", "SurfaceFitter", "fit_surface", "arbitrage_counts", "check_grid", "precompile"]

_TAU = np.array([3.0, 3.0, 1.5, 2.0, 2.0])  # prior widths of (ln v, ln b_z, atanh rho, m_z, ln sigma_z)
_TAU_SPARSE = np.array([3.0, 0.5, 0.4, 0.4, 0.4])  # borrowed shape, level free
_TAU_OFF = 1e-6  # ridge width that switches the spline correction off
_N_STARTS = 2  # best quasi-explicit starts refined per cold smile
_CAL_WEIGHTS = (1.0e3, 1.0e5, 1.0e7)  # calendar penalty weight of each refinement round (the last one repeats)
_ROUNDS = 4  # joint solves at most, each adding the check grid's violations to the penalty grids
_MAX_EXTRA = 96  # penalty points carried from round to round (and fit to fit), evenly thinned beyond
_BFLY_TOL = -1e-9  # g below this on the check grid counts as a violation
_CAL_TOL = 1e-10  # relative to the later expiry's ATM variance


@dataclass(frozen=True)
class SmileFit:
    """One expiry's fitted smile, its quotes and its scores."""

    expiry_ns: int
    t: float
    forward: float
    forward_source: str
    smile: Smile
    status: str  # "ok", "sparse: shape from <expiry_ns>" or "sparse: generic shape"
    data: Slice
    fitted_iv: np.ndarray  # at data.k

    @property
    def params(self) -> SVIParams:
        return self.smile.svi

    def iv(self, k: np.ndarray) -> np.ndarray:
        """Fitted implied vol at log-moneyness ``k``."""
        return self.smile.iv(k, self.t)

    @property
    def n_quotes(self) -> int:
        return self.data.n_targets

    def errors_vol_pts(self) -> np.ndarray:
        """Fitted minus reference IV (mark, else mid) in vol points, on the fitted quotes."""
        m = self.data.fitted & np.isfinite(self.data.ref_iv)
        return 100.0 * (self.fitted_iv[m] - self.data.ref_iv[m])

    def inside_mask(self) -> np.ndarray:
        """Per fitted quote with both sides: is the fitted IV within [bid_iv, ask_iv]?"""
        d = self.data
        both = d.fitted & np.isfinite(d.bid_iv) & np.isfinite(d.ask_iv)
        f = self.fitted_iv[both]
        return (f >= d.bid_iv[both] - 1e-12) & (f <= d.ask_iv[both] + 1e-12)


@dataclass(frozen=True)
class SurfaceFit:
    """The fitted surface of one chain at ``now_ns``."""

    now_ns: int
    smiles: tuple[SmileFit, ...]
    arbitrage: dict[str, int]
    dropped: dict[str, int]
    skipped: dict[int, str]  # expiry_ns -> why no smile
    fit_ms: float
    warm: int  # smiles warm-started from the previous fit
    iterations: int
    status: str = "ok"
    method: str = "svi_spline"
    check_k: np.ndarray = field(default_factory=lambda: np.empty(0))
    continuation: int = 0  # refinement rounds the constraints needed
    penalty_k: np.ndarray = field(default_factory=lambda: np.empty(0))  # k points added to the penalty grids
    # calendar multipliers per consecutive expiry pair: (k, shift) where the constraint needed one
    multipliers: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def total_variance(self, k: np.ndarray, t: float) -> np.ndarray:
        """``w(k, t)``: a smile at an expiry, linear in ``t`` in total variance between expiries.

        Linear interpolation keeps ``w`` non-decreasing in ``t`` (no calendar arbitrage)
        between ordered smiles. Outside the fitted expiries it raises ``ValueError``.
        """
        ts = np.array([s.t for s in self.smiles])
        if not len(ts) or t < ts[0] - 1e-12 or t > ts[-1] + 1e-12:
            raise ValueError(f"t={t} outside the fitted expiries")
        i = int(np.clip(np.searchsorted(ts, t), 0, len(ts) - 1))
        k = np.asarray(k, dtype=np.float64)
        if abs(ts[i] - t) <= 1e-12 or i == 0:
            return self.smiles[i].smile.w(k)
        lo, hi = self.smiles[i - 1], self.smiles[i]
        x = (t - lo.t) / (hi.t - lo.t)
        return (1.0 - x) * lo.smile.w(k) + x * hi.smile.w(k)


def check_grid(scales: Sequence[float], k_data_max: float) -> np.ndarray:
    """The dense k grid of the arbitrage checks.

    401 points uniform on ``[-K, K]`` with ``K = max(1, 1.25 max|k|)`` over the fitted
    quotes (strikes from ``e^-K`` to ``e^K`` times the forward), plus 161 points on
    ``[-8 s, 8 s]`` (clipped to ``[-K, K]``) for every expiry's ATM total std ``s``, so
    short expiries are resolved near the money too.

    >>> g = check_grid([0.05], 0.4)
    >>> float(g.min()), float(g.max()), len(g)
    (-1.0, 1.0, 491)
    """
    big = max(1.0, 1.25 * k_data_max)
    s = np.asarray(scales, dtype=np.float64)
    k = np.unique(np.concatenate([np.linspace(-big, big, 401), np.linspace(-8.0 * s, 8.0 * s, 161).ravel()]))
    return k[np.abs(k) <= big]


def arbitrage_counts(smiles: Sequence[Smile], ts: Sequence[float], k: np.ndarray) -> dict[str, int]:
    """Violations on the grid ``k``.

    ``butterfly``: (smile, point) pairs with ``g(k) < 0`` (or ``w <= 0``), plus one per
    smile breaking Lee's bound ``b(1 + |rho|) <= 2``; ``calendar``: (consecutive expiry
    pair, point) with ``w_T2(k) < w_T1(k)``.

    >>> s = Smile(svi=SVIParams(a=0.01, b=0.1, rho=-0.3, m=0.0, sigma=0.1))
    >>> arbitrage_counts([s, s], [0.1, 0.2], np.linspace(-1, 1, 5))
    {'butterfly': 0, 'calendar': 0}
    """
    return _check(smiles, ts, k)[0]


def _check(smiles: Sequence[Smile], ts: Sequence[float], k: np.ndarray) -> tuple[dict[str, int], np.ndarray]:
    """:func:`arbitrage_counts`, and the grid points where some smile or expiry pair breaks a constraint."""
    k = np.asarray(k, dtype=np.float64)
    if not smiles:
        return {"butterfly": 0, "calendar": 0}, k[:0]
    bfly, cal, bad = engine_numba.arbitrage_scan(k, *_smile_arrays(smiles), np.argsort(ts), _BFLY_TOL, _CAL_TOL)
    bfly += sum(int(sm.svi.lee > 2.0) for sm in smiles)
    return {"butterfly": bfly, "calendar": cal}, k[bad]


def _smile_arrays(smiles: Sequence[Smile]) -> tuple[np.ndarray, ...]:
    """``(svi, k0, h, coef, nb)``: the smiles as the compiled evaluators take them (``coef`` zero-padded)."""
    nb = np.array([sm.nb for sm in smiles], dtype=np.int64)
    coef = np.zeros((len(smiles), max(int(nb.max()), 1)))
    for i, sm in enumerate(smiles):
        coef[i, :sm.nb] = sm.coef
    return (np.array([sm.svi.as_tuple() for sm in smiles]), np.array([sm.k0 for sm in smiles]),
            np.array([sm.h for sm in smiles]), coef, nb)


def _shifts(k: np.ndarray, pairs: Sequence[tuple[int, int]],
            multipliers: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The calendar rows' multiplier shifts on the grid ``k`` (P, C), interpolated in ``k`` from ``multipliers``."""
    out = np.zeros(k.shape)
    for p, key in enumerate(pairs):
        if key in multipliers:
            at, shift = multipliers[key]
            out[p] = np.interp(k[p], at, shift)
    return out


def _raised_multipliers(cal: engine.Calendar, smiles: Sequence[Smile],
                        pairs: Sequence[tuple[int, int]]) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """The augmented-Lagrangian update ``shift <- max(0, shift + c)`` with ``c = (w_T1 - w_T2) / s_T2^2 + margin``
    the constraint at the solution (Nocedal & Wright 2006, framework 17.4), for the pairs where some shift is
    positive; ``k`` sorted and unique."""
    out = {}
    shift = np.zeros(cal.k.shape) if cal.shift is None else cal.shift
    for p, key in enumerate(pairs):
        k, first = np.unique(cal.k[p], return_index=True)
        c = (smiles[p].w(k) - smiles[p + 1].w(k)) / cal.ws[p] + cal.margin
        raised = np.maximum(shift[p][first] + c, 0.0)
        if raised.any():
            out[key] = (k, raised)
    return out


def _thin(points: np.ndarray) -> np.ndarray:
    """At most ``_MAX_EXTRA`` of the sorted points, evenly spread."""
    if len(points) <= _MAX_EXTRA:
        return points
    return points[np.linspace(0, len(points) - 1, _MAX_EXTRA).round().astype(np.int64)]


@dataclass(frozen=True)
class _Stacked:
    """The quotes of the fitted slices end to end: slice ``i`` is ``start[i]:start[i + 1]``."""

    start: np.ndarray  # (S + 1,)
    row: np.ndarray  # slice of each quote
    t: np.ndarray  # (S,)
    k: np.ndarray
    target: np.ndarray
    unc: np.ndarray
    bid_iv: np.ndarray
    ask_iv: np.ndarray

    @classmethod
    def of(cls, slices: Sequence[Slice]) -> "_Stacked":
        sizes = np.array([len(sl.k) for sl in slices])
        cols = (np.concatenate([getattr(sl, f) for sl in slices]) for f in ("k", "target", "unc", "bid_iv", "ask_iv"))
        return cls(np.concatenate([[0], np.cumsum(sizes)]), np.repeat(np.arange(len(slices)), sizes),
                   np.array([sl.t for sl in slices]), *cols)

    @property
    def fitted(self) -> np.ndarray:
        return np.isfinite(self.target)

    def scales(self) -> np.ndarray:
        """ATM total std per slice from its fitted quotes (IV interpolated at k = 0)."""
        atm = engine_numba.interp_each(0.0, self.k, self.target, self.start)
        return np.maximum(atm * np.sqrt(self.t), 1e-4)

    def knots(self, scales: np.ndarray, nb: int) -> list[tuple[float, float]]:
        """``(z0, h)`` in z per slice: ``nb`` cubic B-splines over the fitted quotes, half a spacing beyond each end."""
        z = np.where(self.fitted, self.k / scales[self.row], np.nan)
        lo, hi = np.fmin.reduceat(z, self.start[:-1]), np.fmax.reduceat(z, self.start[:-1])
        h = np.maximum(hi - lo, 1e-3) / (nb + 2)
        return list(zip((lo - 0.5 * h).tolist(), h.tolist()))

    def prior_centres(self, scales: np.ndarray) -> np.ndarray:
        """Each smile's prior centre ``(ln v, ln b_z, 0, 0, 0)`` from a weighted quadratic near the money.

        Per smile, ``w ~ c0 + c1 z + c2 z^2`` is fitted by weighted least squares (weights
        ``1/unc^2``) on the fitted quotes with ``|z| <= 4`` (all of them when fewer than
        three are that near); an SVI with ``sigma_z = 1`` and that curvature has ``b_z =
        2 c2`` and minimum variance ``c0 - b_z (1 - sqrt(1 - rho^2))``. Skew and vertex are
        centred at zero. All smiles in one compiled pass.
        """
        fit = self.fitted
        z = np.where(fit, self.k / scales[self.row], 0.0)
        w = np.where(fit, self.target, 0.0) ** 2 * self.t[self.row]
        coef, solvable = engine_numba.near_money_quadratic(z, w, np.where(fit, 1.0 / self.unc ** 2, 0.0), self.start)
        c0 = np.maximum(coef[:, 0], 1e-8)
        c1 = np.where(solvable, coef[:, 1], 0.0)
        c2 = np.maximum(np.where(solvable, coef[:, 2], 0.0), 0.02 * c0)
        bz = np.maximum(2.0 * c2, 1e-3 * c0)
        rho = np.clip(c1 / bz, -0.9, 0.9)
        v = np.maximum(c0 - bz * (1.0 - np.sqrt(1.0 - rho * rho)), 0.05 * c0)
        out = np.zeros((len(self.t), 5))
        out[:, 0], out[:, 1] = np.log(v), np.log(bz)
        return out


def _u_from_svi(svi: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The solver's ``u[:, :5]`` of raw SVI rows ``(a, b, rho, m, sigma)`` at scales ``s``."""
    a, b, rho, m, sigma = svi.T
    w_min = a + b * sigma * np.sqrt(1.0 - rho * rho)
    rho = np.clip(rho, -0.998, 0.998)
    return np.stack([np.log(np.maximum(w_min, 1e-10)), np.log(np.maximum(b * s, 1e-10)),
                     np.arctanh(rho / engine.RHO_MAX), m / s, np.log(np.maximum(sigma / s, 1e-8))], axis=1)


def _smiles_from_u(u: np.ndarray, scales: np.ndarray, knots: Sequence[tuple[float, float]]) -> list[Smile]:
    v, bz, rho, mz, sz, _ = engine.natural(u[:, :5])
    b, sigma = bz / scales, sz * scales
    a = v - b * sigma * np.sqrt(1.0 - rho * rho)
    coef = u[:, 5:] * (scales * scales)[:, None]
    out = []
    for i, (ai, bi, ri, mi, si) in enumerate(zip(a.tolist(), b.tolist(), rho.tolist(), (mz * scales).tolist(),
                                                 sigma.tolist())):
        svi = SVIParams(a=ai, b=bi, rho=ri, m=mi, sigma=si)
        c = tuple(coef[i].tolist())
        out.append(Smile(svi=svi, k0=knots[i][0] * scales[i], h=knots[i][1] * scales[i], coef=c) if any(c)
                   else Smile(svi=svi))
    return out


def _batch(q: _Stacked, scales: np.ndarray, knots: Sequence[tuple[float, float]], u0: np.ndarray,
           tau: np.ndarray, tau_c: np.ndarray, big_k: float, nb: int, cfg: FitConfig,
           extra_k: np.ndarray = np.empty(0)) -> engine.Batch:
    """The fitter's arrays; ``extra_k`` adds butterfly penalty points (in ``k``) to every smile's grid."""
    S = len(q.t)
    row, k, target, unc, bid, ask = q.row, q.k, q.target, q.unc, q.bid_iv, q.ask_iv
    col = np.arange(len(row)) - q.start[row]
    fit = np.isfinite(target)
    shape = (S, int(np.diff(q.start).max()))
    z, tgt, wd, wb = np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(shape)
    lo, hi = np.full(shape, -np.inf), np.full(shape, np.inf)
    z[row, col] = k / scales[row]
    tgt[row, col] = np.where(fit, target, 0.0)
    wd[row, col] = np.where(fit, 1.0 / unc, 0.0)
    lo[row, col] = np.where(np.isfinite(bid), bid, -np.inf)
    hi[row, col] = np.where(np.isfinite(ask), ask, np.inf)
    wb[row, col] = math.sqrt(cfg.band_weight) / unc
    zg_k = np.concatenate([np.linspace(-big_k, big_k, 15), extra_k])
    zg = np.concatenate([np.broadcast_to(np.linspace(-6.0, 6.0, 25), (S, 25)), zg_k[None, :] / scales[:, None]],
                        axis=1)
    if nb:
        z0, h = (np.array(col) for col in zip(*knots))
        phi = engine_numba.bspline_rows(z, z0, h, nb, 1)[0]  # padding (z = 0) gets values too, weighted 0
        phig = engine_numba.bspline_rows(zg, z0, h, nb, 3)
    else:
        phi = np.zeros((S, shape[1], 0))
        phig = np.zeros((3, S, zg.shape[1], 0))
    return engine.Batch(t=q.t, s=np.asarray(scales, dtype=np.float64), z=z, tgt=tgt,
                        wd=wd, lo=lo, hi=hi, wb=wb, zg=zg, u0=u0, tau=tau, phi=phi, phig=phig, tau_c=tau_c,
                        tau_s=cfg.spline_tau, robust=cfg.robust_scale, g_floor=cfg.butterfly_floor)


def _calendar(scales: np.ndarray, knots: Sequence[tuple[float, float]], big_k: float, nb: int,
              margin: float, lam: float, extra_k: np.ndarray = np.empty(0)) -> engine.Calendar:
    """Calendar rows between consecutive expiries on 21 points near the shorter one's money
    (``|z| <= 6``), 21 points uniform on ``[-K, K]`` and the points ``extra_k``."""
    n = len(scales)
    short, long = np.arange(n - 1), np.arange(1, n)
    base = np.concatenate([np.linspace(-big_k, big_k, 21), extra_k])
    near = np.linspace(-6.0, 6.0, 21)
    k = np.concatenate([near[None, :] * scales[short, None], np.broadcast_to(base, (n - 1, len(base)))], axis=1)
    z0, h = (np.array(col) for col in zip(*knots))

    def phis(rows):
        if not nb:
            return np.zeros((len(rows), k.shape[1], 0))
        return engine_numba.bspline_rows(k / scales[rows, None], z0[rows], h[rows], nb, 1)[0]

    return engine.Calendar(short=short, long=long, k=k, phi_short=phis(short), phi_long=phis(long),
                           ws=scales[long] ** 2, margin=margin, lam=lam)


def _solvers(backend: str):
    """``(solve_independent, solve_joint)`` of the compiled kernel or the numpy reference."""
    if backend == "numba":
        return engine_numba.solve_independent, engine_numba.solve_joint
    return engine.solve_independent, engine.solve_joint


def _blend(a: Smile, b: Smile, x: float) -> Smile:
    p = (1 - x) * np.array(a.svi.as_tuple()) + x * np.array(b.svi.as_tuple())
    svi = SVIParams(**dict(zip(("a", "b", "rho", "m", "sigma"), (float(v) for v in p))))
    coef = tuple((1 - x) * c for c in a.coef)
    return Smile(svi=svi, k0=a.k0, h=a.h, coef=coef) if a.nb else Smile(svi=svi)


def _repair_butterfly(sm: Smile, k: np.ndarray) -> Smile:
    """Blend ``sm`` toward a butterfly-free SSVI slice with the same ATM variance and skew sign."""
    def ok(q: Smile) -> bool:
        w = q.w(k)
        return bool((w > 0).all() and (q.g(k) >= 0).all() and q.svi.lee <= 2.0)

    if ok(sm):
        return sm
    theta = max(float(sm.w(np.array([0.0]))[0]), 1e-10)
    rho = float(np.clip(sm.svi.rho, -0.95, 0.95))
    bound = 4.0 / (theta * (1.0 + abs(rho)))
    safe = Smile(svi=ssvi_slice(theta, rho, 0.9 * min(bound, math.sqrt(bound))))
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if ok(_blend(sm, safe, mid)) else (mid, hi)
    return _blend(sm, safe, hi)


def _repair(smiles: list[Smile], k: np.ndarray) -> list[Smile]:
    """Remove what violations remain on the check grid: butterfly by blending, calendar by raising ``a``."""
    smiles = list(smiles)
    for _ in range(4):
        changed = False
        for i, sm in enumerate(smiles):
            q = _repair_butterfly(sm, k)
            if q is not sm:
                smiles[i], changed = q, True
        for i in range(1, len(smiles)):
            deficit = float((smiles[i - 1].w(k) - smiles[i].w(k)).max())
            atm = max(float(smiles[i].w(np.array([0.0]))[0]), 1e-12)
            if deficit > -_CAL_TOL * atm:
                sm = smiles[i]
                p = sm.svi
                svi = SVIParams(a=p.a + deficit + 1e-6 * atm, b=p.b, rho=p.rho, m=p.m, sigma=p.sigma)
                smiles[i] = Smile(svi=svi, k0=sm.k0, h=sm.h, coef=sm.coef)
                changed = True
        if not changed:
            break
    return smiles


def fit_surface(quotes: Sequence[OptionQuote], now_ns: int, prev: SurfaceFit | None = None,
                cfg: FitConfig | None = None) -> SurfaceFit:
    """Fit every expiry of ``quotes`` valued at ``now_ns``; warm-start from ``prev`` where it has the expiry.

    Never raises on thin data: an empty chain, or an expiry without a fitted quote,
    gives a result whose ``status`` and ``skipped`` say why.
    """
    cfg = cfg or FitConfig()
    t0 = time.perf_counter()
    slices, dropped = build_slices(quotes, now_ns, cfg)
    skipped: dict[int, str] = {}
    usable = []
    for sl in slices:
        if sl.n_targets == 0:
            skipped[sl.expiry_ns] = "no fitted quote (no quote with a bid)"
        else:
            usable.append(sl)
    if not usable:
        status = "empty: no quotes" if not quotes else "empty: no expiry has a quote with a bid"
        return SurfaceFit(now_ns=now_ns, smiles=(), arbitrage={"butterfly": 0, "calendar": 0},
                          dropped=dict(dropped), skipped=skipped, fit_ms=1e3 * (time.perf_counter() - t0), warm=0,
                          iterations=0, status=status, method=cfg.method)
    usable.sort(key=lambda s: s.t)
    n = len(usable)
    nb = cfg.spline_basis if cfg.method == "svi_spline" else 0
    stacked = _Stacked.of(usable)
    n_targets = np.array([sl.n_targets for sl in usable])
    scales = stacked.scales()
    k_max = float(np.abs(stacked.k[stacked.fitted]).max())
    big_k = max(1.0, 1.25 * k_max)
    prev_by_exp = {s.expiry_ns: s.smile for s in prev.smiles} if prev is not None else {}

    u = np.zeros((n, 5 + nb))
    u0 = stacked.prior_centres(scales)
    tau = np.tile(_TAU, (n, 1))
    tau_c = np.where(n_targets >= cfg.spline_min_quotes, cfg.spline_tau, _TAU_OFF)
    knots = stacked.knots(scales, nb) if nb else [(0.0, 1.0)] * n
    old = [prev_by_exp.get(sl.expiry_ns) for sl in usable]
    warm_rows = [i for i, sm in enumerate(old) if sm is not None]
    cold_rows = [i for i, sm in enumerate(old) if sm is None]
    if warm_rows:
        u[warm_rows, :5] = _u_from_svi(np.array([old[i].svi.as_tuple() for i in warm_rows]),  # type: ignore[union-attr]
                                       scales[warm_rows])
    for i in warm_rows:
        sm = old[i]
        if nb and sm.nb == nb:  # type: ignore[union-attr]  # keep the previous knots so the coefficients carry over
            knots[i] = (sm.k0 / scales[i], sm.h / scales[i])  # type: ignore[union-attr]
            u[i, 5:] = np.asarray(sm.coef) / scales[i] ** 2  # type: ignore[union-attr]
    iterations = 0
    if cold_rows:
        cold = np.array(cold_rows)
        b = _batch(_Stacked.of([usable[i] for i in cold]), scales[cold], [knots[i] for i in cold], u0[cold], tau[cold],
                   tau_c[cold], big_k, nb, cfg)
        starts, _ = engine.quasi_explicit_starts(b, _N_STARTS)
        rows = np.repeat(cold, _N_STARTS)
        b = b.take(np.repeat(np.arange(len(cold)), _N_STARTS))
        u_start = np.concatenate([starts.reshape(-1, 5), np.zeros((len(rows), nb))], axis=1)
        uc, cc, it = _solvers(cfg.backend)[0](u_start, b, cfg.cold_iterations, cfg.tol)
        iterations += it
        for i in np.unique(rows):
            sel = np.flatnonzero(rows == i)
            u[i] = uc[sel[np.argmin(cc[sel])]]
    # sparse smiles borrow their shape from the nearest well-quoted expiry
    status = ["ok"] * n
    rich = [i for i in range(n) if n_targets[i] >= cfg.sparse_quotes]
    for i, sl in enumerate(usable):
        if n_targets[i] >= cfg.sparse_quotes:
            continue
        if rich:
            j = min(rich, key=lambda r: abs(math.log(usable[r].t / sl.t)))
            u0[i, 1:] = u[j, 1:5]
            tau[i] = _TAU_SPARSE
            if sl.expiry_ns not in prev_by_exp:
                u[i, 1:5] = u[j, 1:5]
            status[i] = f"sparse: shape from {usable[j].expiry_ns}"
        else:
            status[i] = "sparse: generic shape"
    # Joint stage, refined where the check finds violations: the check grid's offending
    # points join the penalty grids (butterfly and calendar), the calendar rows' multipliers
    # are raised and the calendar weight grows 100x, from where we are. Only the offending
    # points are added, so the penalty grids stay small (uniformly denser grids cost as
    # much per point everywhere). A warm fit starts with its predecessor's added points and
    # multipliers, at the first weight (a stiff start crawls when the quotes have moved).
    solver = _solvers(cfg.backend)
    limit = cfg.warm_iterations if not cold_rows else cfg.cold_iterations
    ts = [s.t for s in usable]
    k_check = check_grid(scales, k_max)
    warm_prev = prev is not None and not cold_rows
    level = 0
    extra_k = _thin(prev.penalty_k) if warm_prev else np.empty(0)  # type: ignore[union-attr]
    pairs = [(usable[i].expiry_ns, usable[i + 1].expiry_ns) for i in range(n - 1)]
    multipliers = dict(prev.multipliers) if prev is not None else {}
    for round_ in range(_ROUNDS):
        lam_c = _CAL_WEIGHTS[min(level, len(_CAL_WEIGHTS) - 1)]
        b = _batch(stacked, scales, knots, u0, tau, tau_c, big_k, nb, cfg, extra_k)
        cal = _calendar(scales, knots, big_k, nb, cfg.calendar_margin, lam_c, extra_k) if n > 1 else None
        if cal is not None:
            cal.shift = _shifts(cal.k, pairs, multipliers)
        u, _, it = solver[1](u, b, cal, limit, cfg.tol)
        iterations += it
        u = np.array(u)
        u[:, 5:] *= (tau_c > _TAU_OFF)[:, None]  # a switched-off correction is exactly zero
        smiles = _smiles_from_u(u, scales, knots)
        counts, bad_k = _check(smiles, ts, k_check)
        if not (counts["butterfly"] or counts["calendar"]) or round_ == _ROUNDS - 1:
            break
        if cal is not None:
            multipliers.update(_raised_multipliers(cal, smiles, pairs))
        extra_k = _thin(np.union1d(extra_k, bad_k))
        level += 1
    if counts["butterfly"] or counts["calendar"]:
        smiles = _repair(smiles, k_check)
        counts = arbitrage_counts(smiles, ts, k_check)
    w_fit = engine_numba.smile_values(stacked.k, stacked.start, *_smile_arrays(smiles))[0]
    iv_fit = np.split(np.sqrt(np.maximum(w_fit, 0.0) / stacked.t[stacked.row]), stacked.start[1:-1])
    fits = tuple(
        SmileFit(expiry_ns=sl.expiry_ns, t=sl.t, forward=sl.forward, forward_source=sl.forward_source, smile=sm,
                 status=st, data=sl, fitted_iv=iv)
        for sl, sm, st, iv in zip(usable, smiles, status, iv_fit)
    )
    return SurfaceFit(now_ns=now_ns, smiles=fits, arbitrage=counts, dropped=dict(dropped), skipped=skipped,
                      fit_ms=1e3 * (time.perf_counter() - t0), warm=len(warm_rows), iterations=iterations,
                      method=cfg.method, check_k=k_check, continuation=round_,
                      penalty_k=extra_k, multipliers={p: multipliers[p] for p in pairs if p in multipliers})


class SurfaceFitter:
    """Streaming use: each :meth:`update` warm-starts from the previous fit.

    >>> f = SurfaceFitter()
    >>> f.update([], now_ns=0).status
    'empty: no quotes'
    """

    def __init__(self, cfg: FitConfig | None = None) -> None:
        self.cfg = cfg or FitConfig()
        self.last: SurfaceFit | None = None

    def update(self, quotes: Sequence[OptionQuote], now_ns: int) -> SurfaceFit:
        fit = fit_surface(quotes, now_ns, prev=self.last, cfg=self.cfg)
        if fit.smiles:
            self.last = fit
        return fit


def precompile() -> None:
    """Compile the numba kernels (or load them from their on-disk cache) by fitting a SYNTHETIC chain cold and warm.

    ``make install`` runs it once, so the first live refit or ``volcast surface`` call
    does not pay the compile (about 20 s on 2 cores). The chain is three expiries of
    Black-76 IVs from arbitrage-free raw SVI smiles: made up, and used for nothing else.
    """
    day = 86_400 * 10**9
    quotes = []
    for days, (a, b, rho, sigma) in ((3, (0.001, 0.03, -0.3, 0.05)), (10, (0.005, 0.05, -0.25, 0.1)),
                                     (40, (0.02, 0.1, -0.2, 0.2))):
        for k in np.linspace(-0.4, 0.4, 15) * math.sqrt(days / 30):
            iv = math.sqrt((a + b * (rho * k + math.sqrt(k * k + sigma * sigma))) * 365 / days)
            quotes.append(OptionQuote(expiry_ns=days * day, strike=100 * math.exp(k), is_call=k >= 0, ts_ns=0,
                                      underlying_price=100.0, bid_iv=iv - 0.01, ask_iv=iv + 0.01, mark_iv=iv))
    fit_surface(quotes, 0, prev=fit_surface(quotes, 0))
