"""GARCH(1,1) and GJR-GARCH(1,1,1) with Student-t errors: fitted by ``arch``, run forward by the recursion.

Bollerslev (1986); Glosten, Jagannathan & Runkle (1993); fitted by maximum
likelihood with ``arch`` 8 (zero mean, Student-t innovations). ``arch`` cannot
append observations to a fitted model (bashtage/arch#416), so between refits
the conditional variance is carried by the recursion here, with the last fit's
parameters:

.. math:: \\sigma^2_{t+1} = \\omega + (\\alpha + \\gamma 1\\{r_t < 0\\}) r_t^2 + \\beta \\sigma^2_t

(``gamma`` = 0 for GARCH). A missing return adds its expectation
``(alpha + gamma/2) sigma^2_t`` instead. The variance of the next ``h`` returns
is the sum of the k-step forecasts, with persistence ``p = alpha + gamma/2 + beta``
(the t density is symmetric, so half the shocks are negative):

.. math:: \\sum_{k=1}^{h} E_t \\sigma^2_{t+k} = h\\bar\\sigma^2 + (\\sigma^2_{t+1} - \\bar\\sigma^2)
          \\frac{1 - p^h}{1 - p}, \\qquad \\bar\\sigma^2 = \\frac{\\omega}{1 - p}

>>> rng = np.random.default_rng(0)
>>> r = rng.standard_t(6, 3000) * 0.01
>>> fit = fit_garch(r, "garch")
>>> 0.0 <= fit.alpha < 0.3 and 0.0 <= fit.beta < 1.0 and fit.nu > 2.0
True
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec
import numpy as np

Kind = Literal["garch", "gjr"]


class GarchFit(msgspec.Struct, frozen=True, kw_only=True):
    """Fitted parameters in the units of the raw returns (``omega`` already unscaled)."""

    kind: str
    omega: float
    alpha: float
    gamma: float
    beta: float
    nu: float
    sigma2_last: float  # conditional variance of the last in-sample return
    n_obs: int
    loglik: float

    @property
    def persistence(self) -> float:
        """``alpha + gamma / 2 + beta``."""
        return self.alpha + 0.5 * self.gamma + self.beta


def fit_garch(returns: np.ndarray, kind: Kind = "garch", target_std: float = 5.0) -> GarchFit:
    """Fit a zero-mean GARCH(1,1)-t or GJR-GARCH(1,1,1)-t to ``returns`` (NaN entries dropped).

    Returns are multiplied by ``target_std / std(returns)`` for the optimizer (``arch``
    wants variances between 1 and 1000) and the fit is mapped back.

    Raises
    ------
    ValueError
        Fewer than 100 returns, or an unknown ``kind``.
    """
    from arch import arch_model

    if kind not in ("garch", "gjr"):
        raise ValueError(f"kind must be 'garch' or 'gjr', got {kind!r}")
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 100:
        raise ValueError(f"GARCH needs at least 100 returns, got {len(r)}")
    std = float(r.std())
    scale = target_std / std if std > 0 else 1.0
    model = arch_model(r * scale, mean="Zero", vol="GARCH", p=1, o=1 if kind == "gjr" else 0, q=1, dist="t",
                       rescale=False)
    res = model.fit(disp="off", show_warning=False)
    p = res.params
    s2 = scale * scale
    return GarchFit(
        kind=kind,
        omega=float(p["omega"]) / s2,
        alpha=float(p["alpha[1]"]),
        gamma=float(p["gamma[1]"]) if kind == "gjr" else 0.0,
        beta=float(p["beta[1]"]),
        nu=float(p["nu"]),
        sigma2_last=float(res.conditional_volatility[-1]) ** 2 / s2,
        n_obs=len(r),
        loglik=float(res.loglikelihood),
    )


def step_variance(fit: GarchFit, returns: np.ndarray, sigma2_start: float) -> np.ndarray:
    """One-step-ahead variances: ``out[i]`` = Var(r_{i+1} | r_0..r_i), starting from ``sigma2_start`` = Var(r_0).

    >>> f = GarchFit(kind="garch", omega=0.1, alpha=0.1, gamma=0.0, beta=0.8, nu=8, sigma2_last=1.0, n_obs=0, loglik=0)
    >>> step_variance(f, np.array([2.0, np.nan]), 1.0).round(4).tolist()
    [1.3, 1.27]
    """
    out = np.empty(len(returns))
    s2 = sigma2_start
    w, a, g, b = fit.omega, fit.alpha, fit.gamma, fit.beta
    for i, r in enumerate(np.asarray(returns, dtype=np.float64).tolist()):
        if not math.isnan(r):
            s2 = w + (a + (g if r < 0 else 0.0)) * r * r + b * s2
        else:
            s2 = w + (a + 0.5 * g + b) * s2
        out[i] = s2
    return out


def horizon_variance(fit: GarchFit, sigma2_next: np.ndarray, h: int) -> np.ndarray:
    """Expected variance of the next ``h`` returns given the next step's ``sigma2_next``.

    >>> f = GarchFit(kind="garch", omega=0.1, alpha=0.1, gamma=0.0, beta=0.8, nu=8, sigma2_last=1.0, n_obs=0, loglik=0)
    >>> float(horizon_variance(f, np.array([1.0]), 3)[0].round(6)), 1.0 + (0.1 + 0.9) + (0.1 + 0.9 * 1.0)
    (3.0, 3.0)
    """
    p = fit.persistence
    s = np.asarray(sigma2_next, dtype=np.float64)
    if p < 1.0 - 1e-9:
        bar = fit.omega / (1.0 - p)
        return h * bar + (s - bar) * (1.0 - p**h) / (1.0 - p)  # type: ignore[no-any-return]
    total, cur = np.zeros_like(s), s.copy()
    for _ in range(h):
        total += cur
        cur = fit.omega + p * cur
    return total


def rolling_forecasts(
    returns: np.ndarray,
    refit_at: np.ndarray,
    horizons: tuple[int, ...],
    kind: Kind = "garch",
) -> tuple[np.ndarray, list[GarchFit]]:
    """Variance forecasts ``[n, H]`` made after each return, refitting on the returns up to each ``refit_at``.

    ``refit_at`` holds increasing indices ``i``: the fit uses ``returns[: i + 1]``
    and serves forecasts made after returns ``i .. next refit - 1``. Before the
    first refit the row is NaN. No forecast uses a return after its time.
    """
    r = np.asarray(returns, dtype=np.float64)
    out = np.full((len(r), len(horizons)), np.nan)
    fits = []
    refit = [int(i) for i in refit_at]
    for k, start in enumerate(refit):
        stop = refit[k + 1] if k + 1 < len(refit) else len(r)
        fit = fit_garch(r[: start + 1], kind)
        fits.append(fit)
        # sigma2_last is Var(r_start); the recursion gives Var(r_{i+1} | r_0..r_i) for i >= start.
        nxt = step_variance(fit, r[start:stop], _prev_variance(fit))
        for j, h in enumerate(horizons):
            out[start:stop, j] = horizon_variance(fit, nxt, h)
    return out, fits


def _prev_variance(fit: GarchFit) -> float:
    """Var(r_last) from the fit's end state, so that :func:`step_variance` starting at ``r_last`` continues it."""
    return fit.sigma2_last if math.isfinite(fit.sigma2_last) else fit.omega / max(1e-9, 1.0 - fit.persistence)
