"""Black-76 on the forward in normalized units: prices, implied vol, forward delta.

Everything is in units of the forward ``F`` and in total implied standard deviation
``s = sigma * sqrt(t)`` (total variance ``w = s**2``), with log-moneyness
``k = ln(K / F)``:

.. math::

    d_1 = -k / s + s / 2, \\quad d_2 = d_1 - s

    c(k, s) = N(d_1) - e^k N(d_2), \\quad p(k, s) = e^k N(-d_2) - N(-d_1)

Deribit's options are inverse (coin-settled): the premium in coin is the USD
premium on the forward divided by the forward, which is exactly ``c`` or ``p``
above (checked against Deribit's own mark prices in the tests). So a coin price
is already a normalized Black-76 price, and rates do not enter (Deribit quotes
``interest_rate`` 0 and values each expiry against its own forward).

Delta is the forward Black delta, not premium-adjusted: ``N(d1)`` for a call and
``N(d1) - 1`` for a put, which is what Deribit's ``greeks.delta`` reports.

>>> c = black_price(np.array([0.0]), np.array([0.2]), True)
>>> round(float(implied_total_vol(c, np.array([0.0]), True)[0]), 10)
0.2
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

__all__ = ["black_price", "implied_total_vol", "forward_delta", "d1_of", "ndtr", "ndtri"]

_S_LO, _S_HI = 1e-7, 20.0  # bracket for the total std dev in the inversion


def d1_of(k: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``d1 = -k/s + s/2``."""
    return -k / s + 0.5 * s


def black_price(k: np.ndarray, s: np.ndarray, is_call: np.ndarray | bool) -> np.ndarray:
    """Normalized Black-76 price (units of the forward) for log-moneyness ``k``, total std ``s``.

    >>> round(float(black_price(np.array([0.0]), np.array([0.1]), False)[0]), 6)
    0.039878
    """
    k = np.asarray(k, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    d1 = d1_of(k, s)
    d2 = d1 - s
    call = ndtr(d1) - np.exp(k) * ndtr(d2)
    put = np.exp(k) * ndtr(-d2) - ndtr(-d1)
    return np.where(is_call, call, put)


def forward_delta(k: np.ndarray, s: np.ndarray, is_call: np.ndarray | bool) -> np.ndarray:
    """Forward Black delta, not premium-adjusted: ``N(d1)`` (call) or ``N(d1) - 1`` (put).

    >>> round(float(forward_delta(np.array([0.0]), np.array([0.2]), True)[0]), 4)
    0.5398
    """
    nd1 = ndtr(d1_of(np.asarray(k, dtype=np.float64), np.asarray(s, dtype=np.float64)))
    return np.where(is_call, nd1, nd1 - 1.0)


def implied_total_vol(price: np.ndarray, k: np.ndarray, is_call: np.ndarray | bool) -> np.ndarray:
    """Total implied std dev ``s`` from a normalized price; NaN where there is none.

    The option is first reduced to its out-of-the-money twin (time value = price -
    intrinsic, by put-call parity on the forward), then a put is turned into a call
    by ``p(k, s) = e^k c(-k, s)``, so only calls with ``k >= 0`` are inverted: their
    price rises monotonically in ``s`` from 0 to 1. Prices at or below intrinsic, or
    at or above the forward-price bound, have no IV and give NaN. The inversion is
    a vectorized bisection in ``log s`` finished by two Newton steps, accurate to
    about 1e-12 relative in ``s``.

    >>> k = np.array([-0.3, 0.0, 0.4]); s = np.array([0.05, 0.3, 1.2])
    >>> p = black_price(k, s, np.array([False, True, True]))
    >>> np.round(implied_total_vol(p, k, np.array([False, True, True])), 12)
    array([0.05, 0.3 , 1.2 ])
    """
    price = np.asarray(price, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    is_call = np.broadcast_to(np.asarray(is_call, dtype=bool), price.shape)
    ek = np.exp(k)
    intrinsic = np.where(is_call, np.maximum(1.0 - ek, 0.0), np.maximum(ek - 1.0, 0.0))
    tv = price - intrinsic  # time value = price of the OTM twin
    # OTM twin as a call with kk >= 0: for k < 0 the twin is a put, p(k) = e^k c(-k).
    kk = np.abs(k)
    target = np.where(k < 0, tv / ek, tv)
    ok = np.isfinite(target) & (target > 0) & (target < 1.0)
    tgt = np.where(ok, target, 0.5)
    lo = np.full(price.shape, np.log(_S_LO))
    hi = np.full(price.shape, np.log(_S_HI))
    for _ in range(40):  # bracket width 19 / 2^40 in log s, then Newton
        mid = 0.5 * (lo + hi)
        above = _call(kk, np.exp(mid)) > tgt
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    s = np.exp(0.5 * (lo + hi))
    for _ in range(2):  # Newton polish: vega of the normalized call is phi(d1)
        d1 = d1_of(kk, s)
        vega = np.exp(-0.5 * d1 * d1) / np.sqrt(2.0 * np.pi)
        step = np.where(vega > 1e-300, (_call(kk, s) - tgt) / np.maximum(vega, 1e-300), 0.0)
        s = np.clip(s - step, _S_LO, _S_HI)
    return np.where(ok, s, np.nan)


def _call(k: np.ndarray, s: np.ndarray) -> np.ndarray:
    d1 = d1_of(k, s)
    return ndtr(d1) - np.exp(k) * ndtr(d1 - s)
