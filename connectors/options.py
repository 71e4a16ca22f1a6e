"""The live option chain of one underlying: the latest quote per option, fresh and unexpired.

Fed, in time order, the option tickers, listings (``Instrument``) and instrument
statuses of one currency; :meth:`ChainState.quotes` hands the surface fitter the
quotes it may use at a given time. The clock is the exchange's (a ticker's
``ts_exchange_ns``), so a replayed chain ages and expires as it did when it was
recorded. A quote older than ``stale_after_ns`` is left out (a silent
instrument is not quoting); an option is dropped at its expiry, or when its
listing says it is no longer active.

>>> from connectors.events import OptionTicker
>>> t = OptionTicker(venue="deribit", symbol="BTC-24SEP21-8000-P", ts_exchange_ns=5 * 10**9, ts_recv_ns=0,
...     underlying_price=32366.75, underlying_index="BTC-24SEP21", index_price=32201.67,
...     mark_price=0.0009, mark_iv=1.4278, bid_iv=1.33, ask_iv=1.5271, best_bid_price=0.0005,
...     best_bid_size=153.1, best_ask_price=0.0015, best_ask_size=94.7)
>>> chain = ChainState(stale_after_ns=60 * 10**9)
>>> chain.on_event(t)
>>> len(chain.quotes(30 * 10**9)), len(chain.quotes(70 * 10**9)), chain.stats()["stale"]
(1, 0, 1)
"""

from __future__ import annotations

from connectors.chains import option_quote
from connectors.events import Event, FeedStatus, IndexValue, Instrument, OptionQuote, OptionTicker

SECOND_NS = 1_000_000_000


class ChainState:
    """Latest quote per option of one underlying, with staleness and expiry roll-off; picklable.

    Parameters
    ----------
    stale_after_ns : int
        A quote older than this (exchange time) is not used.
    """

    def __init__(self, stale_after_ns: int = 60 * SECOND_NS) -> None:
        if stale_after_ns <= 0:
            raise ValueError(f"stale_after_ns must be positive, got {stale_after_ns}")
        self.stale_after_ns = stale_after_ns
        self._quotes: dict[str, OptionQuote] = {}
        self._listed: dict[str, Instrument] = {}
        self._halted: set[str] = set()  # instrument statuses that say the option is not trading
        self.clock_ns: int | None = None  # the latest exchange time seen
        self.dvol: float | None = None  # the volatility index (decimal) and its time
        self.dvol_ts_ns: int | None = None
        self.index_price: float | None = None
        self.expired = 0  # options rolled off since start
        self._stale = 0

    def on_event(self, ev: Event) -> None:
        """Consume one event of this underlying's chain (others are ignored)."""
        ts = ev.ts_exchange_ns if ev.ts_exchange_ns is not None else ev.ts_recv_ns
        if isinstance(ev, OptionTicker):
            self._tick(ts)
            quote = option_quote(ev, self._listed.get(ev.symbol))
            if quote is not None and (self.clock_ns is None or quote.expiry_ns > self.clock_ns):
                self._quotes[ev.symbol] = quote
        elif isinstance(ev, Instrument):
            if ev.is_active:
                self._listed[ev.symbol] = ev
            else:
                self._drop(ev.symbol)
        elif isinstance(ev, IndexValue):
            self._tick(ts)
            if ev.value_unit == "vol_decimal":
                self.dvol, self.dvol_ts_ns = ev.value, ts
            else:
                self.index_price = ev.value
        elif isinstance(ev, FeedStatus) and ev.scope == "instrument":
            if ev.state in ("synced", "connected"):
                self._halted.discard(ev.symbol)
            elif ev.state in ("error", "disconnected", "stale"):
                self._halted.add(ev.symbol)

    def _tick(self, ts: int) -> None:
        if self.clock_ns is None or ts > self.clock_ns:
            self.clock_ns = ts
            for sym in [s for s, q in self._quotes.items() if q.expiry_ns <= ts]:
                self._drop(sym)
                self.expired += 1

    def _drop(self, symbol: str) -> None:
        self._quotes.pop(symbol, None)
        self._listed.pop(symbol, None)
        self._halted.discard(symbol)

    def quotes(self, now_ns: int) -> list[OptionQuote]:
        """The quotes usable at ``now_ns``: unexpired, not halted, and no older than ``stale_after_ns``."""
        fresh = []
        self._stale = 0
        for sym, q in self._quotes.items():
            if q.expiry_ns <= now_ns or sym in self._halted:
                continue
            if now_ns - q.ts_ns > self.stale_after_ns:
                self._stale += 1
                continue
            fresh.append(q)
        return fresh

    def stats(self) -> dict[str, int]:
        """Options held, stale at the last :meth:`quotes` call, and rolled off since start."""
        return {"options": len(self._quotes), "stale": self._stale, "expired": self.expired}
