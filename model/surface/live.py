"""The live surface nowcast: warm-started refits of a streaming chain, throttled, as a record block.

:class:`LiveSurface` is handed the chain's usable quotes (from
:class:`connectors.options.ChainState`) at each cadence step. It refits at most
every ``refit_every_ns`` and only when a quote changed, warm-started from the
previous fit (:class:`~model.surface.fit.SurfaceFitter`), and keeps the latest
result as a JSON-safe block for the forecast records:

``status``
    ``ok``; ``empty: no quotes``; ``empty: no expiry has a quote with a bid`` (a
    one-sided chain): a clear result, never a crash.
``ts_ns``, ``n_quotes``, ``rmse_vol_pts``, ``inside_bid_ask``, ``arbitrage``, ``fit_ms``
    What was fitted when, and how well (the :mod:`model.surface.report` measures).
``tenors_days``, ``deltas``, ``iv``
    The tenor x delta grid (:mod:`model.surface.grid`: forward Black-76 deltas,
    ATM = forward, tenors only where the chain reaches).
``atm``, ``rr25``, ``bf25``, ``rr10``, ``bf10``
    By tenor label (``"30d"``).

and the feature inputs the model can use: ``dvol`` (Deribit's volatility index,
decimal), ``atm_30d``, ``rr25_30d``, ``bf25_30d`` (None where the chain does not
reach 30 days: never extrapolated).

>>> live = LiveSurface(refit_every_ns=5 * 10**9)
>>> live.nowcast([], now_ns=10**9)["status"]
'empty: no quotes'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.events import OptionQuote
from model.surface.config import FitConfig
from model.surface.fit import SurfaceFit, SurfaceFitter
from model.surface.report import report_fit

FEATURE_TENOR = "30d"
_BLOCK_KEYS = ("status", "rmse_vol_pts", "inside_bid_ask", "fit_ms", "atm", "rr25", "bf25", "rr10", "bf10")


class LiveSurface:
    """One underlying's streaming surface; picklable (the fitter keeps numpy state only).

    Parameters
    ----------
    refit_every_ns : int
        Least time between refits; in between, the previous block is the nowcast.
    cfg : FitConfig, optional
        Fit settings (the compiled engine by default; its kernels load from numba's disk cache).
    """

    def __init__(self, refit_every_ns: int = 5_000_000_000, cfg: FitConfig | None = None) -> None:
        if refit_every_ns <= 0:
            raise ValueError(f"refit_every_ns must be positive, got {refit_every_ns}")
        self.refit_every_ns = refit_every_ns
        self.fitter = SurfaceFitter(cfg)
        self.block: dict[str, Any] | None = None
        self.fit: SurfaceFit | None = None
        self._last_fit_ns: int | None = None
        self._last_input: tuple[int, int] | None = None  # (quotes, newest quote time)
        self.refits = 0

    def nowcast(self, quotes: Sequence[OptionQuote], now_ns: int) -> dict[str, Any]:
        """The block as of ``now_ns``: refitted when due and the quotes changed, else the previous one."""
        key = (len(quotes), max((q.ts_ns for q in quotes), default=0))
        due = self._last_fit_ns is None or now_ns - self._last_fit_ns >= self.refit_every_ns
        if self.block is None or (due and key != self._last_input):
            self.fit = self.fitter.update(quotes, now_ns)
            self.block = self._block(self.fit, len(quotes))
            self._last_fit_ns, self._last_input = now_ns, key
            self.refits += 1
        return self.block

    @staticmethod
    def _block(fit: SurfaceFit, n_input: int) -> dict[str, Any]:
        rep = report_fit(fit, n_input=n_input)
        block = {key: rep[key] for key in _BLOCK_KEYS}
        block.update(
            ts_ns=fit.now_ns,
            n_quotes=rep["n_fitted_quotes"],
            n_input_quotes=n_input,
            arbitrage={"butterfly": rep["arbitrage"]["butterfly"], "calendar": rep["arbitrage"]["calendar"]},
            tenors_days=rep["grid"]["tenors_days"],
            deltas=rep["grid"]["deltas"],
            iv=rep["grid"]["iv"],
        )
        return block

    @staticmethod
    def features(block: dict[str, Any] | None, dvol: float | None) -> dict[str, float | None]:
        """The model's surface inputs: DVOL, and ATM, RR25, BF25 at 30 days where the chain reaches."""
        def at(key: str) -> float | None:
            return None if block is None else block[key].get(FEATURE_TENOR)

        return {"dvol": dvol, "atm_30d": at("atm"), "rr25_30d": at("rr25"), "bf25_30d": at("bf25")}
