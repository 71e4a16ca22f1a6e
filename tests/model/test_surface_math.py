"""Black-76, SVI, the g function, B-splines and the fitter's Jacobians, each against a naive oracle."""

from __future__ import annotations

import csv
import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.surface import engine
from model.surface.black import black_price, forward_delta, implied_total_vol
from model.surface.config import YEAR_NS
from model.surface.smile import Smile
from model.surface.svi import SVIParams, butterfly_g, ssvi_slice

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "deribit"


@settings(max_examples=200, deadline=None)
@given(k=st.floats(-2.0, 2.0), s=st.floats(0.005, 3.0), call=st.booleans())
def test_implied_vol_inverts_black(k, s, call):
    price = black_price(np.array([k]), np.array([s]), call)
    ek = math.exp(k)
    intrinsic = max(1 - ek, 0) if call else max(ek - 1, 0)
    if price[0] - intrinsic < 1e-12 * max(ek, 1):  # no time value left to invert
        return
    assert implied_total_vol(price, np.array([k]), call)[0] == pytest.approx(s, rel=1e-6)


def test_no_iv_below_intrinsic_or_above_the_forward():
    k = np.array([-0.1, 0.1, 0.0])
    # call below intrinsic (1 - e^-0.1 = 0.095), put above e^k, call above the forward (1)
    out = implied_total_vol(np.array([0.05, 1.2, 1.5]), k, np.array([True, False, True]))
    assert np.isnan(out).all()


def _schepal_rows():
    with open(DATA / "schepal_options_data.csv", newline="") as f:
        for row in csv.DictReader(f):
            if float(row["mark_iv"]) > 0 and float(row["mark_price"]) > 1e-4:
                yield row


def test_deribit_coin_price_is_the_normalized_black_price_on_the_underlying():
    """Deribit's own marks: coin premium = Black-76 USD premium on the forward / forward."""
    errs = []
    for row in _schepal_rows():
        t = (int(row["expiration_timestamp"]) - int(row["timestamp"])) * 1_000_000 / YEAR_NS
        k = math.log(float(row["strike"]) / float(row["underlying_price"]))
        s = float(row["mark_iv"]) / 100 * math.sqrt(t)
        p = black_price(np.array([k]), np.array([s]), row["option_type"] == "call")[0]
        errs.append(abs(p / float(row["mark_price"]) - 1.0))
    # IVs carry 2 decimals of a percent and the ticker's time is not the mark's to the ms
    assert len(errs) > 200 and np.median(errs) < 2e-4 and max(errs) < 5e-3


def test_deribit_delta_is_the_forward_black_delta_not_premium_adjusted():
    errs, pa_errs = [], []
    for row in _schepal_rows():
        t = (int(row["expiration_timestamp"]) - int(row["timestamp"])) * 1_000_000 / YEAR_NS
        k = math.log(float(row["strike"]) / float(row["underlying_price"]))
        s = float(row["mark_iv"]) / 100 * math.sqrt(t)
        call = row["option_type"] == "call"
        delta = float(row["greeks"].split("'delta': ")[1].rstrip("}"))
        ours = forward_delta(np.array([k]), np.array([s]), call)[0]
        premium_adjusted = ours - black_price(np.array([k]), np.array([s]), call)[0]
        errs.append(abs(ours - delta))
        pa_errs.append(abs(premium_adjusted - delta))
    assert max(errs) < 2e-3
    assert np.median(pa_errs) > 10 * np.median(errs)


def test_g_matches_finite_differences_and_the_gatheral_jacquier_formula():
    p = SVIParams(a=-0.02, b=0.3, rho=-0.5, m=0.05, sigma=0.2)
    k = np.linspace(-1.5, 1.5, 301)
    h = 1e-4
    w = p.total_variance(k)
    w1 = (p.total_variance(k + h) - p.total_variance(k - h)) / (2 * h)
    w2 = (p.total_variance(k + h) - 2 * w + p.total_variance(k - h)) / h ** 2
    naive = (1 - k * w1 / (2 * w)) ** 2 - w1 ** 2 / 4 * (1 / w + 0.25) + w2 / 2
    np.testing.assert_allclose(butterfly_g(p, k), naive, atol=1e-5)


def test_ssvi_slices_inside_the_gatheral_jacquier_bounds_are_butterfly_free():
    for theta, rho in ((0.01, -0.7), (0.3, 0.4), (1.0, -0.9)):
        bound = 4 / (theta * (1 + abs(rho)))
        p = ssvi_slice(theta, rho, 0.99 * min(bound, math.sqrt(bound)))
        assert butterfly_g(p, np.linspace(-5, 5, 2001)).min() >= 0


def test_svi_params_are_validated():
    with pytest.raises(ValueError, match="rho"):
        SVIParams(a=0, b=0.1, rho=1.0, m=0, sigma=0.1)
    with pytest.raises(ValueError, match="sigma"):
        SVIParams(a=0, b=0.1, rho=0.0, m=0, sigma=0.0)
    with pytest.raises(ValueError, match="finite"):
        SVIParams(a=float("nan"), b=0.1, rho=0.0, m=0, sigma=0.1)


def test_bspline_basis_matches_the_cardinal_spline_loop():
    x = np.linspace(-2.0, 4.0, 777)
    for d in range(3):
        naive = np.array([[engine.cardinal_bspline(np.array([(xi + 0.3) / 0.4 - j]), d)[0] / 0.4 ** d
                           for j in range(8)] for xi in x])
        np.testing.assert_allclose(engine.bspline_basis(x, -0.3, 0.4, 8, d), naive, atol=1e-12)


def test_smile_correction_vanishes_outside_its_support_and_has_consistent_derivatives():
    s = Smile(svi=SVIParams(a=0.01, b=0.1, rho=-0.3, m=0.0, sigma=0.1), k0=-0.4, h=0.1, coef=(1e-3, -2e-3, 3e-3,
                                                                                            1e-3, 0.0, 2e-3))
    lo, hi = s.support
    out = np.array([lo - 0.5, lo, hi, hi + 0.5])
    np.testing.assert_allclose(s.w(out), s.svi.total_variance(out), atol=1e-15)
    k = np.linspace(lo, hi, 97)
    h = 1e-5
    w, w1, w2 = s.derivatives(k)
    np.testing.assert_allclose(w1, (s.w(k + h) - s.w(k - h)) / (2 * h), atol=1e-7)
    np.testing.assert_allclose(w2, (s.w(k + h) - 2 * w + s.w(k - h)) / h ** 2, atol=2e-4)


def _toy_batch(nb=4, seed=0):
    rng = np.random.default_rng(seed)
    S, N, G = 3, 9, 11
    z = np.sort(rng.normal(size=(S, N)), axis=1)
    zg = np.tile(np.linspace(-6, 6, G), (S, 1))
    knots = [(z[i].min() - 0.2, (np.ptp(z[i]) + 0.4) / (nb + 3)) for i in range(S)]
    phi = np.stack([engine.bspline_basis(z[i], *knots[i], nb) for i in range(S)])
    phig = np.stack([np.stack([engine.bspline_basis(zg[i], *knots[i], nb, d) for i in range(S)]) for d in range(3)])
    return engine.Batch(t=np.array([0.01, 0.1, 0.5]), s=np.array([0.05, 0.2, 0.5]), z=z, tgt=0.5 + 0.1 * rng.random((S, N)),
                        wd=rng.random((S, N)) * 10, lo=np.full((S, N), 0.52), hi=np.full((S, N), 0.58),
                        wb=rng.random((S, N)) * 5, zg=zg, u0=np.zeros((S, 5)), tau=np.ones((S, 5)), phi=phi, phig=phig,
                        tau_c=np.full(S, 0.3), g_floor=0.9), knots


def _toy_u(nb=4):
    u = np.column_stack([np.log([0.002, 0.03, 0.1]), np.log([0.02, 0.05, 0.3]), [-0.3, 0.2, 0.5], [0.1, -0.2, 0.3],
                         np.log([0.5, 1, 2])])
    return np.concatenate([u, 0.05 * np.arange(3 * nb).reshape(3, nb) - 0.2], axis=1)


def test_engine_jacobian_matches_finite_differences():
    b, _ = _toy_batch()
    u = _toy_u()
    r, j = engine.residuals(u, b)
    num = np.zeros_like(j)
    for i in range(u.shape[1]):
        up, dn = u.copy(), u.copy()
        up[:, i] += 1e-6
        dn[:, i] -= 1e-6
        num[:, :, i] = (engine.residuals(up, b, False) - engine.residuals(dn, b, False)) / 2e-6
    np.testing.assert_allclose(j, num, atol=1e-5 * (1 + np.abs(j).max()))


def test_calendar_jacobian_matches_finite_differences():
    b, knots = _toy_batch()
    u = _toy_u()
    k = np.linspace(-1, 1, 15)[None]
    cal = engine.Calendar(short=np.array([0]), long=np.array([2]), k=k,
                          phi_short=engine.bspline_basis(k / b.s[0], *knots[0], 4),
                          phi_long=engine.bspline_basis(k / b.s[2], *knots[2], 4), ws=np.array([0.25]), lam=1e3)
    _, j1, j2 = engine.calendar_residuals(u, b, cal)
    for rows, jac in (([0], j1), ([2], j2)):
        num = np.zeros_like(jac)
        for i in range(u.shape[1]):
            up, dn = u.copy(), u.copy()
            up[rows, i] += 1e-6
            dn[rows, i] -= 1e-6
            num[:, :, i] = (engine.calendar_residuals(up, b, cal, False) - engine.calendar_residuals(dn, b, cal, False)) / 2e-6
        np.testing.assert_allclose(jac, num, atol=1e-4 * (1 + np.abs(jac).max()))
