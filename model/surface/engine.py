"""The numerical core: batched Levenberg-Marquardt over smiles with analytic Jacobians.

Each smile is fitted in a standardized moneyness ``z = k / s`` (``s`` = the expiry's
ATM total standard deviation) as raw SVI plus an optional cubic B-spline correction
that lives only on the quoted range of ``z``:

.. math::

    w(z) = v + b_z\\left(\\rho (z - m_z) + \\sqrt{(z - m_z)^2 + \\sigma_z^2}
           - \\sigma_z\\sqrt{1-\\rho^2}\\right) + s^2 \\sum_j \\gamma_j B_j(z)

so ``v`` is the SVI minimum total variance (kept positive) and raw SVI in ``k`` is
``b = b_z/s, m = m_z s, sigma = sigma_z s, a = v - b sigma sqrt(1-rho^2)``. The
``B_j`` are uniform cubic B-splines whose supports lie inside the quoted range, so
the correction is zero, with its first two derivatives, at and beyond the outermost
quotes: the wings are pure SVI. The solver works on unconstrained
``u = (ln v, ln b_z, atanh(rho/0.999), m_z, ln sigma_z, gamma_1..gamma_nb)``.

The residual vector of one smile has these blocks (data and band in units of the
quote's IV half-spread):

- data: ``(sigma_fit - sigma_target) / unc`` through a soft-L1 loss
  ``2 f^2 (sqrt(1 + (e/f)^2) - 1)``, written as an exact square so Gauss-Newton applies;
- band: ``(sigma_fit - clip(sigma_fit, bid_iv, ask_iv)) * sqrt(band_weight) / unc``;
- butterfly: ``sqrt(lam_g) * max(0, g_floor - g(k))`` on a grid;
- Lee: ``sqrt(lam_l) * max(0, b (1 + |rho|) - 2)``;
- prior: ``(u - u0) / tau`` on the SVI part (weak: it only decides what the quotes
  leave free), ``gamma / tau_c`` and second differences of ``gamma`` over ``tau_s``.

Across expiries a calendar block ``sqrt(lam_c) * max(0, (w_T1(k) - w_T2(k)) / s_T2^2 + margin + shift)``
couples consecutive smiles; with it the solve is one joint system. ``shift`` (per point,
zero by default) is the augmented-Lagrangian multiplier over ``lam_c`` (Nocedal & Wright
2006, 17.4): the caller raises it where a solution still breaks the constraint, which
holds the constraint without driving ``lam_c`` (and the conditioning) up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RHO_MAX = 0.999
LAM_G = 1.0e3  # butterfly penalty weight per grid point
LAM_L = 1.0e4  # Lee bound penalty weight
LEE_MARGIN = 1e-3
SEEN_BAND = 0.1  # a calendar row found active stays in the Gauss-Newton model while d > -this x s_T2^2
_W_TINY = 1e-12


def cardinal_bspline(tau: np.ndarray, deriv: int = 0) -> np.ndarray:
    """The cardinal cubic B-spline on ``[0, 4]`` (or its 1st/2nd derivative), zero outside.

    >>> [round(float(x), 4) for x in cardinal_bspline(np.array([0.0, 1.0, 2.0, 3.0, 4.0]))]
    [0.0, 0.1667, 0.6667, 0.1667, 0.0]
    """
    t = np.asarray(tau, dtype=np.float64)
    out = np.zeros_like(t)
    p1, p2, p3, p4 = (t >= 0) & (t < 1), (t >= 1) & (t < 2), (t >= 2) & (t < 3), (t >= 3) & (t < 4)
    if deriv == 0:
        out = np.where(p1, t ** 3 / 6, out)
        out = np.where(p2, (-3 * t ** 3 + 12 * t ** 2 - 12 * t + 4) / 6, out)
        out = np.where(p3, (3 * t ** 3 - 24 * t ** 2 + 60 * t - 44) / 6, out)
        out = np.where(p4, (4 - t) ** 3 / 6, out)
    elif deriv == 1:
        out = np.where(p1, t ** 2 / 2, out)
        out = np.where(p2, (-9 * t ** 2 + 24 * t - 12) / 6, out)
        out = np.where(p3, (9 * t ** 2 - 48 * t + 60) / 6, out)
        out = np.where(p4, -((4 - t) ** 2) / 2, out)
    else:
        out = np.where(p1, t, out)
        out = np.where(p2, -3 * t + 4, out)
        out = np.where(p3, 3 * t - 8, out)
        out = np.where(p4, 4 - t, out)
    return out


def bspline_eval3(x: np.ndarray, lo: np.ndarray, h: np.ndarray,
                  coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sum_j coef[s, j] B_j(x[s, :])`` and its first two derivatives, for each row ``s`` with its own knots.

    ``x`` is ``(S, M)``, ``lo`` and ``h`` are ``(S,)``, ``coef`` is ``(S, nb)``. The same
    values as ``bspline_basis(x, lo, h, nb, d) @ coef``, but only the four coefficients
    alive on each point's knot interval are gathered, so no ``(S, M, nb)`` basis is
    built: the check grids of every smile are evaluated at the cost of a few array passes.

    >>> x = np.linspace(-1.0, 3.0, 9)[None, :]
    >>> c = np.array([[0.3, -0.2, 0.5, 0.1, 0.4]])
    >>> ref = [bspline_basis(x[0], 0.0, 0.5, 5, d) for d in range(3)]
    >>> all(np.allclose(v[0], b @ c[0]) for v, b in zip(bspline_eval3(x, np.zeros(1), np.full(1, 0.5), c), ref))
    True
    """
    S, nb = coef.shape
    tau = (x - lo[:, None]) / h[:, None]
    i = np.floor(tau)
    u = tau - i
    u2 = u * u
    u3 = u2 * u
    v = 1.0 - u
    # Basis j lives on intervals j .. j+3; the point in interval i sees j = i-3 .. i. Coefficients
    # are padded by 4 zeros on each side so every far point gathers zeros.
    col = np.clip(i, -4, nb + 3).astype(np.int64) + 4
    padded = np.zeros((S, nb + 8))
    padded[:, 4:4 + nb] = coef
    c = [np.take_along_axis(padded, col - q, axis=1) for q in range(4)]  # coefficient of basis i - q
    inv_h = (1.0 / h)[:, None]
    f = (c[0] * u3 + c[1] * (-3 * u3 + 3 * u2 + 3 * u + 1) + c[2] * (3 * u3 - 6 * u2 + 4) + c[3] * v * v * v) / 6
    f1 = (c[0] * u2 / 2 + c[1] * (-9 * u2 + 6 * u + 3) / 6 + c[2] * (9 * u2 - 12 * u) / 6 - c[3] * v * v / 2) * inv_h
    f2 = (c[0] * u + c[1] * (-3 * u + 1) + c[2] * (3 * u - 2) + c[3] * v) * inv_h * inv_h
    return f, f1, f2


def bspline_basis(x: np.ndarray, lo: float | np.ndarray, h: float | np.ndarray, nb: int,
                  deriv: int = 0) -> np.ndarray:
    """``B_j(x) = N((x - lo)/h - j)`` for ``j < nb`` (or a derivative in ``x``); shape ``x.shape + (nb,)``.

    Only the four basis functions alive on ``x``'s knot interval are evaluated.
    ``lo`` and ``h`` broadcast against ``x``: a ``(S, 1)`` pair gives each row of an
    ``(S, N)`` ``x`` its own knots, in one call.

    >>> x = np.array([[0.1, 0.7], [0.2, 0.9]])
    >>> rows = bspline_basis(x, np.array([[0.0], [0.1]]), np.array([[0.5], [0.25]]), 5)
    >>> bool(np.allclose(rows[1], bspline_basis(x[1], 0.1, 0.25, 5)))
    True

    >>> x = np.linspace(-1.0, 3.0, 9)
    >>> ref = cardinal_bspline((x[:, None] - 0.0) / 0.5 - np.arange(5), 1) / 0.5
    >>> bool(np.allclose(bspline_basis(x, 0.0, 0.5, 5, 1), ref))
    True
    """
    x = np.asarray(x, dtype=np.float64)
    h = np.broadcast_to(h, x.shape)  # per-point spacing: rows may have their own knots
    tau = (x - lo) / h
    i = np.floor(tau)
    u = tau - i
    i = i.astype(np.int64)
    if deriv == 0:
        segs = (u ** 3 / 6, (-3 * u ** 3 + 3 * u ** 2 + 3 * u + 1) / 6, (3 * u ** 3 - 6 * u ** 2 + 4) / 6,
                (1 - u) ** 3 / 6)
    elif deriv == 1:
        segs = (u ** 2 / 2, (-9 * u ** 2 + 6 * u + 3) / 6, (9 * u ** 2 - 12 * u) / 6, -((1 - u) ** 2) / 2)
    else:
        segs = (u, -3 * u + 1, 3 * u - 2, 1 - u)
    m = u.size
    ii = np.clip(i.reshape(-1), -4, nb + 3) + 3  # column of basis i - q + 3 for q = 0; far points hit trash
    ext = np.zeros((m, nb + 10))
    rows = np.arange(m)
    scale = 1.0 / h.reshape(-1) ** deriv
    for q, seg in enumerate(segs):  # basis i - q sits on its q-th segment here
        ext[rows, ii - q + 3] = seg.reshape(-1) * scale
    return ext[:, 6:6 + nb].reshape(x.shape + (nb,))


@dataclass
class Batch:
    """Per-smile arrays, one row per smile (padded along the quote axis)."""

    t: np.ndarray  # (S,)
    s: np.ndarray  # (S,) ATM total std: k = s z
    z: np.ndarray  # (S, N)
    tgt: np.ndarray  # (S, N) target IV (0 where none)
    wd: np.ndarray  # (S, N) 1 / unc on fitted quotes, 0 elsewhere
    lo: np.ndarray  # (S, N) bid IV, -inf where none
    hi: np.ndarray  # (S, N) ask IV, +inf where none
    wb: np.ndarray  # (S, N) sqrt(band_weight) / unc, 0 on padding
    zg: np.ndarray  # (S, G) butterfly grid in z
    u0: np.ndarray  # (S, 5) prior centre of the SVI part
    tau: np.ndarray  # (S, 5) prior width of the SVI part
    phi: np.ndarray  # (S, N, nb) correction basis at the quotes
    phig: np.ndarray  # (3, S, G, nb) correction basis and its z-derivatives on the grid
    tau_c: np.ndarray  # (S,) ridge width of gamma (tiny = correction off)
    tau_s: float = 0.05
    robust: float = 2.0
    g_floor: float = 0.01

    @property
    def nb(self) -> int:
        return self.phi.shape[-1]

    def take(self, rows: np.ndarray) -> "Batch":
        return Batch(self.t[rows], self.s[rows], self.z[rows], self.tgt[rows], self.wd[rows], self.lo[rows],
                     self.hi[rows], self.wb[rows], self.zg[rows], self.u0[rows], self.tau[rows], self.phi[rows],
                     self.phig[:, rows], self.tau_c[rows], self.tau_s, self.robust, self.g_floor)


@dataclass
class Calendar:
    """Consecutive pairs ``(short, long)`` of rows and the k grid their order is held on."""

    short: np.ndarray  # (P,) row of the shorter expiry
    long: np.ndarray  # (P,) row of the longer expiry
    k: np.ndarray  # (P, C)
    phi_short: np.ndarray  # (P, C, nb) correction basis of the short smile at k
    phi_long: np.ndarray  # (P, C, nb)
    ws: np.ndarray  # (P,) s_long^2
    margin: float = 1e-4
    lam: float = 1.0e3  # penalty weight per point (relative variance deficit)
    shift: np.ndarray | None = None  # (P, C) multiplier estimates over lam (augmented Lagrangian); None: zero


def natural(u: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(v, b_z, rho, m_z, sigma_z)`` and ``dq/du`` (S, 5) from ``u`` (S, 5 + nb)."""
    v, bz, th, mz, sz = np.exp(u[:, 0]), np.exp(u[:, 1]), np.tanh(u[:, 2]), u[:, 3], np.exp(u[:, 4])
    rho = RHO_MAX * th
    dq = np.stack([v, bz, RHO_MAX * (1.0 - th * th), np.ones_like(v), sz], axis=1)
    return v, bz, rho, mz, sz, dq


def svi_z(z, nat, order: int = 0):
    """SVI part: ``w`` and ``dw/du[:5]`` at ``z`` (S, M); with ``order=2`` also ``w_z, w_zz`` and derivatives."""
    v, bz, rho, mz, sz, dq = nat
    v, bz, rho, mz, sz = (x[:, None] for x in (v, bz, rho, mz, sz))
    x = z - mz
    r = np.sqrt(x * x + sz * sz)
    c = np.sqrt(1.0 - rho * rho)
    core = rho * x + r - sz * c
    w = v + bz * core
    xr = x / r
    dqn = dq[:, None, :]
    dw = np.stack([np.ones_like(w), core, bz * (x + sz * rho / c), -bz * (rho + xr), bz * (sz / r - c)],
                  axis=-1) * dqn
    if order < 2:
        return w, dw
    r3 = r * r * r
    wz = bz * (rho + xr)
    wzz = bz * sz * sz / r3
    zero = np.zeros_like(w)
    dwz = np.stack([zero, rho + xr, np.broadcast_to(bz, w.shape), -bz * sz * sz / r3, -bz * x * sz / r3],
                   axis=-1) * dqn
    r5 = r3 * r * r
    dwzz = np.stack([zero, sz * sz / r3, zero, 3.0 * bz * sz * sz * x / r5, bz * sz * (2 * x * x - sz * sz) / r5],
                    axis=-1) * dqn
    return w, dw, wz, dwz, wzz, dwzz


def with_correction(w, dw, phi, gamma, s2):
    """Add ``s^2 phi @ gamma`` to ``w`` and append ``s^2 phi`` to ``dw``."""
    if phi.shape[-1] == 0:
        return w, dw
    sp = s2[:, None, None] * phi
    return w + np.einsum("smj,sj->sm", sp, gamma), np.concatenate([dw, sp], axis=-1)


def g_and_grad(z, s, w, dw, wz, dwz, wzz, dwzz):
    """Gatheral-Jacquier ``g`` in ``k = s z`` and its gradient in ``u``."""
    s2 = (s * s)[:, None]
    wpos = np.maximum(w, _W_TINY)
    a = 1.0 - z * wz / (2.0 * wpos)
    g = a * a - wz * wz / (4.0 * s2) * (1.0 / wpos + 0.25) + wzz / (2.0 * s2)
    gw = a * z * wz / (wpos * wpos) + wz * wz / (4.0 * s2 * wpos * wpos)
    gwz = -a * z / wpos - wz / (2.0 * s2) * (1.0 / wpos + 0.25)
    gwzz = 1.0 / (2.0 * s2)
    dg = gw[..., None] * dw + gwz[..., None] * dwz + gwzz[..., None] * dwzz
    return g, dg


def residuals(u: np.ndarray, b: Batch, jac: bool = True):
    """Per-smile residual rows ``r`` (S, R) and, with ``jac``, ``dr/du`` (S, R, 5 + nb)."""
    nat = natural(u)
    v, bz, rho, mz, sz, dq = nat
    gamma = u[:, 5:]
    s2 = b.s * b.s
    t = b.t[:, None]
    w, dw = with_correction(*svi_z(b.z, nat), b.phi, gamma, s2)
    sig = np.sqrt(np.maximum(w, _W_TINY) / t)
    # data, soft-L1 as an exact square
    e = b.wd * (sig - b.tgt)
    f = b.robust
    q = np.sqrt(1.0 + (e / f) ** 2)
    r_d = math.sqrt(2.0) * e / np.sqrt(q + 1.0)
    # band
    outside = sig - np.clip(sig, b.lo, b.hi)
    r_b = b.wb * outside
    # butterfly
    wg, dwg, wz, dwz, wzz, dwzz = svi_z(b.zg, nat, order=2)
    wg, dwg = with_correction(wg, dwg, b.phig[0], gamma, s2)
    wz, dwz = with_correction(wz, dwz, b.phig[1], gamma, s2)
    wzz, dwzz = with_correction(wzz, dwzz, b.phig[2], gamma, s2)
    g, dg = g_and_grad(b.zg, b.s, wg, dwg, wz, dwz, wzz, dwzz)
    act_g = g < b.g_floor
    r_g = math.sqrt(LAM_G) * np.where(act_g, b.g_floor - g, 0.0)
    # Lee, in k: b = b_z / s
    lee = bz * (1.0 + np.abs(rho)) / b.s - 2.0 + LEE_MARGIN
    r_l = math.sqrt(LAM_L) * np.maximum(lee, 0.0)[:, None]
    # priors
    r_p = (u[:, :5] - b.u0) / b.tau
    parts = [r_d, r_b, r_g, r_l, r_p]
    nb = b.nb
    if nb:
        parts.append(gamma / b.tau_c[:, None])
        if nb > 2:
            parts.append((gamma[:, :-2] - 2.0 * gamma[:, 1:-1] + gamma[:, 2:]) / b.tau_s)
    r = np.concatenate(parts, axis=1)
    if not jac:
        return r
    S, P = len(u), 5 + nb
    dsig = dw / (2.0 * (sig * t))[..., None]
    j_d = (np.sqrt((q + 1.0) / 2.0) / q * b.wd)[..., None] * dsig
    j_b = (b.wb * (outside != 0))[..., None] * dsig
    j_g = -math.sqrt(LAM_G) * np.where(act_g[..., None], dg, 0.0)
    j_l = np.zeros((S, 1, P))
    on = lee > 0
    j_l[:, 0, 1] = np.where(on, math.sqrt(LAM_L) * bz * (1.0 + np.abs(rho)) / b.s, 0.0)
    j_l[:, 0, 2] = np.where(on, math.sqrt(LAM_L) * bz / b.s * np.sign(rho) * dq[:, 2], 0.0)
    j_p = np.zeros((S, 5, P))
    j_p[:, np.arange(5), np.arange(5)] = 1.0 / b.tau
    jparts = [j_d, j_b, j_g, j_l, j_p]
    if nb:
        j_r = np.zeros((S, nb, P))
        j_r[:, np.arange(nb), 5 + np.arange(nb)] = 1.0 / b.tau_c[:, None]
        jparts.append(j_r)
        if nb > 2:
            d2 = np.zeros((nb - 2, nb))
            i = np.arange(nb - 2)
            d2[i, i], d2[i, i + 1], d2[i, i + 2] = 1.0, -2.0, 1.0
            j_s = np.zeros((S, nb - 2, P))
            j_s[:, :, 5:] = d2 / b.tau_s
            jparts.append(j_s)
    return r, np.concatenate(jparts, axis=1)


def calendar_residuals(u: np.ndarray, b: Batch, cal: Calendar, jac: bool = True, seen: np.ndarray | None = None):
    """Calendar rows ``r`` (P, C) and Jacobians wrt the short and the long smile (P, C, 5 + nb).

    ``seen`` (P, C), when given, is updated in place: rows active here are marked, rows
    farther than ``SEEN_BAND`` (relative to ``s_T2^2``) from binding are cleared. The
    Jacobian then also holds the marked rows that are inactive here. The Gauss-Newton
    model of a hinge ``max(0, d)`` is blind to a row inactive at the current point, so
    a step that crosses it is rejected, and without the row the next model proposes the
    same crossing, only shorter (a cascade of rejections, then many steps while the
    damping relaxes). A marked row has residual 0, so it adds curvature to the model and
    no gradient: the stationary points are unchanged, only the path to them.
    """
    nat = natural(u)
    sh, lg = cal.short, cal.long
    s2 = b.s * b.s

    def side(rows, phi):
        sub = tuple(x[rows] for x in nat)
        return with_correction(*svi_z(cal.k / b.s[rows][:, None], sub), phi, u[rows, 5:], s2[rows])

    w1, dw1 = side(sh, cal.phi_short)
    w2, dw2 = side(lg, cal.phi_long)
    scale = math.sqrt(cal.lam) / cal.ws[:, None]
    offset = cal.margin if cal.shift is None else cal.margin + cal.shift
    deficit = w1 - w2 + offset * cal.ws[:, None]
    act = deficit > 0
    in_model = act
    if seen is not None:
        seen |= act
        seen &= deficit >= -SEEN_BAND * cal.ws[:, None]
        in_model = seen
    r = scale * np.where(act, deficit, 0.0)
    if not jac:
        return r
    m = (scale * in_model)[..., None]
    return r, m * dw1, -m * dw2


def cost(u: np.ndarray, b: Batch) -> np.ndarray:
    r = residuals(u, b, jac=False)
    return np.einsum("sr,sr->s", r, r)


def _clip_step(delta: np.ndarray, max_norm: float = 3.0) -> np.ndarray:
    n = np.linalg.norm(delta, axis=-1, keepdims=True)
    return delta * np.minimum(1.0, max_norm / np.maximum(n, 1e-300))


def quasi_explicit_starts(b: Batch, n_keep: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Starting ``u`` (S, n_keep, 5) for each smile, and their approximate costs.

    For fixed ``(m_z, sigma_z)`` SVI is linear in ``(a, b rho, b)``: ``w = a + d x + c R``
    with ``x = z - m_z``, ``R = sqrt(x^2 + sigma_z^2)``. A grid of 7 x 6 ``(m_z, sigma_z)``
    each gets a weighted linear least squares on the targets (weights turning a ``w``
    error into a vol error over the half-spread), clipped to ``c > 0, |d| <= 0.95 c,
    w_min > 0``; the ``n_keep`` best per smile start the Levenberg-Marquardt
    (the quasi-explicit calibration of Zeliade Systems, 2009).
    """
    ms = np.linspace(-1.5, 1.5, 7)
    ss = np.geomspace(0.15, 4.0, 6)
    mm, sg = (x.reshape(-1) for x in np.meshgrid(ms, ss, indexing="ij"))
    S, G = len(b.t), len(mm)
    fit = b.wd > 0
    wt = np.where(fit, b.wd / (2.0 * np.maximum(b.tgt, 1e-6) * b.t[:, None]), 0.0)  # (S, N)
    wt = np.where(fit, wt, 0.0)
    y = np.where(fit, b.tgt * b.tgt * b.t[:, None], 0.0)
    x = b.z[:, None, :] - mm[None, :, None]  # (S, G, N)
    r = np.sqrt(x * x + sg[None, :, None] ** 2)
    design = np.stack([np.ones_like(x), x, r], axis=-1) * wt[:, None, :, None]  # (S, G, N, 3)
    yy = y[:, None, :] * wt[:, None, :]
    a = np.einsum("sgni,sgnj->sgij", design, design)
    a = a + (1e-9 * np.trace(a, axis1=2, axis2=3) + 1e-30)[..., None, None] * np.eye(3)  # fewer than 3 quotes
    rhs = np.einsum("sgni,sgn->sgi", design, yy)
    coef = np.linalg.solve(a, rhs[..., None])[..., 0]
    c = np.maximum(coef[..., 2], 1e-6 * np.maximum(y.max(axis=1, keepdims=True), 1e-8))
    d = np.clip(coef[..., 1], -0.95 * c, 0.95 * c)
    rho = d / c
    sig = np.broadcast_to(sg, c.shape)
    vmin = np.maximum(coef[..., 0] + c * sig * np.sqrt(1.0 - rho * rho), 1e-4 * y.max(axis=1, keepdims=True) + 1e-10)
    aa = vmin - c * sig * np.sqrt(1.0 - rho * rho)
    pred = aa[..., None] + d[..., None] * x + c[..., None] * r
    cost = np.einsum("sgn,sgn->sg", (pred - y[:, None, :]) * wt[:, None, :], (pred - y[:, None, :]) * wt[:, None, :])
    best = np.argsort(cost, axis=1)[:, :n_keep]
    pick = lambda arr: np.take_along_axis(np.broadcast_to(arr, cost.shape), best, axis=1)  # noqa: E731
    u = np.stack([np.log(pick(vmin)), np.log(pick(c)), np.arctanh(pick(rho) / RHO_MAX), pick(mm[None, :]),
                  np.log(pick(sig))], axis=-1)
    return u, np.take_along_axis(cost, best, axis=1)


class _Damping:
    """Nielsen's Levenberg-Marquardt damping from the gain ratio (Madsen, Nielsen & Tingleff 2004)."""

    def __init__(self, n: int) -> None:
        self.mu = np.full(n, 1e-3)
        self.nu = np.full(n, 2.0)

    def update(self, ok: np.ndarray, ratio: np.ndarray) -> None:
        good = np.maximum(1.0 / 3.0, 1.0 - (2.0 * np.clip(ratio, 0.0, 1.0) - 1.0) ** 3)
        self.mu = np.where(ok, np.maximum(self.mu * good, 1e-12), self.mu * self.nu)
        self.nu = np.where(ok, 2.0, self.nu * 2.0)


def solve_independent(u: np.ndarray, b: Batch, iterations: int, tol: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Levenberg-Marquardt on each smile separately (one damping per smile); returns u, cost, iterations.

    A smile stops when an accepted step gains less than ``tol`` of its cost, or its
    damping runs away (no step improves it).
    """
    u = u.copy()
    P = u.shape[1]
    damp = _Damping(len(u))
    c = cost(u, b)
    active = np.ones(len(u), dtype=bool)
    it = 0
    eye = np.eye(P)[None]
    A = np.zeros((len(u), P, P))
    G = np.zeros((len(u), P))
    stale = np.ones(len(u), dtype=bool)  # normal equations need recomputing (u moved)
    for it in range(1, iterations + 1):
        rows = np.flatnonzero(active)
        sub = b.take(rows) if len(rows) < len(u) else b
        redo = rows[stale[rows]]
        if len(redo):
            r, j = residuals(u[redo], b.take(redo) if len(redo) < len(u) else b)
            A[redo] = np.einsum("sri,srj->sij", j, j)
            G[redo] = np.einsum("sri,sr->si", j, r)
            stale[redo] = False
        a, grad = A[rows], G[rows]
        d = np.maximum(np.diagonal(a, axis1=1, axis2=2), 1e-12)
        mu = damp.mu[rows]
        delta = _clip_step(np.linalg.solve(a + (mu[:, None] * d)[:, :, None] * eye, -grad[..., None])[..., 0])
        pred = -(2.0 * np.einsum("si,si->s", delta, grad) + np.einsum("si,sij,sj->s", delta, a, delta))
        u_try = u[rows] + delta
        c_try = cost(u_try, sub)
        ok = np.isfinite(c_try) & (c_try < c[rows])
        gain = np.where(ok, c[rows] - c_try, 0.0)
        u[rows[ok]] = u_try[ok]
        c[rows[ok]] = c_try[ok]
        stale[rows[ok]] = True
        sub_damp = _Damping(len(rows))
        sub_damp.mu, sub_damp.nu = damp.mu[rows], damp.nu[rows]
        sub_damp.update(ok, gain / np.maximum(pred, 1e-300))
        damp.mu[rows], damp.nu[rows] = sub_damp.mu, sub_damp.nu
        done = (ok & (gain <= tol * np.maximum(c[rows], 1e-12))) | (sub_damp.mu > 1e10)
        active[rows[done]] = False
        if not active.any():
            break
    return u, c, it


def joint_cost(u: np.ndarray, b: Batch, cal: Calendar | None, seen: np.ndarray | None = None) -> float:
    total = float(cost(u, b).sum())
    if cal is not None and len(cal.short):
        r = calendar_residuals(u, b, cal, jac=False, seen=seen)
        total += float(np.einsum("pc,pc->", r, r))
    return total


def solve_joint(u: np.ndarray, b: Batch, cal: Calendar | None, iterations: int,
                tol: float) -> tuple[np.ndarray, float, int]:
    """Levenberg-Marquardt on all smiles at once, coupled by the calendar rows."""
    n, P = u.shape
    u = u.copy()
    damp = _Damping(1)
    seen = np.zeros(cal.k.shape, dtype=bool) if cal is not None else None  # see calendar_residuals
    c = joint_cost(u, b, cal, seen)
    idx = np.arange(n)
    it = 0
    a = np.zeros((n, P, n, P))
    fresh = False  # the normal equations at u are reused after a rejected step
    for it in range(1, iterations + 1):
        if fresh:
            delta = _lm_step(flat, g, damp.mu[0], n, P)
            pred = -(2.0 * delta @ g + delta @ flat @ delta)
            u_try = u + delta.reshape(n, P)
            c_try = joint_cost(u_try, b, cal, seen)
            ok = math.isfinite(c_try) and c_try < c
            gain = c - c_try if ok else 0.0
            damp.update(np.array([ok]), np.array([gain / max(pred, 1e-300)]))
            if ok:
                u, c, fresh = u_try, c_try, False
                if gain <= tol * max(c, 1e-12):
                    break
            elif damp.mu[0] > 1e10:
                break
            continue
        r, j = residuals(u, b)
        a[:] = 0.0
        a[idx, :, idx, :] = np.einsum("sri,srj->sij", j, j)
        grad = np.einsum("sri,sr->si", j, r)
        if cal is not None and len(cal.short):
            rc, j1, j2 = calendar_residuals(u, b, cal, seen=seen)
            for p in np.flatnonzero(seen.any(axis=1)):  # few pairs are in the model; a loop beats np.add.at here
                s1, s2 = cal.short[p], cal.long[p]
                a[s1, :, s1, :] += j1[p].T @ j1[p]
                a[s2, :, s2, :] += j2[p].T @ j2[p]
                cross = j1[p].T @ j2[p]
                a[s1, :, s2, :] += cross
                a[s2, :, s1, :] += cross.T
                grad[s1] += j1[p].T @ rc[p]
                grad[s2] += j2[p].T @ rc[p]
        flat = a.reshape(P * n, P * n).copy()
        g = grad.reshape(-1)
        fresh = True
        delta = _lm_step(flat, g, damp.mu[0], n, P)
        pred = -(2.0 * delta @ g + delta @ flat @ delta)
        u_try = u + delta.reshape(n, P)
        c_try = joint_cost(u_try, b, cal, seen)
        ok = math.isfinite(c_try) and c_try < c
        gain = c - c_try if ok else 0.0
        damp.update(np.array([ok]), np.array([gain / max(pred, 1e-300)]))
        if ok:
            u, c, fresh = u_try, c_try, False
            if gain <= tol * max(c, 1e-12):
                break
        elif damp.mu[0] > 1e10:
            break
    return u, c, it


def _lm_step(flat: np.ndarray, g: np.ndarray, mu: float, n: int, p: int) -> np.ndarray:
    d = np.maximum(np.diagonal(flat), 1e-12)
    delta = np.linalg.solve(flat + np.diag(mu * d + 1e-12), -g)
    return _clip_step(delta.reshape(n, p)).reshape(-1)
