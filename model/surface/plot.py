"""Pictures of a fit: every expiry's smile (bid, ask, mark, fit) and the surface.

Uses matplotlib's object API with the Agg canvas, so importing or calling this never
changes the process-wide pyplot backend and needs no display.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from model.surface.fit import SurfaceFit

__all__ = ["plot"]


def plot(fit: SurfaceFit, path: str | Path | None = None, title: str = ""):
    """A matplotlib ``Figure`` of ``fit``; written as PNG to ``path`` when given.

    One panel per expiry: bid and ask IVs as a band of markers, the reference IV
    (mark or mid), bound-only quotes hollow, and the fitted smile over the quoted
    range and a little beyond. A last panel shows the fitted smiles of all expiries
    against delta-like standardized moneyness ``k / sqrt(w_atm)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(fit.smiles)
    cols = 3
    rows = max(1, math.ceil((n + 1) / cols))
    fig = Figure(figsize=(5.0 * cols, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(max(n + 1, 1))]
    for ax, s in zip(axes, fit.smiles):
        d = s.data
        pct = 100.0
        ax.plot(d.k, pct * d.bid_iv, "^", ms=4, color="tab:green", label="bid")
        ax.plot(d.k, pct * d.ask_iv, "v", ms=4, color="tab:red", label="ask")
        fitted = d.fitted
        ax.plot(d.k[fitted], pct * d.ref_iv[fitted], "o", ms=4, color="black", label="mark/mid")
        span = max(float(np.ptp(d.k)), 0.05)
        kk = np.linspace(float(d.k.min()) - 0.15 * span, float(d.k.max()) + 0.15 * span, 300)
        ax.plot(kk, pct * s.iv(kk), "-", color="tab:blue", label="fit")
        lo = np.nanmin(pct * d.ref_iv[fitted]) if fitted.any() else 0.0
        hi = np.nanmax(pct * d.ref_iv[fitted]) if fitted.any() else 200.0
        ax.set_ylim(max(0.0, lo - 0.3 * (hi - lo) - 5), hi + 0.3 * (hi - lo) + 5)
        err = s.errors_vol_pts()
        rmse = math.sqrt(float(np.mean(err * err))) if len(err) else float("nan")
        ax.set_title(f"{s.t * 365:.2f}d  F={s.forward:,.0f}  rmse {rmse:.2f} vp", fontsize=9)
        ax.set_xlabel("k = ln(K/F)")
        ax.set_ylabel("IV %")
        ax.grid(alpha=0.3)
    if n:
        axes[0].legend(fontsize=7)
        ax = axes[n]
        for s in fit.smiles:
            sd = math.sqrt(max(float(s.smile.w(np.array([0.0]))[0]), 1e-12))
            z = np.linspace(-3.0, 3.0, 200)
            ax.plot(z, 100.0 * s.iv(z * sd), label=f"{s.t * 365:.1f}d")
        ax.set_xlabel("k / sqrt(w_atm)")
        ax.set_ylabel("IV %")
        ax.set_title("surface: smiles by expiry", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
    else:
        axes[0].text(0.5, 0.5, f"nothing fitted: {fit.status}", ha="center", va="center")
    for ax in axes[n + 1:]:
        ax.axis("off")
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
