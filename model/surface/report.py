"""The ``volcast surface`` report: one JSON-ready dict per chain.

>>> r = report([], now_ns=0)
>>> r["status"], r["expiries"], r["rmse_vol_pts"], r["arbitrage"]["butterfly"]
('empty: no quotes', [], None, 0)
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence

import numpy as np

from connectors.events import OptionQuote
from model.surface.config import DAY_NS, FitConfig
from model.surface.fit import SurfaceFit, fit_surface
from model.surface.grid import DELTAS, TENORS_DAYS, resample

__all__ = ["report", "report_fit", "render_text", "CONVENTIONS"]

CONVENTIONS = {
    "iv": "decimal fraction, annualized on a 365-day year",
    "k": "log forward moneyness ln(K/F)",
    "delta": "forward Black-76 delta, not premium-adjusted: N(d1) call, N(d1)-1 put (Deribit's)",
    "atm": "forward ATM, k = 0 (strike = forward)",
    "tenor_interpolation": "total variance linear in time at fixed k, between fitted expiries only",
    "rmse": "vol points against mark IV (mid-price IV where a source has no mark), one OTM quote per strike, "
            "quotes with a bid",
    "inside_bid_ask": "share of fitted IVs within [bid_iv, ask_iv] among fitted quotes with both sides",
    "arbitrage": "butterfly: (expiry, k) with g(k) < 0 plus Lee-bound breaches; calendar: (consecutive expiries, k) "
                 "with w decreasing in T; on the dense check grid",
}


def _iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _f(x: float | None, nd: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def _rmse(err: np.ndarray) -> float | None:
    return _f(math.sqrt(float(np.mean(err * err))), 4) if len(err) else None


def report_fit(fit: SurfaceFit, tenors_days: Sequence[float] = TENORS_DAYS, n_input: int | None = None) -> dict:
    """The report of an existing fit (the streaming path)."""
    t0 = time.perf_counter()
    expiries = []
    all_err, err7, inside = [], [], []
    refs = set()
    for s in fit.smiles:
        err = s.errors_vol_pts()
        ins = s.inside_mask()
        all_err.append(err)
        inside.append(ins)
        if s.t * 365.0 >= 7.0 - 1e-9:
            err7.append(err)
        d = s.data
        used = d.fitted & np.isfinite(d.ref_iv)
        if used.any():
            refs.update("mark_iv" if m else "mid_iv" for m in d.ref_is_mark[used])
        expiries.append({
            "expiry": _iso(s.expiry_ns), "expiry_ns": s.expiry_ns, "t_years": _f(s.t, 8),
            "days": _f(s.t * 365.0, 4), "forward": _f(s.forward, 4), "forward_source": s.forward_source,
            "n_quotes": s.n_quotes, "n_bounds": int((~d.fitted).sum()),
            "rmse_vol_pts": _rmse(err), "inside_bid_ask": _f(float(ins.mean()), 4) if len(ins) else None,
            "atm_iv": _f(float(s.iv(np.array([0.0]))[0])), "status": s.status,
            "params": {k: (_f(v, 10) if isinstance(v, float) else v) for k, v in s.smile.to_json().items()},
        })
    grid = resample([(s.t, s.forward, s.smile) for s in fit.smiles], tenors_days, DELTAS)
    cat = lambda xs: np.concatenate(xs) if xs else np.empty(0)  # noqa: E731
    ins_all = cat(inside)
    out = {
        "now": _iso(fit.now_ns), "now_ns": fit.now_ns, "status": fit.status, "method": fit.method,
        "expiries": expiries,
        "skipped_expiries": [{"expiry": _iso(e), "expiry_ns": e, "reason": r} for e, r in sorted(fit.skipped.items())],
        "n_input_quotes": n_input, "n_fitted_quotes": int(sum(s.n_quotes for s in fit.smiles)),
        "dropped": dict(sorted(fit.dropped.items())),
        "rmse_vol_pts": _rmse(cat(all_err)), "rmse_vol_pts_7d_plus": _rmse(cat(err7)),
        "rmse_reference": " and ".join(sorted(refs)) or None,
        "inside_bid_ask": _f(float(ins_all.mean()), 4) if len(ins_all) else None,
        "n_inside_checked": int(len(ins_all)),
        "arbitrage": {**fit.arbitrage, "check_points": int(len(fit.check_k)),
                      "check_k": [_f(float(fit.check_k.min()), 4), _f(float(fit.check_k.max()), 4)]
                      if len(fit.check_k) else None},
        "grid": {"tenors_days": grid["tenors_days"], "deltas": grid["deltas"],
                 "iv": [[_f(x) for x in row] for row in grid["iv"]],
                 "k": [[_f(x) for x in row] for row in grid["k"]],
                 "strike": [[_f(x, 2) for x in row] for row in grid["strike"]]},
        "atm": {k: _f(v) for k, v in grid["atm"].items()},
        "rr25": {k: _f(v) for k, v in grid["rr25"].items()},
        "bf25": {k: _f(v) for k, v in grid["bf25"].items()},
        "rr10": {k: _f(v) for k, v in grid["rr10"].items()},
        "bf10": {k: _f(v) for k, v in grid["bf10"].items()},
        "conventions": CONVENTIONS,
        "fit_ms": _f(fit.fit_ms, 3), "grid_ms": _f(1e3 * (time.perf_counter() - t0), 3),
        "warm_started_expiries": fit.warm, "iterations": fit.iterations,
    }
    return out


def report(quotes: Sequence[OptionQuote], now_ns: int, prev: SurfaceFit | None = None,
           cfg: FitConfig | None = None, tenors_days: Sequence[float] = TENORS_DAYS) -> dict:
    """Fit ``quotes`` valued at ``now_ns`` and report it (the ``volcast surface --json`` document).

    Never raises on thin data: an empty or one-sided chain gives a report whose
    ``status`` says why nothing (or less) was fitted.
    """
    fit = fit_surface(quotes, now_ns, prev=prev, cfg=cfg)
    return report_fit(fit, tenors_days, n_input=len(quotes))


_ = DAY_NS


def render_text(rep: dict) -> str:
    """A short human summary of a :func:`report` document (``volcast surface`` without ``--json``).

    >>> print(render_text(report([], now_ns=0)))
    surface at 1970-01-01T00:00:00Z: empty: no quotes
    """
    lines = [f"surface at {rep['now']}: {rep['status']}"]
    if not rep["expiries"]:
        return "\n".join(lines)
    pct = lambda x: "  n/a" if x is None else f"{100 * x:5.1f}"  # noqa: E731
    lines.append(f"{'expiry':<22}{'days':>8}{'forward':>11}{'quotes':>7}{'rmse vp':>9}{'inside':>8}{'atm %':>7}  status")
    for e in rep["expiries"]:
        rmse = "n/a" if e["rmse_vol_pts"] is None else f"{e['rmse_vol_pts']:.2f}"
        lines.append(f"{e['expiry']:<22}{e['days']:>8.2f}{e['forward']:>11,.2f}{e['n_quotes']:>7}{rmse:>9}"
                     f"{pct(e['inside_bid_ask']):>8}{pct(e['atm_iv']):>7}  {e['status']}")
    a = rep["arbitrage"]
    lines.append(f"rmse {rep['rmse_vol_pts']} vol pts vs {rep['rmse_reference']} "
                 f"(>=7d: {rep['rmse_vol_pts_7d_plus']}), inside bid/ask {pct(rep['inside_bid_ask']).strip()}%, "
                 f"violations: butterfly {a['butterfly']}, calendar {a['calendar']} on {a['check_points']} k points")
    if rep["grid"]["tenors_days"]:
        lines.append(f"{'tenor':<7}" + "".join(f"{d:>8}" for d in rep["grid"]["deltas"]) + f"{'RR25':>8}{'BF25':>8}")
        for days, row in zip(rep["grid"]["tenors_days"], rep["grid"]["iv"]):
            label = f"{days:g}d"
            lines.append(f"{label:<7}" + "".join(f"{pct(x):>8}" for x in row)
                         + f"{pct(rep['rr25'].get(label)):>8}{pct(rep['bf25'].get(label)):>8}")
    lines.append(f"fit {rep['fit_ms']:.1f} ms, dropped {rep['dropped']}")
    return "\n".join(lines)
