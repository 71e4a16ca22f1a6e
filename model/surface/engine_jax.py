"""The fast kernel: the same residuals as :mod:`model.surface.engine`, jitted with JAX.

One ``jax.jit`` per solver runs the whole Levenberg-Marquardt loop in a
``lax.while_loop`` (one dispatch per solve); Jacobians come from ``jax.jacfwd`` on
the per-smile residual, so this file restates the objective and nothing else.
:mod:`model.surface.engine` (numpy, analytic Jacobians) is the reference it is
tested against, and the fallback where JAX is unavailable.

Shapes are padded to buckets (smiles to 4/8/16/..., quotes to 16/32/64/...) so a
stream of chains compiles a handful of times; padded smiles carry zero weights.
Everything runs in float64 inside ``jax.enable_x64(True)``, a thread-local switch,
so the process-wide default (float32 for the network) is left alone.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from model.surface.engine import LAM_G, LAM_L, LEE_MARGIN, RHO_MAX, Batch, Calendar

_W_TINY = 1e-12


def _bucket(n: int, lo: int) -> int:
    b = lo
    while b < n:
        b *= 2
    return b


def _svi(z, u):
    v, bz, rho, mz, sz = jnp.exp(u[0]), jnp.exp(u[1]), RHO_MAX * jnp.tanh(u[2]), u[3], jnp.exp(u[4])
    x = z - mz
    r = jnp.sqrt(x * x + sz * sz)
    w = v + bz * (rho * x + r - sz * jnp.sqrt(1.0 - rho * rho))
    wz = bz * (rho + x / r)
    wzz = bz * sz * sz / (r * r * r)
    return w, wz, wzz, bz, rho


def _res_slice(u, t, s, z, tgt, wd, lo, hi, wb, zg, u0, tau, phi, phig, tau_c, robust, g_floor, tau_s):
    gamma = u[5:]
    s2 = s * s
    w, _, _, bz, rho = _svi(z, u)
    w = w + s2 * (phi @ gamma)
    sig = jnp.sqrt(jnp.maximum(w, _W_TINY) / t)
    e = wd * (sig - tgt)
    q = jnp.sqrt(1.0 + (e / robust) ** 2)
    r_d = math.sqrt(2.0) * e / jnp.sqrt(q + 1.0)
    r_b = wb * (sig - jnp.clip(sig, lo, hi))
    wg, wz, wzz, _, _ = _svi(zg, u)
    wg = wg + s2 * (phig[0] @ gamma)
    wz = wz + s2 * (phig[1] @ gamma)
    wzz = wzz + s2 * (phig[2] @ gamma)
    wpos = jnp.maximum(wg, _W_TINY)
    a = 1.0 - zg * wz / (2.0 * wpos)
    g = a * a - wz * wz / (4.0 * s2) * (1.0 / wpos + 0.25) + wzz / (2.0 * s2)
    r_g = math.sqrt(LAM_G) * jnp.maximum(g_floor - g, 0.0)
    lee = bz * (1.0 + jnp.abs(rho)) / s - 2.0 + LEE_MARGIN
    r_l = math.sqrt(LAM_L) * jnp.maximum(lee, 0.0)[None]
    r_p = (u[:5] - u0) / tau
    parts = [r_d, r_b, r_g, r_l, r_p]
    if gamma.shape[0]:
        parts.append(gamma / tau_c)
        if gamma.shape[0] > 2:
            parts.append((gamma[:-2] - 2.0 * gamma[1:-1] + gamma[2:]) / tau_s)
    return jnp.concatenate(parts)


def _w_at(u, k, s, phi):
    w, _, _, _, _ = _svi(k / s, u)
    return w + s * s * (phi @ u[5:])


def _res_pair(u1, u2, k, s1, s2, phi1, phi2, ws, on, margin, lam):
    deficit = _w_at(u1, k, s1, phi1) - _w_at(u2, k, s2, phi2) + margin * ws
    return on * jnp.sqrt(lam) / ws * jnp.maximum(deficit, 0.0)


_SLICE_AXES = (0,) * 15 + (None, None, None)
_res_v = jax.vmap(_res_slice, in_axes=_SLICE_AXES)
_jac_v = jax.vmap(jax.jacfwd(_res_slice), in_axes=_SLICE_AXES)
_PAIR_AXES = (0, 0, 0, 0, 0, 0, 0, 0, 0, None, None)
_pair_v = jax.vmap(_res_pair, in_axes=_PAIR_AXES)
_pair_jac_v = jax.vmap(jax.jacfwd(_res_pair, argnums=(0, 1)), in_axes=_PAIR_AXES)


def _damp(mu, nu, ok, ratio):
    good = jnp.maximum(1.0 / 3.0, 1.0 - (2.0 * jnp.clip(ratio, 0.0, 1.0) - 1.0) ** 3)
    return jnp.where(ok, jnp.maximum(mu * good, 1e-12), mu * nu), jnp.where(ok, 2.0, nu * 2.0)


def _spd_solve(a, b):
    """``a^-1 b`` for symmetric positive definite ``a`` (a damped Gauss-Newton matrix), batched: by Cholesky,
    about half an LU's work; a matrix that is not numerically positive definite gives NaN, a rejected step."""
    low = jnp.linalg.cholesky(a)
    y = jax.scipy.linalg.solve_triangular(low, b[..., None], lower=True)
    return jax.scipy.linalg.solve_triangular(low, y, lower=True, trans=1)[..., 0]


def _clip(delta, max_norm=3.0):
    n = jnp.linalg.norm(delta, axis=-1, keepdims=True)
    return delta * jnp.minimum(1.0, max_norm / jnp.maximum(n, 1e-300))


@partial(jax.jit, static_argnames=("iterations",))
def _independent(u, data, scal, tol, iterations):
    def cost(u):
        r = _res_v(u, *data, *scal)
        return jnp.sum(r * r, axis=1)

    def body(c):
        u, cst, mu, nu, active, it = c
        r = _res_v(u, *data, *scal)
        j = _jac_v(u, *data, *scal)
        a = jnp.einsum("sri,srj->sij", j, j)
        g = jnp.einsum("sri,sr->si", j, r)
        d = jnp.maximum(jnp.diagonal(a, axis1=1, axis2=2), 1e-12)
        lhs = a + (mu[:, None] * d)[:, :, None] * jnp.eye(u.shape[1])[None]
        delta = _clip(_spd_solve(lhs, -g))
        pred = -(2.0 * jnp.einsum("si,si->s", delta, g) + jnp.einsum("si,sij,sj->s", delta, a, delta))
        ut = u + delta
        ct = cost(ut)
        ok = active & jnp.isfinite(ct) & (ct < cst)
        gain = jnp.where(ok, cst - ct, 0.0)
        mu2, nu2 = _damp(mu, nu, ok, gain / jnp.maximum(pred, 1e-300))
        mu2, nu2 = jnp.where(active, mu2, mu), jnp.where(active, nu2, nu)
        done = (ok & (gain <= tol * jnp.maximum(ct, 1e-12))) | (mu2 > 1e10)
        return (jnp.where(ok[:, None], ut, u), jnp.where(ok, ct, cst), mu2, nu2, active & ~done, it + 1)

    n = u.shape[0]
    init = (u, cost(u), jnp.full(n, 1e-3), jnp.full(n, 2.0), jnp.ones(n, dtype=bool), 0)
    out = jax.lax.while_loop(lambda c: jnp.any(c[4]) & (c[5] < iterations), body, init)
    return out[0], out[1], out[5]


@partial(jax.jit, static_argnames=("iterations",))
def _joint(u, data, scal, cal, lam, margin, tol, iterations):
    n, p = u.shape
    idx = jnp.arange(n)
    sh, lg = idx[:-1], idx[1:]
    k, s1, s2, phi1, phi2, ws, on = cal

    def pair_args(u):
        return (u[sh], u[lg], k, s1, s2, phi1, phi2, ws, on, margin, lam)

    def cost(u):
        r = _res_v(u, *data, *scal)
        rc = _pair_v(*pair_args(u))
        return jnp.sum(r * r) + jnp.sum(rc * rc)

    def body(c):
        u, cst, mu, nu, going, it = c
        r = _res_v(u, *data, *scal)
        j = _jac_v(u, *data, *scal)
        rc = _pair_v(*pair_args(u))
        j1, j2 = _pair_jac_v(*pair_args(u))
        a = jnp.zeros((n, p, n, p))
        a = a.at[idx, :, idx, :].set(jnp.einsum("sri,srj->sij", j, j))
        a = a.at[sh, :, sh, :].add(jnp.einsum("pci,pcj->pij", j1, j1))
        a = a.at[lg, :, lg, :].add(jnp.einsum("pci,pcj->pij", j2, j2))
        cross = jnp.einsum("pci,pcj->pij", j1, j2)
        a = a.at[sh, :, lg, :].add(cross)
        a = a.at[lg, :, sh, :].add(jnp.swapaxes(cross, 1, 2))
        g = jnp.einsum("sri,sr->si", j, r)
        g = g.at[sh].add(jnp.einsum("pci,pc->pi", j1, rc)).at[lg].add(jnp.einsum("pci,pc->pi", j2, rc))
        flat = a.reshape(n * p, n * p)
        gf = g.reshape(-1)
        d = jnp.maximum(jnp.diagonal(flat), 1e-12)
        delta = _spd_solve(flat + jnp.diag(mu * d + 1e-12), -gf)
        delta = _clip(delta.reshape(n, p)).reshape(-1)
        pred = -(2.0 * delta @ gf + delta @ flat @ delta)
        ut = u + delta.reshape(n, p)
        ct = cost(ut)
        ok = jnp.isfinite(ct) & (ct < cst)
        gain = jnp.where(ok, cst - ct, 0.0)
        mu2, nu2 = _damp(mu, nu, ok, gain / jnp.maximum(pred, 1e-300))
        stop = (ok & (gain <= tol * jnp.maximum(ct, 1e-12))) | (mu2 > 1e10)
        return (jnp.where(ok, ut, u), jnp.where(ok, ct, cst), mu2, nu2, ~stop, it + 1)

    init = (u, cost(u), jnp.asarray(1e-3), jnp.asarray(2.0), jnp.asarray(True), 0)
    out = jax.lax.while_loop(lambda c: c[4] & (c[5] < iterations), body, init)
    return out[0], out[1], out[5]


def _pad_batch(b: Batch, n_rows: int, n_quotes: int):
    """Batch arrays padded to ``(n_rows, n_quotes)``; padded smiles and quotes weigh nothing."""
    S, N = b.z.shape
    G = b.zg.shape[1]
    nb = b.nb

    def pad(x, fill, shape):
        out = np.full(shape, fill, dtype=np.float64)
        out[tuple(slice(0, d) for d in x.shape)] = x
        return out

    data = (
        pad(b.t, 1.0, (n_rows,)), pad(b.s, 1.0, (n_rows,)), pad(b.z, 0.0, (n_rows, n_quotes)),
        pad(b.tgt, 0.0, (n_rows, n_quotes)), pad(b.wd, 0.0, (n_rows, n_quotes)),
        pad(b.lo, -np.inf, (n_rows, n_quotes)), pad(b.hi, np.inf, (n_rows, n_quotes)),
        pad(b.wb, 0.0, (n_rows, n_quotes)), pad(b.zg, 0.0, (n_rows, G)), pad(b.u0, 0.0, (n_rows, 5)),
        pad(b.tau, 1.0, (n_rows, 5)), pad(b.phi, 0.0, (n_rows, n_quotes, nb)),
        pad(np.swapaxes(b.phig, 0, 1), 0.0, (n_rows, 3, G, nb)),
        pad(b.tau_c, 1.0, (n_rows,)),
    )
    scal = (float(b.robust), float(b.g_floor), float(b.tau_s))
    return data, scal


def _pad_u(u: np.ndarray, n_rows: int) -> np.ndarray:
    out = np.zeros((n_rows, u.shape[1]))
    out[: len(u)] = u
    return out


def solve_independent(u: np.ndarray, b: Batch, iterations: int, tol: float) -> tuple[np.ndarray, np.ndarray, int]:
    """As :func:`model.surface.engine.solve_independent`, jitted."""
    S = len(u)
    rows, nq = _bucket(S, 4), _bucket(b.z.shape[1], 16)
    data, scal = _pad_batch(b, rows, nq)
    with jax.enable_x64(True):
        out_u, out_c, it = _independent(_pad_u(u, rows), data, scal, tol, iterations)
        return np.asarray(out_u)[:S], np.asarray(out_c)[:S], int(it)


def solve_joint(u: np.ndarray, b: Batch, cal: Calendar | None, iterations: int,
                tol: float) -> tuple[np.ndarray, float, int]:
    """As :func:`model.surface.engine.solve_joint`, jitted."""
    S, P = u.shape
    rows, nq = _bucket(S, 4), _bucket(b.z.shape[1], 16)
    data, scal = _pad_batch(b, rows, nq)
    C = cal.k.shape[1] if cal is not None and len(cal.short) else 1
    k = np.zeros((rows - 1, C))
    s1 = np.ones(rows - 1)
    s2 = np.ones(rows - 1)
    phi1 = np.zeros((rows - 1, C, P - 5))
    phi2 = np.zeros((rows - 1, C, P - 5))
    ws = np.ones(rows - 1)
    on = np.zeros(rows - 1)
    lam, margin = 0.0, 0.0
    if cal is not None and len(cal.short):
        m = len(cal.short)
        k[:m], phi1[:m], phi2[:m], ws[:m], on[:m] = cal.k, cal.phi_short, cal.phi_long, cal.ws, 1.0
        s1[:m], s2[:m] = b.s[cal.short], b.s[cal.long]
        lam, margin = cal.lam, cal.margin
    with jax.enable_x64(True):
        out_u, out_c, it = _joint(_pad_u(u, rows), data, scal, (k, s1, s2, phi1, phi2, ws, on), lam, margin, tol,
                                  iterations)
        return np.asarray(out_u)[:S], float(out_c), int(it)
