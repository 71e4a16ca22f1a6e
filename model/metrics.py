"""Forecast losses on variance (research/models.md §1.4).

Patton (2011, J. Econometrics 160(1):246-256): with a noisy proxy such as realized
variance, only losses of the MSE/QLIKE family rank variance forecasts robustly.
QLIKE is the primary loss; both take variances (not vols), elementwise.

>>> float(qlike(2.0, 2.0)), float(mse_var(3.0, 1.0))
(0.0, 4.0)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def qlike(rv: ArrayLike, forecast: ArrayLike) -> np.ndarray:
    """QLIKE loss rv/f - ln(rv/f) - 1, the b = -2 member of Patton's (2011) robust family; zero iff f == rv.

    >>> round(float(qlike(1.0, 2.0)), 6)  # under- and over-forecasts are penalized asymmetrically
    0.193147
    """
    rv_a, f = np.asarray(rv, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    if np.any(f <= 0.0) or np.any(rv_a <= 0.0):
        raise ValueError("QLIKE needs positive realized variances and forecasts")
    ratio = rv_a / f
    return ratio - np.log(ratio) - 1.0


def mse_var(rv: ArrayLike, forecast: ArrayLike) -> np.ndarray:
    """Squared error on variance (rv - f)^2, twice the b = 0 member of Patton's (2011) robust family.

    >>> mse_var([1.0, 2.0], [1.0, 1.0]).tolist()
    [0.0, 1.0]
    """
    return (np.asarray(rv, dtype=np.float64) - np.asarray(forecast, dtype=np.float64)) ** 2


def pinball(y: ArrayLike, q: ArrayLike, tau: float) -> np.ndarray:
    """Pinball (quantile) loss max(tau*(y-q), (tau-1)*(y-q)) of quantile ``q`` at level ``tau``.

    >>> pinball([1.0, 3.0], [2.0, 2.0], 0.9).round(6).tolist()
    [0.1, 0.9]
    """
    if not 0.0 < tau < 1.0:
        raise ValueError(f"tau must be in (0, 1), got {tau}")
    u = np.asarray(y, dtype=np.float64) - np.asarray(q, dtype=np.float64)
    return np.maximum(tau * u, (tau - 1.0) * u)


def diebold_mariano(loss_a: ArrayLike, loss_b: ArrayLike, max_lag: int) -> tuple[float, float]:
    """Mean loss difference d = a - b and its Diebold-Mariano (1995) t-statistic with a Newey-West (1987) HAC variance.

    Bartlett weights 1 - k/(max_lag+1) up to ``max_lag``; overlapping h-step
    targets need ``max_lag`` of at least h - 1 steps. t > 1.96: ``b`` is better at 5%.

    >>> rng = np.random.default_rng(0)
    >>> d, t = diebold_mariano(rng.normal(1.0, 1.0, 1000), rng.normal(0.0, 1.0, 1000), max_lag=5)
    >>> round(d, 1), t > 10
    (1.0, True)
    """
    d = np.asarray(loss_a, dtype=np.float64) - np.asarray(loss_b, dtype=np.float64)
    n = len(d)
    if n <= max_lag + 1:
        raise ValueError(f"Diebold-Mariano needs more than {max_lag + 1} losses, got {n}")
    dc = d - d.mean()
    var = dc @ dc / n
    for k in range(1, max_lag + 1):
        var += 2.0 * (1.0 - k / (max_lag + 1)) * (dc[k:] @ dc[:-k]) / n
    return float(d.mean()), float(d.mean() / np.sqrt(var / n))
