"""One expiry's smile: raw SVI plus an optional cubic B-spline correction on the quoted range.

.. math::

    w(k) = w_{SVI}(k) + \\sum_{j<n} c_j\\, N\\!\\left(\\frac{k - k_0}{h} - j\\right)

with ``N`` the cardinal cubic B-spline on ``[0, 4]``. Every basis function is zero,
with its first two derivatives, outside ``[k_0, k_0 + (n + 3) h]``, which the fit
places just around the quoted strikes: beyond them the smile is pure SVI, so the
wings keep SVI's linear asymptotes and Lee's bound. With no coefficients the smile
is plain raw SVI.

>>> p = SVIParams(a=0.01, b=0.1, rho=-0.3, m=0.0, sigma=0.1)
>>> s = Smile(svi=p, k0=-0.5, h=0.1, coef=(0.0, 0.001, 0.0, 0.0, 0.0, 0.0, 0.0))
>>> round(float(s.w(np.array([-0.5 + 0.3]))[0] - p.total_variance(np.array([-0.2]))[0]), 6)
0.000667
>>> float(s.w(np.array([2.0]))[0]) == float(p.total_variance(np.array([2.0]))[0])
True
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from model.surface.engine import bspline_eval3
from model.surface.svi import SVIParams, g_of, svi_derivatives

__all__ = ["Smile"]


class Smile(msgspec.Struct, frozen=True, kw_only=True):
    """Raw SVI ``svi`` plus ``sum_j coef[j] N((k - k0)/h - j)`` in total variance."""

    svi: SVIParams
    k0: float = 0.0
    h: float = 1.0
    coef: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.h) and self.h > 0):
            raise ValueError(f"knot spacing h must be > 0, got {self.h}")

    @property
    def nb(self) -> int:
        return len(self.coef)

    @property
    def support(self) -> tuple[float, float]:
        """Where the correction can be non-zero."""
        return self.k0, self.k0 + (self.nb + 3) * self.h

    def derivatives(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(w, w', w'')`` in ``k``."""
        k = np.asarray(k, dtype=np.float64)
        w, w1, w2 = svi_derivatives(k, *self.svi.as_tuple())
        if self.nb:
            c0, c1, c2 = (c.reshape(k.shape) for c in self._spline(k))
            w, w1, w2 = w + c0, w1 + c1, w2 + c2
        return w, w1, w2

    def _spline(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The correction and its two derivatives at ``k`` (flattened)."""
        return bspline_eval3(k.reshape(1, -1), np.array([self.k0]), np.array([self.h]), np.array([self.coef]))

    def w(self, k: np.ndarray) -> np.ndarray:
        """Total implied variance at ``k``."""
        k = np.asarray(k, dtype=np.float64)
        w = self.svi.total_variance(k)
        if self.nb:
            w = w + self._spline(k)[0].reshape(k.shape)
        return w

    def g(self, k: np.ndarray) -> np.ndarray:
        """Gatheral-Jacquier density factor ``g(k)``; ``g >= 0`` means no butterfly arbitrage."""
        k = np.asarray(k, dtype=np.float64)
        return g_of(k, *self.derivatives(k))

    def iv(self, k: np.ndarray, t: float) -> np.ndarray:
        """Implied vol at ``k`` for an expiry ``t`` years away."""
        return np.sqrt(np.maximum(self.w(k), 0.0) / t)

    def to_json(self) -> dict:
        out: dict = {"a": self.svi.a, "b": self.svi.b, "rho": self.svi.rho, "m": self.svi.m,
                     "sigma": self.svi.sigma}
        if self.nb:
            out["spline"] = {"k0": self.k0, "h": self.h, "coef": list(self.coef)}
        return out
