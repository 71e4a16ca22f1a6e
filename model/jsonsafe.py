"""Plain-JSON values for reports: NaN and inf become null, numpy scalars and tuples become JSON types."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_safe(x: Any) -> Any:
    """``x`` with NaN/inf floats as None and numpy scalars and tuples as plain JSON types.

    >>> json_safe({"a": float("nan"), "b": (np.float32(1.5), np.int64(2))})
    {'a': None, 'b': [1.5, 2]}
    """
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _plots(table: dict[str, Any], ok: np.ndarray, losses: dict[str, np.ndarray], folder: str) -> list[str]:
    """Forecast-versus-realized and loss-by-volatility-regime PNGs (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(folder, exist_ok=True)
    horizons, targets, fc = table["horizons"], table["targets"], table["forecasts"]
    ts = table["ts_ns"][ok].astype("datetime64[ns]")
    bar_ns = table["bar_ns"]
    shown = ("attention", "har", "ewma", "garch")
    fig, axes = plt.subplots(len(horizons), 1, figsize=(12, 2.6 * len(horizons)), sharex=True)
    for j, (h, ax) in enumerate(zip(horizons, np.atleast_1d(axes))):
        h_ns = table["h_bars"][j] * bar_ns

        def vol(v: np.ndarray, h_ns: int = h_ns) -> np.ndarray:
            return np.sqrt(v * (365 * DAY_NS) / h_ns)  # type: ignore[no-any-return]  # annualized, decimal
        ax.plot(ts, vol(targets[ok, j]), ".", ms=1.5, color="0.6", label="realized")
        for name in shown:
            ax.plot(ts, vol(fc[name][ok, j]), lw=0.8, label=name)
        ax.set_ylabel(f"{h} vol (ann.)")
        ax.set_yscale("log")
    np.atleast_1d(axes)[0].legend(loc="upper right", ncol=5, fontsize=8)
    fig.suptitle(f"{table['report'].source if table['report'] else ''}: forecast vs realized, test period")
    fig.tight_layout()
    p1 = os.path.join(folder, "forecast_vs_realized.png")
    fig.savefig(p1, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(horizons), figsize=(4 * len(horizons), 3.4))
    for j, (h, ax) in enumerate(zip(horizons, np.atleast_1d(axes))):
        rv = targets[ok, j]
        edges = np.quantile(rv, [0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0])
        bucket = np.clip(np.searchsorted(edges, rv, side="right") - 1, 0, len(edges) - 2)
        names = list(losses)
        width = 0.8 / len(names)
        for k, name in enumerate(names):
            means = [losses[name][bucket == b, j].mean() for b in range(len(edges) - 1)]
            ax.bar(np.arange(len(means)) + k * width, means, width, label=name)
        ax.set_xticks(np.arange(len(edges) - 1) + 0.4, ["0-20", "20-40", "40-60", "60-80", "80-90", "90-100"],
                      fontsize=7)
        ax.set_title(f"{h}: QLIKE by realized-vol percentile", fontsize=9)
        ax.set_yscale("log")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    p2 = os.path.join(folder, "qlike_by_regime.png")
    fig.savefig(p2, dpi=110)
    plt.close(fig)
    return [p1, p2]
