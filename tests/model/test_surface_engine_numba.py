"""The compiled surface kernel against the numpy reference it restates, piece by piece and solve by solve."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.chains import read_chain
from model.surface import FitConfig, engine, engine_numba, fit_surface
from model.surface import fit as fit_module
from model.surface.bench import _replicate
from model.surface.smile import Smile
from model.surface.svi import SVIParams, g_of

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "deribit"


def _batch(seed=0, nb=4, S=4, N=9, G=11):
    rng = np.random.default_rng(seed)
    z = np.sort(rng.normal(size=(S, N)), axis=1)
    zg = np.tile(np.linspace(-6, 6, G), (S, 1))
    z0 = z.min(axis=1) - 0.2
    h = (np.ptp(z, axis=1) + 0.4) / (nb + 3)
    phi = np.stack([engine.bspline_basis(z[i], z0[i], h[i], nb) for i in range(S)])
    phig = np.stack([np.stack([engine.bspline_basis(zg[i], z0[i], h[i], nb, d) for i in range(S)]) for d in range(3)])
    wd = rng.random((S, N)) * 10
    wd[:, -2:] = 0.0  # bound-only quotes
    wb = rng.random((S, N)) * 5
    wb[0, -1] = 0.0  # padding
    wd[0, -1] = 0.0
    b = engine.Batch(t=np.array([0.01, 0.05, 0.1, 0.5])[:S], s=np.array([0.05, 0.1, 0.2, 0.5])[:S], z=z,
                     tgt=0.5 + 0.1 * rng.random((S, N)), wd=wd, lo=np.full((S, N), 0.52), hi=np.full((S, N), 0.58),
                     wb=wb, zg=zg, u0=np.zeros((S, 5)), tau=np.ones((S, 5)), phi=phi, phig=phig,
                     tau_c=np.full(S, 0.3), g_floor=0.9)
    k = np.tile(np.linspace(-1, 1, 15), (S - 1, 1))
    cal = engine.Calendar(short=np.arange(S - 1), long=np.arange(1, S), k=k,
                          phi_short=np.stack([engine.bspline_basis(k[p] / b.s[p], z0[p], h[p], nb)
                                              for p in range(S - 1)]),
                          phi_long=np.stack([engine.bspline_basis(k[p] / b.s[p + 1], z0[p + 1], h[p + 1], nb)
                                             for p in range(S - 1)]),
                          ws=b.s[1:] ** 2, lam=1e3)
    u = np.column_stack([np.log([0.002, 0.01, 0.03, 0.1][:S]), np.log([0.02, 0.03, 0.05, 0.3][:S]),
                         [-0.3, 0.1, 0.2, 0.5][:S], [0.1, 0.0, -0.2, 0.3][:S], np.log([0.5, 0.8, 1, 2][:S])])
    u = np.concatenate([u, 0.05 * np.arange(S * nb).reshape(S, nb) - 0.2], axis=1)
    return u, b, cal


@pytest.mark.parametrize("marked", [False, True])
def test_normal_equations_are_those_of_the_numpy_jacobian(marked):
    u, b, cal = _batch()
    n, P = u.shape
    r, j = engine.residuals(u, b)
    seen = np.full(cal.k.shape, marked)  # marked: rows found active earlier in the solve stay in the model
    rc, j1, j2 = engine.calendar_residuals(u, b, cal, seen=seen)
    assert (rc > 0).any() and (r != 0).all(axis=0).any()  # calendar rows and penalties are active
    in_model = (j1 != 0).any(axis=2)
    assert (in_model & (rc == 0)).any() == marked  # inactive rows in the model only when marked
    dense = np.zeros((n, P, n, P))
    grad = np.einsum("sri,sr->si", j, r)
    for s in range(n):
        dense[s, :, s, :] = j[s].T @ j[s]
    for p in range(n - 1):
        dense[p, :, p, :] += j1[p].T @ j1[p]
        dense[p + 1, :, p + 1, :] += j2[p].T @ j2[p]
        dense[p, :, p + 1, :] += j1[p].T @ j2[p]
        grad[p] += j1[p].T @ rc[p]
        grad[p + 1] += j2[p].T @ rc[p]
    D, O, G = np.zeros((n, P, P)), np.zeros((n - 1, P, P)), np.zeros((n, P))
    seen_numba = np.full(cal.k.shape, marked)
    cost = engine_numba._joint(u, *engine_numba._batch_args(b), *engine_numba._calendar_args(cal, n, P - 5),
                               seen_numba, True, D, O, G)
    assert cost == pytest.approx(engine.joint_cost(u, b, cal), rel=1e-12)
    np.testing.assert_array_equal(seen_numba, seen)
    scale = np.abs(dense).max()
    for s in range(n):
        np.testing.assert_allclose(D[s], dense[s, :, s, :], atol=1e-11 * scale)
    for p in range(n - 1):
        np.testing.assert_allclose(O[p], dense[p, :, p + 1, :], atol=1e-11 * scale)
    np.testing.assert_allclose(G, grad, atol=1e-11 * np.abs(grad).max())


def test_block_step_solves_the_damped_system():
    rng = np.random.default_rng(3)
    n, P = 5, 7
    J = rng.normal(size=(40, n * P)) * (np.abs(np.subtract.outer(np.arange(40) // 8, np.arange(n * P) // P)) <= 1)
    A = J.T @ J
    D = np.stack([A[i * P:(i + 1) * P, i * P:(i + 1) * P] for i in range(n)])
    O = np.stack([A[i * P:(i + 1) * P, (i + 1) * P:(i + 2) * P] for i in range(n - 1)])
    full = np.zeros_like(A)  # the block-tridiagonal part the kernel factors
    for i in range(n):
        full[i * P:(i + 1) * P, i * P:(i + 1) * P] = D[i]
        if i < n - 1:
            full[i * P:(i + 1) * P, (i + 1) * P:(i + 2) * P] = O[i]
            full[(i + 1) * P:(i + 2) * P, i * P:(i + 1) * P] = O[i].T
    G = 1e-3 * rng.normal(size=(n, P))
    mu = 0.1
    delta = np.zeros((n, P))
    assert engine_numba._block_step(D, O, G, mu, 1e-12, delta)
    want = np.linalg.solve(full + np.diag(mu * np.maximum(np.diag(full), 1e-12) + 1e-12), -G.reshape(-1))
    assert np.abs(want).max() < 1.0  # no step clipping in play
    np.testing.assert_allclose(delta.reshape(-1), want, rtol=1e-9, atol=1e-14)
    assert engine_numba._quad(D, O, delta) == pytest.approx(delta.reshape(-1) @ full @ delta.reshape(-1), rel=1e-12)
    assert not engine_numba._block_step(-D, O, G, 0.0, 0.0, delta)  # not positive definite: refused, no garbage


@pytest.fixture(scope="module")
def solves():
    """The solver calls of real fits (the 2020-05-21 chain and its replicated layout), as the numpy path makes them."""
    chain = read_chain(DATA / "schepal_options_data.csv")
    calls = []
    independent, joint = engine.solve_independent, engine.solve_joint

    def spy_independent(u, b, iterations, tol):
        calls.append(("independent", u.copy(), b, iterations, tol))
        return independent(u, b, iterations, tol)

    def spy_joint(u, b, cal, iterations, tol):
        calls.append(("joint", u.copy(), b, cal, iterations, tol))
        return joint(u, b, cal, iterations, tol)

    mp = pytest.MonkeyPatch()
    mp.setattr(engine, "solve_independent", spy_independent)
    mp.setattr(engine, "solve_joint", spy_joint)
    try:
        for quotes in (chain.quotes, _replicate(chain.quotes)):
            fit_surface(quotes, chain.now_ns, cfg=FitConfig(backend="numpy"))
    finally:
        mp.undo()
    return calls


def test_solvers_follow_the_numpy_reference_step_for_step(solves):
    assert {c[0] for c in solves} == {"independent", "joint"} and len(solves) >= 4
    for kind, u, *args in solves:
        ref = getattr(engine, f"solve_{kind}")(u, *args)
        got = getattr(engine_numba, f"solve_{kind}")(u, *args)
        assert got[2] == ref[2]  # the same iteration count
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-9)
        np.testing.assert_allclose(got[0], ref[0], atol=1e-8)


def test_backends_fit_the_same_surface():
    chain = read_chain(DATA / "schepal_options_data.csv")
    a = fit_surface(chain.quotes, chain.now_ns, cfg=FitConfig(backend="numpy"))
    b = fit_surface(chain.quotes, chain.now_ns, cfg=FitConfig(backend="numba"))
    assert a.iterations == b.iterations and a.arbitrage == b.arbitrage
    for x, y in zip(a.smiles, b.smiles):
        np.testing.assert_allclose(x.fitted_iv, y.fitted_iv, atol=1e-9)


def _smiles(draw_nb):
    return [Smile(svi=SVIParams(a=0.01, b=0.1, rho=-0.3, m=0.02, sigma=0.1)),
            Smile(svi=SVIParams(a=0.02, b=0.12, rho=-0.2, m=0.0, sigma=0.2), k0=-0.5, h=0.15,
                  coef=tuple(0.002 * np.sin(np.arange(draw_nb)))),
            Smile(svi=SVIParams(a=0.03, b=0.1, rho=0.1, m=-0.05, sigma=0.3), k0=-0.9, h=0.2,
                  coef=tuple(-0.004 * np.cos(np.arange(draw_nb))))]


@settings(max_examples=40, deadline=None)
@given(nb=st.integers(1, 9), lo=st.floats(-3.0, 0.0), width=st.floats(0.01, 4.0))
def test_smile_values_are_the_smile_derivatives(nb, lo, width):
    smiles = _smiles(nb)
    k = np.linspace(lo, lo + width, 57)
    start = np.arange(len(smiles) + 1) * len(k)
    w, w1, w2 = engine_numba.smile_values(np.tile(k, len(smiles)), start, *fit_module._smile_arrays(smiles))
    for i, sm in enumerate(smiles):
        for got, want in zip((w, w1, w2), sm.derivatives(k)):
            np.testing.assert_allclose(got[start[i]:start[i + 1]], want, rtol=1e-12, atol=1e-12)


def test_arbitrage_scan_counts_what_the_numpy_check_counts():
    smiles = _smiles(6)
    bent = Smile(svi=SVIParams(a=0.0, b=0.5, rho=-0.9, m=0.0, sigma=0.02), k0=-0.2, h=0.05,
                 coef=(0.0, 0.01, -0.01, 0.0))  # breaks the butterfly and crosses its neighbours
    smiles = [smiles[0], bent, smiles[1], smiles[2]]
    ts = [0.02, 0.05, 0.1, 0.3]
    k = np.linspace(-1.5, 1.5, 301)
    w = np.array([s.w(k) for s in smiles])
    g = np.array([g_of(k, *s.derivatives(k)) for s in smiles])
    bad_g = g < -1e-9
    bad = bad_g.any(axis=0)
    cal = 0
    for i in range(len(smiles) - 1):
        crossed = w[i + 1] - w[i] < -1e-10 * np.interp(0.0, k, w[i + 1])
        cal += int(crossed.sum())
        bad |= crossed
    butterfly, calendar, where = engine_numba.arbitrage_scan(k, *fit_module._smile_arrays(smiles), np.argsort(ts),
                                                             -1e-9, 1e-10)
    assert butterfly == int(bad_g.sum()) > 0 and calendar == cal > 0
    np.testing.assert_array_equal(where, bad)


def test_bspline_rows_are_the_numpy_bases():
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, (5, 64))
    lo, h = rng.uniform(-2, -1, 5), rng.uniform(0.2, 0.5, 5)
    x[0, :12] = lo[0] + h[0] * np.arange(-1, 11)  # knots exactly
    got = engine_numba.bspline_rows(x, lo, h, 6, 3)
    for d in range(3):
        np.testing.assert_allclose(got[d], engine.bspline_basis(x, lo[:, None], h[:, None], 6, d), atol=1e-12)


def test_small_helpers_match_numpy():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=30), rng.normal(size=30)
    y[[3, 17]] = np.nan
    start = np.array([0, 10, 20, 30])
    for i in range(3):
        xs, ys = x[start[i]:start[i + 1]], y[start[i]:start[i + 1]]
        ok = np.isfinite(ys)
        o = np.argsort(xs[ok])
        assert engine_numba.interp_each(0.0, x, y, start)[i] == np.interp(0.0, xs[ok][o], ys[ok][o])
    z = rng.normal(size=30) * 3
    w = 0.04 + 0.01 * z + 0.003 * z * z
    wt = rng.random(30)
    wt[20:28] = 0.0  # the last segment has two weighted points: no quadratic
    coef, solvable = engine_numba.near_money_quadratic(z, w, wt, start)
    np.testing.assert_allclose(coef[:2], [[0.04, 0.01, 0.003]] * 2, rtol=1e-9)
    assert solvable.tolist() == [True, True, False]
    assert coef[2, 0] == pytest.approx(np.average(w[28:], weights=wt[28:]))
