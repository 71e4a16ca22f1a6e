"""The implied-volatility surface: arbitrage-free smiles per expiry, a tenor x delta grid, skew.

Conventions (docs/surface.md has the full story):

- IV as a decimal fraction on a 365-day year; time in ns; ``k = ln(K/F)`` against
  each expiry's forward (the Deribit ``underlying_price``: the expiry's future or
  synthetic future; else put-call parity on coin prices).
- Each expiry is raw SVI in total variance ``w(k) = a + b(rho(k-m) + sqrt((k-m)^2 + sigma^2))``
  plus (method ``svi_spline``, the default) a smoothness-penalised cubic B-spline
  correction that lives only on the quoted strikes, so the wings stay SVI.
- No butterfly arbitrage (``g(k) >= 0``, Lee ``b(1+|rho|) <= 2``) and no calendar
  arbitrage (``w`` non-decreasing in ``T`` at fixed ``k``) are enforced in the fit
  and then counted on a dense check grid.
- **Delta** is the forward Black-76 delta, not premium-adjusted (Deribit's); **ATM**
  is forward ATM, ``k = 0``.

Public API: :func:`fit_surface`, :class:`SurfaceFitter` (streaming, warm-started),
:func:`report` / :func:`report_fit` (the ``volcast surface --json`` document),
:func:`plot`, :func:`resample`, :class:`FitConfig`, :class:`OptionQuote`, :func:`precompile`
(compiles the kernels of the default engine once; ``make install`` runs it).

>>> report([], now_ns=0)["status"]
'empty: no quotes'
"""

from connectors.events import OptionQuote
from model.surface.config import FitConfig
from model.surface.fit import SmileFit, SurfaceFit, SurfaceFitter, arbitrage_counts, fit_surface, precompile
from model.surface.grid import DELTAS, TENORS_DAYS, resample
from model.surface.plot import plot
from model.surface.report import CONVENTIONS, render_text, report, report_fit
from model.surface.smile import Smile
from model.surface.svi import SVIParams

__all__ = [
    "OptionQuote", "FitConfig", "SmileFit", "SurfaceFit", "SurfaceFitter", "fit_surface", "arbitrage_counts",
    "DELTAS", "TENORS_DAYS", "resample", "plot", "CONVENTIONS", "report", "report_fit", "render_text", "Smile",
    "SVIParams", "precompile",
]
