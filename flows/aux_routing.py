"""Which events feed an underlying's option chain or mempool features rather than a book.

Book events (snapshots, deltas, BBO, trades, their feed statuses) are keyed by
instrument and go through :class:`model.features.FeatureBuilder`. Everything an
underlying's surface or mempool features need goes to that underlying instead:

* Deribit option tickers, option listings and expiries, instrument statuses of
  options -> the chain of the currency's underlying;
* Deribit index values (``btc_usd``, ``btc_usd.dvol``) -> the same underlying;
* Ethereum and Bitcoin mempool events and statuses -> the underlying the chain joins.

>>> from flows.config import load_config_text
>>> cfg = load_config_text('[[feeds]]\\nsymbols = ["BTCUSDT"]\\n[[feeds]]\\nvenue = "deribit"\\n')
>>> route = AuxRouter(cfg)
>>> from connectors.events import IndexValue
>>> route(IndexValue(venue="deribit", symbol="btc_usd.dvol", ts_exchange_ns=1, ts_recv_ns=1,
...                  name="btc_usd.dvol", value=0.6, value_unit="vol_decimal"))
'BTC'
"""

from __future__ import annotations

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
from connectors.venues.deribit.parse import parse_name
from flows.config import AppConfig

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
