"""The surface fit: acceptance on the real 2020-05-21 chain, other real chains, thin chains, warm starts."""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import pytest

from connectors.chains import read_chain
from connectors.events import OptionQuote
from model.surface import FitConfig, SurfaceFitter, fit_surface, plot, report
from model.surface.black import black_price
from model.surface.config import DAY_NS, YEAR_NS
from model.surface.fit import arbitrage_counts, check_grid
from model.surface.svi import SVIParams

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "deribit"


@pytest.fixture(scope="module")
def schepal():
    return read_chain(DATA / "schepal_options_data.csv")


@pytest.fixture(scope="module")
def schepal_report(schepal):
    return report(schepal.quotes, schepal.now_ns)


def test_acceptance_on_the_2020_05_21_chain(schepal_report):
    r = schepal_report
    assert r["status"] == "ok" and len(r["expiries"]) == 7
    assert r["rmse_reference"] == "mark_iv"
    assert r["rmse_vol_pts_7d_plus"] <= 1.0
    assert r["rmse_vol_pts"] <= 1.5
    assert r["inside_bid_ask"] >= 0.95
    assert r["arbitrage"]["butterfly"] == 0 and r["arbitrage"]["calendar"] == 0
    assert r["n_fitted_quotes"] == 133 and r["dropped"] == {"itm": 163}


def test_report_is_plain_json_with_the_documented_keys(schepal_report):
    r = json.loads(json.dumps(schepal_report, allow_nan=False))
    for key in ("expiries", "rmse_vol_pts", "inside_bid_ask", "arbitrage", "grid", "atm", "rr25", "bf25", "fit_ms"):
        assert key in r
    e = r["expiries"][0]
    for key in ("expiry", "t_years", "forward", "n_quotes", "rmse_vol_pts", "inside_bid_ask", "params"):
        assert key in e
    assert r["grid"]["tenors_days"] == [1, 7, 14, 30, 60, 90, 180]
    assert r["grid"]["deltas"] == ["10P", "25P", "ATM", "25C", "10C"]
    assert list(r["atm"]) == ["1d", "7d", "14d", "30d", "60d", "90d", "180d"]
    assert all(v < 0 for v in r["rr25"].values())  # BTC puts over calls in May 2020
    assert all(v > 0 for v in r["bf25"].values())


@pytest.mark.parametrize("name, max_rmse", [("hudsonstreet_final_data.csv", 1.5),
                                            ("hudsonstreet_formated_data_pc.csv", 1.5)])
def test_other_real_chains_are_arbitrage_free_and_close_to_mid(name, max_rmse):
    chain = read_chain(DATA / name)
    r = report(chain.quotes, chain.now_ns)
    assert r["status"] == "ok" and r["rmse_reference"] == "mid_iv"
    assert r["arbitrage"]["butterfly"] == 0 and r["arbitrage"]["calendar"] == 0
    assert r["rmse_vol_pts"] <= max_rmse and r["inside_bid_ask"] >= 0.9


def test_dense_check_finds_nothing_between_its_points(schepal):
    fit = fit_surface(schepal.quotes, schepal.now_ns)
    finer = np.linspace(fit.check_k.min(), fit.check_k.max(), 20001)
    assert arbitrage_counts([s.smile for s in fit.smiles], [s.t for s in fit.smiles], finer) == {"butterfly": 0,
                                                                                                 "calendar": 0}


def test_empty_chain_reports_why():
    r = report([], now_ns=0)
    assert r["status"] == "empty: no quotes" and r["expiries"] == [] and r["grid"]["iv"] == []
    assert r["rmse_vol_pts"] is None and r["inside_bid_ask"] is None
    json.dumps(r, allow_nan=False)


def _q(strike, call, **kw):
    base = dict(expiry_ns=30 * DAY_NS, strike=strike, is_call=call, ts_ns=0, underlying_price=100.0)
    return OptionQuote(**(base | kw))


def test_one_sided_chains_give_a_clear_result(schepal):
    asks_only = [_q(k, k >= 100, ask_iv=0.6, mark_iv=0.55) for k in (80.0, 90.0, 100.0, 110.0, 120.0)]
    r = report(asks_only, now_ns=0)
    assert r["status"] == "empty: no expiry has a quote with a bid" and r["expiries"] == []
    assert r["skipped_expiries"][0]["reason"].startswith("no fitted quote")
    # the real chain with every ask removed: bids and marks still make a surface
    bids_only = [OptionQuote(**({f: getattr(q, f) for f in q.__struct_fields__} | {"ask_iv": None, "ask_price": None}))
                 for q in schepal.quotes]
    r = report(bids_only, schepal.now_ns)
    assert r["status"] == "ok" and r["arbitrage"]["butterfly"] == 0 and r["arbitrage"]["calendar"] == 0
    assert r["inside_bid_ask"] is None and r["rmse_vol_pts"] < 2.0


def test_sparse_expiry_borrows_a_shape_and_stays_sane(schepal):
    quotes = list(schepal.quotes)
    lone = [_q(9000.0, False, expiry_ns=schepal.now_ns + 60 * DAY_NS, ts_ns=schepal.now_ns, underlying_price=9120.0,
               bid_iv=0.84, ask_iv=0.88, mark_iv=0.86)]
    fit = fit_surface(quotes + lone, schepal.now_ns)
    sparse = next(s for s in fit.smiles if s.n_quotes == 1)
    assert sparse.status.startswith("sparse: shape from")
    assert abs(sparse.fitted_iv[0] - 0.86) < 0.02
    assert fit.arbitrage == {"butterfly": 0, "calendar": 0}
    single = fit_surface(lone, schepal.now_ns)
    assert single.smiles[0].status == "sparse: generic shape" and abs(single.smiles[0].fitted_iv[0] - 0.86) < 0.01


def test_stale_crossed_and_itm_quotes_are_dropped():
    now = 10 * DAY_NS
    quotes = [_q(100.0, True, ts_ns=now, bid_iv=0.5, ask_iv=0.52, mark_iv=0.51, expiry_ns=now + 30 * DAY_NS),
              _q(110.0, True, ts_ns=now - 3600 * 10**9, bid_iv=0.5, ask_iv=0.52, expiry_ns=now + 30 * DAY_NS),
              _q(120.0, True, ts_ns=now, bid_iv=0.6, ask_iv=0.5, expiry_ns=now + 30 * DAY_NS),
              _q(90.0, True, ts_ns=now, bid_iv=0.5, ask_iv=0.52, expiry_ns=now + 30 * DAY_NS)]
    fit = fit_surface(quotes, now)
    assert fit.dropped == {"stale": 1, "crossed": 1, "itm": 1}
    assert fit.smiles[0].n_quotes == 1


def _synthetic_chain(now_ns=0, noise=0.0, seed=0):
    """SYNTHETIC quotes, not market data: Black-76 IVs of a known arbitrage-free SVI surface."""
    rng = np.random.default_rng(seed)
    truth = {7: SVIParams(a=0.004, b=0.04, rho=-0.3, m=0.01, sigma=0.08),
             30: SVIParams(a=0.02, b=0.09, rho=-0.25, m=0.02, sigma=0.15),
             90: SVIParams(a=0.07, b=0.15, rho=-0.2, m=0.03, sigma=0.25)}
    quotes = []
    for days, p in truth.items():
        t = days / 365
        for k in np.linspace(-0.5, 0.5, 21) * math.sqrt(days / 30):
            iv = math.sqrt(p.total_variance(np.array([k]))[0] / t) + noise * rng.standard_normal()
            quotes.append(OptionQuote(expiry_ns=now_ns + days * DAY_NS, strike=100 * math.exp(k), is_call=k >= 0,
                                      ts_ns=now_ns, underlying_price=100.0, bid_iv=iv - 0.01, ask_iv=iv + 0.01,
                                      mark_iv=iv))
    return quotes, truth


def test_recovers_a_known_synthetic_surface():
    quotes, truth = _synthetic_chain()
    fit = fit_surface(quotes, 0)
    assert fit.arbitrage == {"butterfly": 0, "calendar": 0}
    for s, (days, p) in zip(fit.smiles, truth.items()):
        k = np.linspace(-0.4, 0.4, 41) * math.sqrt(days / 30)
        true_iv = np.sqrt(p.total_variance(k) / s.t)
        assert np.abs(s.iv(k) - true_iv).max() < 5e-4


def test_prices_only_quotes_are_inverted_with_black76():
    quotes, truth = _synthetic_chain()
    priced = []
    for q in quotes:
        t = (q.expiry_ns - 0) / YEAR_NS
        k = math.log(q.strike / 100.0)
        px = lambda iv: float(black_price(np.array([k]), np.array([iv * math.sqrt(t)]), q.is_call)[0])  # noqa: E731
        priced.append(OptionQuote(expiry_ns=q.expiry_ns, strike=q.strike, is_call=q.is_call, ts_ns=0,
                                  underlying_price=100.0, bid_price=px(q.bid_iv), ask_price=px(q.ask_iv)))
    r = report(priced, 0)
    assert r["rmse_reference"] == "mid_iv" and r["rmse_vol_pts"] < 0.2


def test_parity_forward_when_no_underlying_is_given():
    quotes, _ = _synthetic_chain()
    priced = []
    for q in quotes:
        t = q.expiry_ns / YEAR_NS
        k = math.log(q.strike / 100.0)
        for call in (True, False):
            p = float(black_price(np.array([k]), np.array([q.mark_iv * math.sqrt(t)]), call)[0])
            priced.append(OptionQuote(expiry_ns=q.expiry_ns, strike=q.strike, is_call=call, ts_ns=0,
                                      bid_price=p * 0.99, ask_price=p * 1.01))
    fit = fit_surface(priced, 0)
    assert all(s.forward_source == "parity" and abs(s.forward - 100.0) < 0.05 for s in fit.smiles)


def test_calendar_is_enforced_where_independent_smiles_would_cross():
    """SYNTHETIC: the later expiry's quotes sit below the earlier one's total variance in the wings."""
    quotes = []
    for days, atm, wing in ((10, 0.8, 1.6), (12, 0.8, 0.9)):
        t = days / 365
        for k in np.linspace(-0.4, 0.4, 17):
            iv = atm + (wing - atm) * (k / 0.4) ** 2
            quotes.append(OptionQuote(expiry_ns=days * DAY_NS, strike=100 * math.exp(k), is_call=k >= 0, ts_ns=0,
                                      underlying_price=100.0, bid_iv=iv - 0.02, ask_iv=iv + 0.02, mark_iv=iv))
    independent = [fit_surface([q for q in quotes if q.expiry_ns == d * DAY_NS], 0).smiles[0] for d in (10, 12)]
    k = check_grid([0.1], 0.4)
    crossed = arbitrage_counts([s.smile for s in independent], [s.t for s in independent], k)["calendar"]
    assert crossed > 0
    fit = fit_surface(quotes, 0)
    assert fit.arbitrage == {"butterfly": 0, "calendar": 0}


def test_streaming_warm_start_reuses_the_previous_fit(schepal):
    fitter = SurfaceFitter()
    earlier = [q for q in schepal.quotes if q.ts_ns <= schepal.now_ns - 60 * 10**9]
    first = fitter.update(earlier, schepal.now_ns - 60 * 10**9)
    cold = fit_surface(schepal.quotes, schepal.now_ns)
    warm = fitter.update(schepal.quotes, schepal.now_ns)
    assert first.warm == 0 and warm.warm == len(warm.smiles)
    assert warm.arbitrage == {"butterfly": 0, "calendar": 0}
    for a, b in zip(warm.smiles, cold.smiles):  # the same surface within a vol point where it is quoted
        m = a.data.fitted
        assert np.abs(a.fitted_iv[m] - b.fitted_iv[m]).max() < 0.01


def test_plot_writes_a_png(schepal, tmp_path):
    fit = fit_surface(schepal.quotes, schepal.now_ns)
    out = tmp_path / "surface.png"
    plot(fit, out, title="schepal")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot(fit_surface([], 0), tmp_path / "empty.png")


def test_plain_svi_method_is_available(schepal):
    fit = fit_surface(schepal.quotes, schepal.now_ns, cfg=FitConfig(method="svi"))
    assert all(s.smile.nb == 0 for s in fit.smiles)
    assert fit.arbitrage == {"butterfly": 0, "calendar": 0}


def test_numpy_reference_gives_the_compiled_fit():
    quotes, _ = _synthetic_chain(noise=0.003)
    a = fit_surface(quotes, 0)
    b = fit_surface(quotes, 0, cfg=FitConfig(backend="numpy"))
    assert a.iterations == b.iterations
    for x, y in zip(a.smiles, b.smiles):
        np.testing.assert_allclose(x.fitted_iv, y.fitted_iv, atol=1e-9)


def test_calendar_multipliers_carry_the_constraint_into_the_next_fit(schepal):
    from model.surface.bench import _replicate

    quotes = _replicate(schepal.quotes)  # copies 12 h apart: a tight calendar that needs a second round cold
    cold = fit_surface(quotes, schepal.now_ns)
    assert cold.continuation == 1 and cold.multipliers
    expiries = [s.expiry_ns for s in cold.smiles]
    for (short, long), (k, shift) in cold.multipliers.items():
        assert expiries.index(long) == expiries.index(short) + 1
        assert np.all(np.diff(k) > 0) and (shift >= 0).all() and shift.max() > 0
    warm = fit_surface(quotes, schepal.now_ns, prev=cold)  # starts at the first weight, with the multipliers
    assert warm.continuation == 0 and warm.arbitrage == {"butterfly": 0, "calendar": 0}
    assert warm.iterations < 15
