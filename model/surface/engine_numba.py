"""The compiled kernel: the same objective as :mod:`model.surface.engine`, in Numba loops.

Written by hand because it is the hot path of the live surface and no library
solves it well at this size. The numpy reference builds the whole Jacobian as
arrays and pays a few microseconds per array operation (hundreds per iteration);
a JAX kernel, tried before this one, paid about as much per XLA operation (~1.3 ms
per iteration at 16 smiles, and a compile per shape). Here each residual row is computed in scalar code and
folded straight into the normal equations ``J^T J`` and ``J^T r`` (no Jacobian is
stored), and the joint system, whose calendar rows couple only consecutive
expiries, is block tridiagonal, so it is factored block by block (a block
Cholesky: ``n`` factorizations of ``(5 + nb)``-square blocks instead of one of
``n (5 + nb)``).

The Levenberg-Marquardt loops (Nielsen damping, steps clipped per smile, a
rejected step reuses the normal equations) follow the reference step for step;
the tests hold the two to the same costs and iteration counts. Functions are
compiled on first use and cached on disk (``cache=True``), so a process pays the
compile (~10 s) once per installation, not per start.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from model.surface.engine import LAM_G, LAM_L, LEE_MARGIN, RHO_MAX, SEEN_BAND, Batch, Calendar

__all__ = ["solve_independent", "solve_joint", "smile_values", "arbitrage_scan", "bspline_rows", "interp_each",
           "near_money_quadratic"]

_W_TINY = 1e-12
_SQRT2 = math.sqrt(2.0)
_SQRT_LAM_G = math.sqrt(LAM_G)
_SQRT_LAM_L = math.sqrt(LAM_L)
_MAX_STEP = 3.0  # largest step norm per smile, as engine._clip_step

# error_model="numpy": a division by zero gives inf or nan, as in numpy, instead of a
# checked ZeroDivisionError branch per division (which also blocks vectorization); a
# non-finite cost is a rejected step.
_kernel = njit(cache=True, error_model="numpy")
_inline = njit(cache=True, error_model="numpy", inline="always")


@_inline
def _svi0(z, v, bz, rho, mz, sz, drho, c, dw):
    """Raw SVI in z at one point (``c = sqrt(1 - rho^2)``); writes ``dw/du[:5]`` into ``dw`` and returns ``w``."""
    x = z - mz
    r = math.sqrt(x * x + sz * sz)
    core = rho * x + r - sz * c
    dw[0] = v
    dw[1] = core * bz
    dw[2] = bz * (x + sz * rho / c) * drho
    dw[3] = -bz * (rho + x / r)
    dw[4] = bz * (sz / r - c) * sz
    return v + bz * core


@_inline
def _svi_w(z, v, bz, rho, mz, sz, c):
    """:func:`_svi0` without the gradient."""
    x = z - mz
    return v + bz * (rho * x + math.sqrt(x * x + sz * sz) - sz * c)


@_inline
def _svi_w2(z, v, bz, rho, mz, sz, c):
    """``(w, w_z, w_zz)`` of raw SVI in z, without gradients."""
    x = z - mz
    r = math.sqrt(x * x + sz * sz)
    ir = 1.0 / r
    return v + bz * (rho * x + r - sz * c), bz * (rho + x * ir), bz * sz * sz * ir * ir * ir


@_inline
def _svi2(z, v, bz, rho, mz, sz, drho, c, dw, dwz, dwzz):
    """:func:`_svi0` with ``w_z`` and ``w_zz`` and their gradients; returns ``(w, w_z, w_zz)``."""
    x = z - mz
    r = math.sqrt(x * x + sz * sz)
    ir = 1.0 / r
    xr = x * ir
    s2r3 = sz * sz * ir * ir * ir
    core = rho * x + r - sz * c
    dw[0] = v
    dw[1] = core * bz
    dw[2] = bz * (x + sz * rho / c) * drho
    dw[3] = -bz * (rho + xr)
    dw[4] = bz * (sz * ir - c) * sz
    dwz[0] = 0.0
    dwz[1] = (rho + xr) * bz
    dwz[2] = bz * drho
    dwz[3] = -bz * s2r3
    dwz[4] = -bz * x * s2r3
    dwzz[0] = 0.0
    dwzz[1] = s2r3 * bz
    dwzz[2] = 0.0
    dwzz[3] = 3.0 * bz * s2r3 * xr * ir
    dwzz[4] = bz * (2.0 * x * x - sz * sz) * s2r3 * ir * ir
    return v + bz * core, bz * (rho + xr), bz * s2r3


@_inline
def _add_row(row, r, A, G, P):
    """One residual row into ``G`` and the upper triangle of ``A`` (:func:`_mirror` fills the rest)."""
    for a in range(P):
        ra = row[a]
        if ra != 0.0:
            G[a] += ra * r
            for c in range(a, P):
                A[a, c] += ra * row[c]


@_inline
def _mirror(A):
    for a in range(A.shape[0]):
        for c in range(a):
            A[a, c] = A[c, a]


@_kernel
def _smile(u, t, s, z, tgt, wd, lo, hi, wb, zg, u0, tau, phi, phig, i, tau_c, tau_s, robust, g_floor,
           jac, A, G, scratch):
    """Cost of smile ``i`` (sum of squared residuals); with ``jac`` also ``A = J^T J``, ``G = J^T r``."""
    P = u.size
    nb = P - 5
    v = math.exp(u[0])
    bz = math.exp(u[1])
    th = math.tanh(u[2])
    rho = RHO_MAX * th
    drho = RHO_MAX * (1.0 - th * th)
    mz = u[3]
    sz = math.exp(u[4])
    cr = math.sqrt(1.0 - rho * rho)
    s2 = s * s
    dw, dwz, dwzz, row = scratch[0], scratch[1], scratch[2], scratch[3]  # (4, P) work rows, reused
    if jac:
        A[:, :] = 0.0
        G[:] = 0.0
    total = 0.0
    for n in range(z.size):
        if wd[n] == 0.0 and wb[n] == 0.0:
            continue  # padding
        w = _svi0(z[n], v, bz, rho, mz, sz, drho, cr, dw)
        for j in range(nb):
            sp = s2 * phi[n, j]
            w += sp * u[5 + j]
            dw[5 + j] = sp
        sig = math.sqrt(max(w, _W_TINY) / t)
        dsig = 1.0 / (2.0 * (sig * t))
        if wd[n] != 0.0:
            e = wd[n] * (sig - tgt[n])
            q = math.sqrt(1.0 + (e / robust) ** 2)
            r = _SQRT2 * e / math.sqrt(q + 1.0)
            total += r * r
            if jac:
                f = math.sqrt((q + 1.0) / 2.0) / q * wd[n] * dsig
                for a in range(P):
                    row[a] = f * dw[a]
                _add_row(row, r, A, G, P)
        outside = sig - min(max(sig, lo[n]), hi[n])
        if outside != 0.0 and wb[n] != 0.0:
            r = wb[n] * outside
            total += r * r
            if jac:
                f = wb[n] * dsig
                for a in range(P):
                    row[a] = f * dw[a]
                _add_row(row, r, A, G, P)
    half_is2 = 0.5 / s2
    for n in range(zg.size):
        zz = zg[n]
        w, wz, wzz = _svi_w2(zz, v, bz, rho, mz, sz, cr)
        for j in range(nb):
            gj = u[5 + j]
            w += s2 * phig[0, i, n, j] * gj
            wz += s2 * phig[1, i, n, j] * gj
            wzz += s2 * phig[2, i, n, j] * gj
        wpos = max(w, _W_TINY)
        a_ = 1.0 - zz * wz / (2.0 * wpos)
        g = a_ * a_ - 0.5 * wz * wz * half_is2 * (1.0 / wpos + 0.25) + wzz * half_is2
        if g >= g_floor:
            continue
        r = _SQRT_LAM_G * (g_floor - g)
        total += r * r
        if jac:  # the gradient only where the penalty is active (few points)
            _svi2(zz, v, bz, rho, mz, sz, drho, cr, dw, dwz, dwzz)
            for j in range(nb):
                dw[5 + j] = s2 * phig[0, i, n, j]
                dwz[5 + j] = s2 * phig[1, i, n, j]
                dwzz[5 + j] = s2 * phig[2, i, n, j]
            gw = a_ * zz * wz / (wpos * wpos) + 0.5 * wz * wz * half_is2 / (wpos * wpos)
            gwz = -a_ * zz / wpos - wz * half_is2 * (1.0 / wpos + 0.25)
            for a in range(P):
                row[a] = -_SQRT_LAM_G * (gw * dw[a] + gwz * dwz[a] + half_is2 * dwzz[a])
            _add_row(row, r, A, G, P)
    lee = bz * (1.0 + abs(rho)) / s - 2.0 + LEE_MARGIN
    if lee > 0.0:
        r = _SQRT_LAM_L * lee
        total += r * r
        if jac:
            row[:] = 0.0
            row[1] = _SQRT_LAM_L * bz * (1.0 + abs(rho)) / s
            row[2] = _SQRT_LAM_L * bz / s * np.sign(rho) * drho
            _add_row(row, r, A, G, P)
    for a in range(5):
        r = (u[a] - u0[a]) / tau[a]
        total += r * r
        if jac:
            A[a, a] += 1.0 / (tau[a] * tau[a])
            G[a] += r / tau[a]
    for j in range(nb):
        r = u[5 + j] / tau_c
        total += r * r
        if jac:
            A[5 + j, 5 + j] += 1.0 / (tau_c * tau_c)
            G[5 + j] += r / tau_c
    if nb > 2:
        for j in range(nb - 2):
            r = (u[5 + j] - 2.0 * u[6 + j] + u[7 + j]) / tau_s
            total += r * r
            if jac:
                row[:] = 0.0
                row[5 + j] = 1.0 / tau_s
                row[6 + j] = -2.0 / tau_s
                row[7 + j] = 1.0 / tau_s
                _add_row(row, r, A, G, P)
    return total


@_kernel
def _calendar_pair(u1, u2, s1, s2, k, phi1, phi2, ws, offset, lam, seen, jac, A11, A22, A12, G1, G2, scratch):
    """Cost of one pair's calendar rows; with ``jac`` adds their normal-equation blocks.

    ``seen`` marks the rows kept in the model, as :func:`model.surface.engine.calendar_residuals`.
    """
    P = u1.size
    nb = P - 5
    dw1, dw2 = scratch[0], scratch[1]
    th1, th2 = math.tanh(u1[2]), math.tanh(u2[2])
    v1, bz1, mz1, sz1 = math.exp(u1[0]), math.exp(u1[1]), u1[3], math.exp(u1[4])
    v2, bz2, mz2, sz2 = math.exp(u2[0]), math.exp(u2[1]), u2[3], math.exp(u2[4])
    rho1, drho1 = RHO_MAX * th1, RHO_MAX * (1.0 - th1 * th1)
    rho2, drho2 = RHO_MAX * th2, RHO_MAX * (1.0 - th2 * th2)
    c1, c2 = math.sqrt(1.0 - rho1 * rho1), math.sqrt(1.0 - rho2 * rho2)
    q1, q2 = s1 * s1, s2 * s2
    is1, is2 = 1.0 / s1, 1.0 / s2
    scale = math.sqrt(lam) / ws
    total = 0.0
    for p in range(k.size):
        z1, z2 = k[p] * is1, k[p] * is2
        w1 = _svi_w(z1, v1, bz1, rho1, mz1, sz1, c1)
        w2 = _svi_w(z2, v2, bz2, rho2, mz2, sz2, c2)
        for j in range(nb):
            w1 += q1 * phi1[p, j] * u1[5 + j]
            w2 += q2 * phi2[p, j] * u2[5 + j]
        deficit = w1 - w2 + offset[p] * ws
        if deficit > 0.0:
            seen[p] = True
        elif deficit < -SEEN_BAND * ws:
            seen[p] = False
            continue
        elif not (jac and seen[p]):
            continue
        r = scale * max(deficit, 0.0)
        total += r * r
        if jac:  # the gradient only where the row is in the model
            _svi0(z1, v1, bz1, rho1, mz1, sz1, drho1, c1, dw1)
            _svi0(z2, v2, bz2, rho2, mz2, sz2, drho2, c2, dw2)
            for j in range(nb):
                dw1[5 + j] = q1 * phi1[p, j]
                dw2[5 + j] = q2 * phi2[p, j]
            for a in range(P):
                j1 = scale * dw1[a]
                j2 = -scale * dw2[a]
                G1[a] += j1 * r
                G2[a] += j2 * r
                for b in range(P):
                    A12[a, b] -= j1 * scale * dw2[b]
                for b in range(a, P):  # upper triangles, as _add_row
                    A11[a, b] += j1 * scale * dw1[b]
                    A22[a, b] -= j2 * scale * dw2[b]
    return total


@_kernel
def _joint(u, t, s, z, tgt, wd, lo, hi, wb, zg, u0, tau, phi, phig, tau_c, tau_s, robust, g_floor,
           short, k_cal, phi_short, phi_long, ws, offset, lam, seen, jac, D, O, G):
    """Joint cost; with ``jac`` the block-tridiagonal normal equations: diagonal ``D``, upper ``O``, ``G``."""
    n, P = u.shape
    scratch = np.empty((4, P))  # work rows shared by every smile and pair (each fills what it reads)
    total = 0.0
    for i in range(n):
        total += _smile(u[i], t[i], s[i], z[i], tgt[i], wd[i], lo[i], hi[i], wb[i], zg[i], u0[i], tau[i], phi[i],
                        phig, i, tau_c[i], tau_s, robust, g_floor, jac, D[i], G[i], scratch)
    if jac:
        O[:, :, :] = 0.0
    for p in range(short.size):
        a = short[p]
        total += _calendar_pair(u[a], u[a + 1], s[a], s[a + 1], k_cal[p], phi_short[p], phi_long[p], ws[p],
                                offset[p], lam, seen[p], jac, D[a], D[a + 1], O[a], G[a], G[a + 1], scratch)
    if jac:
        for i in range(n):
            _mirror(D[i])
    return total


@_kernel
def _cholesky(M, L):
    """Lower Cholesky factor of ``M`` into ``L``; False if ``M`` is not positive definite."""
    P = M.shape[0]
    for j in range(P):
        d = M[j, j]
        for q in range(j):
            d -= L[j, q] * L[j, q]
        if not d > 0.0:
            return False
        L[j, j] = math.sqrt(d)
        for i in range(j + 1, P):
            x = M[i, j]
            for q in range(j):
                x -= L[i, q] * L[j, q]
            L[i, j] = x / L[j, j]
        for i in range(j):
            L[i, j] = 0.0
    return True


@_kernel
def _forward(L, b):
    """``L^{-1} b`` in place."""
    P = L.shape[0]
    for i in range(P):
        x = b[i]
        for q in range(i):
            x -= L[i, q] * b[q]
        b[i] = x / L[i, i]


@_kernel
def _backward(L, b):
    """``L^{-T} b`` in place."""
    P = L.shape[0]
    for i in range(P - 1, -1, -1):
        x = b[i]
        for q in range(i + 1, P):
            x -= L[q, i] * b[q]
        b[i] = x / L[i, i]


@_kernel
def _clip(delta):
    nrm = math.sqrt(np.sum(delta * delta))
    f = min(1.0, _MAX_STEP / max(nrm, 1e-300))
    for a in range(delta.size):
        delta[a] *= f


@_kernel
def _block_step(D, O, G, mu, ridge, delta):
    """Solve ``(A + diag(mu d + ridge)) delta = -G`` for block-tridiagonal ``A`` by block Cholesky.

    ``d = max(diag A, 1e-12)``. False when a pivot block is not positive definite.
    """
    n, P = G.shape
    Ls = np.zeros((n, P, P))
    C = np.zeros((n, P, P))  # block (i + 1, i) of the factor
    M = np.empty((P, P))
    for i in range(n):
        M[:, :] = D[i]
        for a in range(P):
            M[a, a] += mu * max(D[i, a, a], 1e-12) + ridge
        if i > 0:
            for a in range(P):
                for b in range(a + 1):
                    x = 0.0
                    for q in range(P):
                        x += C[i - 1, a, q] * C[i - 1, b, q]
                    M[a, b] -= x  # the lower triangle is all _cholesky reads
        if not _cholesky(M, Ls[i]):
            return False
        if i < n - 1:  # C_i L_i^T = O_i^T, row by row: L_i C_i[r]^T = O_i^T[r]^T
            for r in range(P):
                for a in range(P):
                    C[i, r, a] = O[i, a, r]
                _forward(Ls[i], C[i, r])
    y = -G.copy()
    for i in range(n):
        if i > 0:
            for a in range(P):
                for q in range(P):
                    y[i, a] -= C[i - 1, a, q] * y[i - 1, q]
        _forward(Ls[i], y[i])
    for i in range(n - 1, -1, -1):
        if i < n - 1:
            for a in range(P):
                for q in range(P):
                    y[i, a] -= C[i, q, a] * y[i + 1, q]
        _backward(Ls[i], y[i])
    for i in range(n):
        _clip(y[i])
    delta[:, :] = y
    return True


@_kernel
def _quad(D, O, x):
    """``x^T A x`` for the block-tridiagonal ``A``."""
    n, P = x.shape
    out = 0.0
    for i in range(n):
        for a in range(P):
            for b in range(P):
                out += x[i, a] * D[i, a, b] * x[i, b]
                if i < n - 1:
                    out += 2.0 * x[i, a] * O[i, a, b] * x[i + 1, b]
    return out


@_kernel
def _damping(mu, nu, ok, ratio):
    """Nielsen's update (Madsen, Nielsen & Tingleff 2004): the new ``(mu, nu)``."""
    if ok:
        x = 2.0 * min(max(ratio, 0.0), 1.0) - 1.0
        return max(mu * max(1.0 / 3.0, 1.0 - x * x * x), 1e-12), 2.0
    return mu * nu, nu * 2.0


@_kernel
def _lm_joint(u, t, s, z, tgt, wd, lo, hi, wb, zg, u0, tau, phi, phig, tau_c, tau_s, robust, g_floor,
              short, k_cal, phi_short, phi_long, ws, offset, lam, iterations, tol):
    n, P = u.shape
    u = u.copy()
    D = np.zeros((n, P, P))
    O = np.zeros((max(n - 1, 1), P, P))
    G = np.zeros((n, P))
    delta = np.zeros((n, P))
    u_try = np.empty_like(u)
    seen = np.zeros(k_cal.shape, dtype=np.bool_)  # calendar rows active at some point of this solve
    c = _joint(u, t, s, z, tgt, wd, lo, hi, wb, zg, u0, tau, phi, phig, tau_c, tau_s, robust, g_floor,
               short, k_cal, phi_short, phi_long, ws, offset, lam, seen, False, D, O, G)
    mu, nu = 1e-3, 2.0
    fresh = False
    it = 0
    for it in range(1, iterations + 1):
        if not fresh:
            _joint(u, t, s, z, tgt, wd, lo, hi, wb, zg, u0, tau, phi, phig, tau_c, tau_s, robust, g_floor,
                   short, k_cal, phi_short, phi_long, ws, offset, lam, seen, True, D, O, G)
            fresh = True
        solved = _block_step(D, O, G, mu, 1e-12, delta)
        ok = False
        gain = 0.0
        pred = 1.0
        if solved:
            pred = -(2.0 * np.sum(delta * G) + _quad(D, O, delta))
            u_try[:, :] = u + delta
            c_try = _joint(u_try, t, s, z, tgt, wd, lo, hi, wb, zg, u0, tau, phi, phig, tau_c, tau_s, robust,
                           g_floor, short, k_cal, phi_short, phi_long, ws, offset, lam, seen, False, D, O, G)
            ok = math.isfinite(c_try) and c_try < c
            if ok:
                gain = c - c_try
        mu, nu = _damping(mu, nu, ok, gain / max(pred, 1e-300))
        if ok:
            u[:, :] = u_try
            c = c_try
            fresh = False
            if gain <= tol * max(c, 1e-12):
                break
        elif mu > 1e10:
            break
    return u, c, it


@_kernel
def _lm_independent(u, t, s, z, tgt, wd, lo, hi, wb, zg, u0, tau, phi, phig, tau_c, tau_s, robust, g_floor,
                    iterations, tol):
    S, P = u.shape
    u = u.copy()
    costs = np.zeros(S)
    A = np.zeros((P, P))
    G = np.zeros(P)
    M = np.empty((P, P))
    L = np.zeros((P, P))
    u_try = np.empty(P)
    scratch = np.empty((4, P))
    most = 0
    for i in range(S):
        ui = u[i]
        c = _smile(ui, t[i], s[i], z[i], tgt[i], wd[i], lo[i], hi[i], wb[i], zg[i], u0[i], tau[i], phi[i], phig, i,
                   tau_c[i], tau_s, robust, g_floor, False, A, G, scratch)
        mu, nu = 1e-3, 2.0
        stale = True
        it = 0
        for it in range(1, iterations + 1):
            if stale:
                _smile(ui, t[i], s[i], z[i], tgt[i], wd[i], lo[i], hi[i], wb[i], zg[i], u0[i], tau[i], phi[i], phig,
                       i, tau_c[i], tau_s, robust, g_floor, True, A, G, scratch)
                _mirror(A)
                stale = False
            M[:, :] = A
            for a in range(P):
                M[a, a] += mu * max(A[a, a], 1e-12)
            ok = False
            gain = 0.0
            pred = 1.0
            if _cholesky(M, L):
                step = -G.copy()
                _forward(L, step)
                _backward(L, step)
                _clip(step)
                pred = -2.0 * np.sum(step * G)
                for a in range(P):
                    for b in range(P):
                        pred -= step[a] * A[a, b] * step[b]
                u_try[:] = ui + step
                c_try = _smile(u_try, t[i], s[i], z[i], tgt[i], wd[i], lo[i], hi[i], wb[i], zg[i], u0[i], tau[i],
                               phi[i], phig, i, tau_c[i], tau_s, robust, g_floor, False, M, step, scratch)
                ok = math.isfinite(c_try) and c_try < c
                if ok:
                    gain = c - c_try
            mu, nu = _damping(mu, nu, ok, gain / max(pred, 1e-300))
            if ok:
                ui[:] = u_try
                c = c_try
                stale = True
            if (ok and gain <= tol * max(c, 1e-12)) or mu > 1e10:
                break
        costs[i] = c
        most = max(most, it)
    return u, costs, most


def _batch_args(b: Batch) -> tuple:
    return (b.t, b.s, b.z, b.tgt, b.wd, b.lo, b.hi, b.wb, b.zg, b.u0, b.tau, np.ascontiguousarray(b.phi),
            np.ascontiguousarray(b.phig), b.tau_c, float(b.tau_s), float(b.robust), float(b.g_floor))


def _calendar_args(cal: Calendar | None, n: int, nb: int) -> tuple:
    if cal is None or not len(cal.short):
        empty = np.zeros((0, 1))
        return (np.zeros(0, dtype=np.int64), empty, np.zeros((0, 1, nb)), np.zeros((0, 1, nb)), np.zeros(0), empty,
                0.0)
    if not np.array_equal(cal.long, cal.short + 1) or (len(cal.short) and cal.long.max() >= n):
        raise ValueError("calendar pairs must be consecutive rows (short, short + 1)")
    offset = cal.margin + (np.zeros(cal.k.shape) if cal.shift is None else cal.shift)
    return (cal.short.astype(np.int64), cal.k, np.ascontiguousarray(cal.phi_short),
            np.ascontiguousarray(cal.phi_long), cal.ws, offset, float(cal.lam))


def solve_independent(u: np.ndarray, b: Batch, iterations: int, tol: float) -> tuple[np.ndarray, np.ndarray, int]:
    """As :func:`model.surface.engine.solve_independent`."""
    return _lm_independent(np.ascontiguousarray(u, dtype=np.float64), *_batch_args(b), iterations, tol)


def solve_joint(u: np.ndarray, b: Batch, cal: Calendar | None, iterations: int,
                tol: float) -> tuple[np.ndarray, float, int]:
    """As :func:`model.surface.engine.solve_joint`."""
    u = np.ascontiguousarray(u, dtype=np.float64)
    return _lm_joint(u, *_batch_args(b), *_calendar_args(cal, len(u), u.shape[1] - 5), iterations, tol)



@_kernel
def smile_values(k, start, svi, k0, h, coef, nb):
    """``(w, w', w'')`` in ``k`` of every smile at its own points ``k[start[i]:start[i + 1]]``.

    Smile ``i`` is raw SVI ``svi[i] = (a, b, rho, m, sigma)`` plus the correction
    ``sum_j coef[i, j] N((k - k0[i]) / h[i] - j)`` over its ``nb[i]`` coefficients, as
    :meth:`model.surface.smile.Smile.derivatives`; smile by smile over contiguous
    points, so the SVI part vectorizes.
    """
    M = k.size
    w = np.empty(M)
    w1 = np.empty(M)
    w2 = np.empty(M)
    for i in range(svi.shape[0]):
        a, b, rho, m, sg = svi[i, 0], svi[i, 1], svi[i, 2], svi[i, 3], svi[i, 4]
        s2 = sg * sg
        for p in range(start[i], start[i + 1]):
            x = k[p] - m
            r2 = x * x + s2
            ir = 1.0 / math.sqrt(r2)
            w[p] = a + b * (rho * x + r2 * ir)
            w1[p] = b * (rho + x * ir)
            w2[p] = b * s2 * ir * ir * ir
        n = nb[i]
        if n == 0:
            continue
        # On knot interval j the correction is one cubic in the offset u: tabulate its
        # coefficients once per smile (bases j-3..j contribute), then each point is a lookup.
        poly = np.zeros((n + 3, 4))
        for j in range(n + 3):
            c0 = coef[i, j] if j < n else 0.0
            c1 = coef[i, j - 1] if 1 <= j <= n else 0.0
            c2 = coef[i, j - 2] if 2 <= j <= n + 1 else 0.0
            c3 = coef[i, j - 3] if j >= 3 else 0.0
            poly[j, 0] = (c1 + 4.0 * c2 + c3) / 6.0
            poly[j, 1] = (c1 - c3) / 2.0
            poly[j, 2] = (c1 - 2.0 * c2 + c3) / 2.0
            poly[j, 3] = (c0 - 3.0 * c1 + 3.0 * c2 - c3) / 6.0
        ih = 1.0 / h[i]
        lo = k0[i]
        for p in range(start[i], start[i + 1]):
            tau = (k[p] - lo) * ih
            if not 0.0 < tau < n + 3.0:
                continue  # the correction and its derivatives vanish outside its support
            j = int(tau)
            u = tau - j
            a0, a1, a2, a3 = poly[j, 0], poly[j, 1], poly[j, 2], poly[j, 3]
            w[p] += a0 + u * (a1 + u * (a2 + u * a3))
            w1[p] += (a1 + u * (2.0 * a2 + 3.0 * u * a3)) * ih
            w2[p] += (2.0 * a2 + 6.0 * u * a3) * ih * ih
    return w, w1, w2


@_kernel
def arbitrage_scan(k, svi, k0, h, coef, nb, order, bfly_tol, cal_tol):
    """Butterfly and calendar violations of the smiles on the grid ``k`` (sorted).

    Returns ``(butterfly, calendar, bad)``: (smile, point) pairs with ``g(k) < bfly_tol``
    or ``w <= 0`` (Gatheral & Jacquier 2014), pairs of consecutive expiries (in
    ``order``) and points with ``w_T2 < w_T1 - cal_tol w_T2(0)``, and the grid points
    where any of them happens.
    """
    S, M = svi.shape[0], k.size
    start = np.arange(S + 1) * M
    w, w1, w2 = smile_values(_tile(k, S), start, svi, k0, h, coef, nb)
    bad = np.zeros(M, dtype=np.bool_)
    butterfly = 0
    for i in range(S):
        for p in range(M):
            q = i * M + p
            wv = w[q]
            if wv > 0.0:
                x = 1.0 - k[p] * w1[q] / (2.0 * wv)
                g = x * x - 0.25 * w1[q] * w1[q] * (1.0 / wv + 0.25) + 0.5 * w2[q]
                broken = g < bfly_tol
            else:
                broken = True
            if broken:
                butterfly += 1
                bad[p] = True
    calendar = 0
    for c in range(S - 1):
        i, j = order[c] * M, order[c + 1] * M
        atm = max(np.interp(0.0, k, w[j:j + M]), 1e-300)
        for p in range(M):
            if w[j + p] - w[i + p] < -cal_tol * atm:
                calendar += 1
                bad[p] = True
    return butterfly, calendar, bad


@_kernel
def _tile(k, n):
    out = np.empty(n * k.size)
    for i in range(n):
        out[i * k.size:(i + 1) * k.size] = k
    return out


@_kernel
def bspline_rows(x, lo, h, nb, nd):
    """Cubic B-spline bases ``N((x - lo[s]) / h[s] - j)``, ``j < nb``, and their first ``nd - 1`` derivatives
    in ``x``, for rows ``x[s]`` with their own knots: shape ``(nd, S, M, nb)``.

    As :func:`model.surface.engine.bspline_basis` row by row; only the four bases
    alive on each point's knot interval are written.
    """
    S, M = x.shape
    out = np.zeros((nd, S, M, nb))
    for s in range(S):
        ih = 1.0 / h[s]
        for p in range(M):
            tau = (x[s, p] - lo[s]) * ih
            if not 0.0 < tau < nb + 3.0:
                continue
            fl = math.floor(tau)
            u = tau - fl
            j0 = int(fl)
            u2 = u * u
            u3 = u2 * u
            v = 1.0 - u
            for q in range(4):
                j = j0 - q
                if j < 0 or j >= nb:
                    continue
                if q == 0:
                    f0, f1, f2 = u3 / 6, u2 / 2, u
                elif q == 1:
                    f0, f1, f2 = (-3 * u3 + 3 * u2 + 3 * u + 1) / 6, (-9 * u2 + 6 * u + 3) / 6, -3 * u + 1
                elif q == 2:
                    f0, f1, f2 = (3 * u3 - 6 * u2 + 4) / 6, (9 * u2 - 12 * u) / 6, 3 * u - 2
                else:
                    f0, f1, f2 = v * v * v / 6, -(v * v) / 2, v
                out[0, s, p, j] = f0
                if nd > 1:
                    out[1, s, p, j] = f1 * ih
                if nd > 2:
                    out[2, s, p, j] = f2 * ih * ih
    return out


@_kernel
def interp_each(x0, x, y, start):
    """``np.interp(x0, ...)`` on each segment ``start[i]:start[i + 1]`` over its points with finite ``y``
    (sorted by ``x`` first); NaN for a segment without any."""
    out = np.full(start.size - 1, np.nan)
    for i in range(start.size - 1):
        xs = x[start[i]:start[i + 1]]
        ys = y[start[i]:start[i + 1]]
        ok = np.isfinite(ys)
        if ok.any():
            xs, ys = xs[ok], ys[ok]
            o = np.argsort(xs)
            out[i] = np.interp(x0, xs[o], ys[o])
    return out


@_kernel
def near_money_quadratic(z, w, wt, start):
    """Per segment ``start[i]:start[i + 1]``, the weighted least-squares ``w ~ c0 + c1 z + c2 z^2``.

    Points with weight ``wt > 0`` take part; of those only ``|z| <= 4`` when at least
    three are that near. Returns ``coef`` (S, 3) and ``solvable`` (S,): at least three
    points, a spread in ``z`` and a regular system; where not, ``coef[:, 0]`` is the
    weighted mean of ``w`` (``1e-4`` without any point).
    """
    S = start.size - 1
    coef = np.zeros((S, 3))
    solvable = np.zeros(S, dtype=np.bool_)
    for i in range(S):
        a, b = start[i], start[i + 1]
        near = 0
        for p in range(a, b):
            if wt[p] > 0.0 and abs(z[p]) <= 4.0:
                near += 1
        xtwx = np.zeros((3, 3))
        xtwy = np.zeros(3)
        used = 0
        zmin, zmax = np.inf, -np.inf
        for p in range(a, b):
            if not wt[p] > 0.0 or (near >= 3 and abs(z[p]) > 4.0):
                continue
            used += 1
            zmin, zmax = min(zmin, z[p]), max(zmax, z[p])
            x = (1.0, z[p], z[p] * z[p])
            for r in range(3):
                xtwy[r] += x[r] * wt[p] * w[p]
                for c in range(3):
                    xtwx[r, c] += x[r] * wt[p] * x[c]
        if used >= 3 and zmax > zmin and abs(np.linalg.det(xtwx)) > 1e-300:
            coef[i] = np.linalg.solve(xtwx, xtwy)
            solvable[i] = True
        else:
            coef[i, 0] = xtwy[0] / xtwx[0, 0] if xtwx[0, 0] > 0.0 else 1e-4
    return coef, solvable
