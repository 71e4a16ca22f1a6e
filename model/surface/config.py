"""Settings of the surface fit; every default is documented here and in docs/surface.md."""

from __future__ import annotations

from typing import Literal

import msgspec

SECOND_NS = 1_000_000_000
DAY_NS = 86_400 * SECOND_NS
YEAR_NS = 365 * DAY_NS  # ARCHITECTURE.md: 365-day, 24-hour year


class FitConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How quotes are cleaned and weighted and how hard the constraints are held.

    >>> FitConfig().max_quote_age_s
    600.0
    >>> FitConfig(min_expiry_s=-1)
    Traceback (most recent call last):
    ...
    ValueError: min_expiry_s must be >= 0, got -1
    """

    # quote cleaning
    min_expiry_s: float = 900.0  # expiries closer than this are not fitted (15 min)
    max_quote_age_s: float = 600.0  # quotes older than now - this are stale and dropped
    spread_floor: float = 0.01  # half-spread floor in vol (1 vol pt): no quote dominates
    spread_cap: float = 0.25  # half-spreads wider than this (25 vol pts) are capped
    one_sided_factor: float = 2.0  # bid-only quote: this x the expiry's median half-spread
    # model
    method: Literal["svi_spline", "svi"] = "svi_spline"  # raw SVI + B-spline correction, or raw SVI alone
    spline_basis: int = 6  # cubic B-splines of the correction, on the quoted range
    spline_min_quotes: int = 12  # fewer fitted quotes than this: no correction (plain SVI)
    spline_tau: float = 1.0  # prior width of a coefficient and of its 2nd difference, in ATM total variances
    # objective
    robust_scale: float = 2.0  # soft-L1 loss switches from quadratic to linear here (half-spreads)
    band_weight: float = 4.0  # weight of a fitted IV outside [bid_iv, ask_iv] (per half-spread)
    butterfly_floor: float = 0.01  # the fit keeps g(k) >= this on its penalty grid
    calendar_margin: float = 1e-4  # the fit keeps w_T2 - w_T1 >= this x ATM variance of T2
    sparse_quotes: int = 5  # fewer fitted quotes than this: shape borrowed from a neighbour
    # solver
    # numba: the compiled kernel (cached on disk after the first compile); numpy: the readable reference
    backend: Literal["numba", "numpy"] = "numba"
    cold_iterations: int = 60
    warm_iterations: int = 25
    tol: float = 1e-5  # relative cost decrease that ends the Levenberg-Marquardt loop

    def __post_init__(self) -> None:
        for name in ("min_expiry_s", "max_quote_age_s", "spread_floor", "band_weight", "calendar_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.spread_floor <= self.spread_cap:
            raise ValueError(f"need 0 < spread_floor <= spread_cap, got {self.spread_floor}, {self.spread_cap}")
        if self.robust_scale <= 0:
            raise ValueError(f"robust_scale must be > 0, got {self.robust_scale}")
        if self.method not in ("svi_spline", "svi"):
            raise ValueError(f"method must be 'svi_spline' or 'svi', got {self.method!r}")
        if self.backend not in ("numba", "numpy"):
            raise ValueError(f"backend must be 'numba' or 'numpy', got {self.backend!r}")
        if self.spline_basis < 0 or self.spline_tau <= 0:
            raise ValueError("spline_basis must be >= 0 and spline_tau > 0")
        if self.cold_iterations < 1 or self.warm_iterations < 1:
            raise ValueError("iteration limits must be >= 1")
