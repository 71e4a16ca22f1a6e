"""An underlying's inputs besides its books: which events they are, and the state they feed.

Book events (snapshots, deltas, BBO, trades, their feed statuses) are keyed by
instrument and go through :class:`model.features.FeatureBuilder`. Everything an
underlying's surface or mempool features need goes to that underlying instead:

* Deribit option tickers, option listings and expiries, instrument statuses of
  options -> the chain of the currency's underlying;
* Deribit index values (``btc_usd``, ``btc_usd.dvol``) -> the same underlying;
* Ethereum and Bitcoin mempool events and statuses -> the underlying the chain joins.

:class:`AuxState` is that underlying's keyed state: the option chain
(:class:`connectors.options.ChainState`) and its live surface
(:class:`model.surface.live.LiveSurface`), nowcast once per cadence step of the
chain's own clock and handed on as a :class:`SurfaceUpdate`; and the mempool
features of each chain joined to it (:class:`model.mempool.MempoolFeatures`), a
:class:`MempoolUpdate` per step of the feed's receive clock.

>>> from flows.config import load_config_text
>>> cfg = load_config_text('[[feeds]]\\nsymbols = ["BTCUSDT"]\\n[[feeds]]\\nvenue = "deribit"\\n')
>>> route = AuxRouter(cfg)
>>> from connectors.events import IndexValue
>>> route(IndexValue(venue="deribit", symbol="btc_usd.dvol", ts_exchange_ns=1, ts_recv_ns=1,
...                  name="btc_usd.dvol", value=0.6, value_unit="vol_decimal"))
'BTC'
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from connectors.events import (
    ChainHead,
    Event,
    FeedStatus,
    IndexValue,
    Instrument,
    MempoolStats,
    MempoolTx,
    OptionTicker,
)
from connectors.options import ChainState
from connectors.venues.deribit.parse import parse_name
from flows import metrics
from flows.config import AppConfig
from model.mempool import MempoolFeatures, MempoolRow
from model.surface.live import LiveSurface

_MEMPOOL_VENUES = ("ethereum", "bitcoin")


class AuxRouter:
    """``router(event)``: the underlying an event feeds outside the books, or None for a book event."""

    def __init__(self, cfg: AppConfig) -> None:
        self._options = cfg.option_underlyings()  # currency -> underlying
        self._mempool = cfg.mempool_underlying()  # chain -> underlying

    def __call__(self, ev: Event) -> str | None:
        if isinstance(ev, (MempoolTx, MempoolStats, ChainHead)):
            return self._mempool.get(ev.chain)
        if ev.venue in _MEMPOOL_VENUES:
            return self._mempool.get(ev.venue)
        if ev.venue != "deribit":
            return None
        if isinstance(ev, OptionTicker):
            return self._options.get(ev.symbol.split("-", 1)[0])
        if isinstance(ev, IndexValue):
            return self._options.get(ev.name.split("_", 1)[0].upper())
        if isinstance(ev, Instrument):
            return self._options.get(ev.base) if ev.instrument_kind == "option" else None
        if isinstance(ev, FeedStatus) and ev.scope == "instrument":
            name = parse_name(ev.symbol)
            if name is not None and name.kind == "option":
                return self._options.get(ev.symbol.split("-", 1)[0])
        return None


class SurfaceUpdate(NamedTuple):
    """The surface nowcast of ``underlying`` at step end ``ts_ns`` (chain time)."""

    underlying: str
    ts_ns: int
    block: dict[str, Any]
    features: dict[str, float | None]
    refit: bool  # the block is a new fit (not the previous one carried over)


class MempoolUpdate(NamedTuple):
    """A step's mempool features of one chain, for ``underlying``'s records."""

    underlying: str
    row: MempoolRow


class AuxState:
    """Keyed state of one underlying's option chain; picklable."""

    def __init__(self, underlying: str, cfg: AppConfig) -> None:
        self.underlying = underlying
        self.cadence_ns = cfg.cadence_ns
        self.has_chain = underlying in cfg.option_underlyings().values()
        self.chain = ChainState(stale_after_ns=int(cfg.surface_stale_s * 1e9))
        self.surface = LiveSurface(refit_every_ns=int(cfg.surface_refit_s * 1e9))
        self._step_end: int | None = None  # end of the open step on the chain's clock
        self.mempool = {
            chain: MempoolFeatures(chain, cfg.cadence_ns, stale_after_ns=int(cfg.mempool_stale_s * 1e9))
            for chain, und in cfg.mempool_underlying().items() if und == underlying
        }

    def on_event(self, ev: Event) -> list[SurfaceUpdate | MempoolUpdate]:
        """Consume one event; the surface nowcast or mempool row of each step it closes."""
        features = self.mempool.get(ev.venue)
        if features is not None:
            return [MempoolUpdate(self.underlying, row) for row in features.on_event(ev)]
        if not self.has_chain or ev.venue != "deribit":
            return []
        ts = ev.ts_exchange_ns if ev.ts_exchange_ns is not None else ev.ts_recv_ns
        out: list[SurfaceUpdate | MempoolUpdate] = []
        if self._step_end is None:
            self._step_end = (ts // self.cadence_ns + 1) * self.cadence_ns
        elif ts >= self._step_end:
            out.append(self._nowcast(self._step_end))
            self._step_end = (ts // self.cadence_ns + 1) * self.cadence_ns
        self.chain.on_event(ev)
        return out

    def _nowcast(self, at_ns: int) -> SurfaceUpdate:
        refits = self.surface.refits
        t0 = time.perf_counter()
        block = self.surface.nowcast(self.chain.quotes(at_ns), at_ns)
        refit = self.surface.refits != refits
        if refit:
            metrics.SURFACE_FIT_DURATION.labels(self.underlying).observe(time.perf_counter() - t0)
        dvol = self.chain.dvol if self.chain.dvol_ts_ns is not None and \
            at_ns - self.chain.dvol_ts_ns <= self.chain.stale_after_ns else None
        return SurfaceUpdate(self.underlying, at_ns, block, LiveSurface.features(block, dvol), refit)
