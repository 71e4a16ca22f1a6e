"""Raw SVI smiles in total variance, the butterfly density g(k), and static-arbitrage checks.

Raw SVI (Gatheral 2004) for one expiry, total implied variance against
log-moneyness ``k = ln(K/F)``:

.. math::

    w(k) = a + b\\left(\\rho (k - m) + \\sqrt{(k - m)^2 + \\sigma^2}\\right)

with ``b >= 0``, ``|rho| < 1``, ``sigma > 0`` and ``a + b sigma sqrt(1 - rho^2) >= 0``
(the minimum of ``w``, so ``w >= 0`` everywhere). The wings are linear with slopes
``b(1 + rho)`` (right) and ``-b(1 - rho)`` (left); Lee's moment bound asks
``b(1 + |rho|) <= 2``.

No butterfly arbitrage (a non-negative risk-neutral density) holds iff
(Gatheral & Jacquier 2014, arXiv 1204.0646, Lemma 2.2)

.. math::

    g(k) = \\left(1 - \\frac{k w'}{2 w}\\right)^2 - \\frac{w'^2}{4}\\left(\\frac{1}{w} + \\frac14\\right)
           + \\frac{w''}{2} \\ge 0 ,

and no calendar arbitrage iff ``w(k, T)`` is non-decreasing in ``T`` at every
fixed ``k``. As ``|k| -> inf``, ``g -> 1/4 - b^2 (1 +- rho)^2 / 16``, so the Lee bound
is also what keeps the far wings butterfly-free.

>>> p = SVIParams(a=0.01, b=0.1, rho=-0.3, m=0.0, sigma=0.1)
>>> round(float(p.total_variance(np.array([0.0]))[0]), 6)
0.02
>>> bool(butterfly_g(p, np.linspace(-2, 2, 401)).min() >= 0)
True
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

__all__ = ["SVIParams", "svi_w", "svi_derivatives", "g_of", "butterfly_g", "ssvi_slice"]


class SVIParams(msgspec.Struct, frozen=True, kw_only=True):
    """Raw SVI parameters of one expiry, in total variance against ``k = ln(K/F)``.

    >>> SVIParams(a=0.0, b=-1.0, rho=0.0, m=0.0, sigma=0.1)
    Traceback (most recent call last):
    ...
    ValueError: SVI needs b >= 0, got b=-1.0
    """

    a: float
    b: float
    rho: float
    m: float
    sigma: float

    def __post_init__(self) -> None:
        for name in ("a", "b", "rho", "m", "sigma"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"SVI parameter {name} must be finite, got {getattr(self, name)}")
        if self.b < 0:
            raise ValueError(f"SVI needs b >= 0, got b={self.b}")
        if not -1.0 < self.rho < 1.0:
            raise ValueError(f"SVI needs |rho| < 1, got rho={self.rho}")
        if self.sigma <= 0:
            raise ValueError(f"SVI needs sigma > 0, got sigma={self.sigma}")

    @property
    def w_min(self) -> float:
        """Minimum total variance ``a + b sigma sqrt(1 - rho^2)``."""
        return self.a + self.b * self.sigma * math.sqrt(1.0 - self.rho * self.rho)

    @property
    def lee(self) -> float:
        """``b (1 + |rho|)``, at most 2 for Lee's moment bound."""
        return self.b * (1.0 + abs(self.rho))

    def as_tuple(self) -> tuple[float, float, float, float, float]:
        return (self.a, self.b, self.rho, self.m, self.sigma)

    def total_variance(self, k: np.ndarray) -> np.ndarray:
        return svi_w(np.asarray(k, dtype=np.float64), *self.as_tuple())


def svi_w(k: np.ndarray, a, b, rho, m, sigma) -> np.ndarray:
    """``w(k)``; parameters may be arrays broadcasting against ``k``."""
    x = k - m
    return a + b * (rho * x + np.sqrt(x * x + sigma * sigma))


def svi_derivatives(k: np.ndarray, a, b, rho, m, sigma) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(w, w', w'')`` in ``k``: ``w' = b(rho + x/R)``, ``w'' = b sigma^2 / R^3``, ``x = k - m``."""
    x = k - m
    r = np.sqrt(x * x + sigma * sigma)
    w = a + b * (rho * x + r)
    return w, b * (rho + x / r), b * sigma * sigma / (r * r * r)


def g_of(k: np.ndarray, w: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """Gatheral-Jacquier ``g(k)`` from ``w, w', w''``; ``-inf`` where ``w <= 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (1.0 - k * w1 / (2.0 * w)) ** 2 - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2
    return np.where(w > 0, g, -np.inf)


def butterfly_g(p: SVIParams, k: np.ndarray) -> np.ndarray:
    """``g(k)`` of one raw SVI smile on the points ``k``."""
    k = np.asarray(k, dtype=np.float64)
    return g_of(k, *svi_derivatives(k, *p.as_tuple()))


def ssvi_slice(theta: float, rho: float, phi: float) -> SVIParams:
    """The SSVI slice ``w = theta/2 (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2))`` as raw SVI.

    Gatheral & Jacquier (Thm 4.2): it is free of butterfly arbitrage when
    ``theta phi (1 + |rho|) < 4`` and ``theta phi^2 (1 + |rho|) <= 4``.

    >>> p = ssvi_slice(0.04, -0.4, 2.0)
    >>> round(float(p.total_variance(np.array([0.0]))[0]), 12)
    0.04
    """
    return SVIParams(
        a=theta * (1.0 - rho * rho) / 2.0,
        b=theta * phi / 2.0,
        rho=rho,
        m=-rho / phi,
        sigma=math.sqrt(1.0 - rho * rho) / phi,
    )
