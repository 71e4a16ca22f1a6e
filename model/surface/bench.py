"""Surface refit timing on a real chain, cold and warm, for ``volcast bench``.

The caller hands the chain in (``model`` reads no files)::

    from connectors.chains import read_chain
    chain = read_chain("tests/data/deribit/schepal_options_data.csv")
    surface_benchmark(chain.quotes, chain.now_ns)

Cases, each best-of-``runs`` (and the median) of ``fit_surface`` wall time, which
includes quote cleaning, the fit, the dense arbitrage check and any repair:

- ``cold``: no previous fit.
- ``warm_stream``: per lag in ``lags_s``, warm-started from the fit of the same
  chain as of that much earlier (only the quotes already stamped by then), the
  streaming case; 5 s is the daemon's default refit interval (``surface_refit_s``).
  Chains without intraday timestamps have none.
- ``warm_same``: warm-started from a fit of the identical chain (a lower bound).
- ``replicated``: the real quotes with every expiry copied to ``expiry + 12 hours``
  (twice the options and expiries), cold, ``warm_same`` and ``warm_stream``. Half a day, not a whole one: the chain has
  consecutive daily expiries, and a copy landing on a real expiry would merge two
  different quote sets into one contradictory smile. A synthetic *layout* of real quote values, for
  the ~700-option size the targets name; it is labelled so in the output.
- ``scaling``: cold time on the first 2, 4, ... expiries, and ms per option.

Every backend is timed after its first call (reported separately): the numba
kernels load from their on-disk cache there (or compile, the first time after an
install), and JAX compiles once per shape bucket, so a stream pays it once.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Sequence

from connectors.events import OptionQuote
from model.surface.config import DAY_NS, SECOND_NS, FitConfig
from model.surface.fit import SurfaceFit, fit_surface

__all__ = ["surface_benchmark"]


def _time(fn, runs: int) -> tuple[dict, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return {"best_ms": round(min(times), 3), "median_ms": round(statistics.median(times), 3), "runs": runs}, out


def _replicate(quotes: Sequence[OptionQuote]) -> list[OptionQuote]:
    out = list(quotes)
    for q in quotes:
        d = {f: getattr(q, f) for f in q.__struct_fields__}
        d["expiry_ns"] = q.expiry_ns + DAY_NS // 2
        d["symbol"] = q.symbol + "+12h"
        out.append(OptionQuote(**d))
    return out


def _case(quotes, now_ns, cfg: FitConfig, runs: int, prev: SurfaceFit | None = None) -> dict:
    stats, fit = _time(lambda: fit_surface(quotes, now_ns, prev=prev, cfg=cfg), runs)
    assert isinstance(fit, SurfaceFit)
    return {**stats, "options": len(quotes), "expiries": len(fit.smiles), "iterations": fit.iterations,
            "warm_expiries": fit.warm, "arbitrage": fit.arbitrage}


def surface_benchmark(quotes: Sequence[OptionQuote], now_ns: int, runs: int = 7, lags_s: Sequence[float] = (5.0, 60.0),
                      backends: Sequence[str] = ("numba", "numpy")) -> dict:
    """Timings of :func:`fit_surface` on ``quotes``; see the module docstring for the cases."""
    out: dict = {
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None},
        "chain": {"options": len(quotes), "now_ns": now_ns},
        "backends": {},
    }
    earlier = {lag: [q for q in quotes if q.ts_ns <= now_ns - lag * SECOND_NS] for lag in lags_s}
    earlier = {lag: qs for lag, qs in earlier.items() if qs and len(qs) < len(quotes)}
    for backend in backends:
        cfg = FitConfig(backend=backend)
        res: dict = {}
        t0 = time.perf_counter()
        base = fit_surface(quotes, now_ns, cfg=cfg)
        res["first_call_ms"] = round(1e3 * (time.perf_counter() - t0), 1)  # includes loads and compiles
        res["cold"] = _case(quotes, now_ns, cfg, runs)
        res["warm_same"] = _case(quotes, now_ns, cfg, runs, prev=base)
        rep = _replicate(quotes)
        fit_surface(rep, now_ns, cfg=cfg)
        rep_base = fit_surface(rep, now_ns, cfg=cfg)
        res["replicated"] = {
            "label": "synthetic layout: the real quotes, every expiry also copied to expiry + 12 hours",
            "cold": _case(rep, now_ns, cfg, max(3, runs // 2)),
            "warm_same": _case(rep, now_ns, cfg, runs, prev=rep_base),
        }
        for lag, qs in earlier.items():
            label = f"{lag:g}s"
            then = now_ns - int(lag * SECOND_NS)
            for target, chain, prev_chain in ((res, quotes, qs), (res["replicated"], rep, _replicate(qs))):
                prev = fit_surface(prev_chain, then, cfg=cfg)
                target.setdefault("warm_stream", {})[label] = {
                    **_case(chain, now_ns, cfg, runs, prev=prev),
                    "from": f"fit of the {len(prev_chain)} quotes stamped {label} earlier"}
        expiries = sorted({q.expiry_ns for q in quotes})
        scaling = []
        for m in range(2, len(expiries) + 1, 2) if len(expiries) > 2 else [len(expiries)]:
            sub = [q for q in quotes if q.expiry_ns in set(expiries[:m])]
            fit_surface(sub, now_ns, cfg=cfg)
            c = _case(sub, now_ns, cfg, max(3, runs // 2))
            scaling.append({"expiries": m, "options": len(sub), "cold_best_ms": c["best_ms"],
                            "ms_per_option": round(c["best_ms"] / max(len(sub), 1), 4)})
        res["scaling"] = scaling
        out["backends"][backend] = res
    return out
