"""Per-symbol state of the Deribit core: counters, and the book's change_id chain.

:meth:`Symbol.on_book` is Deribit's book algorithm (research/protocols.md §1.2) as a
pure step: a snapshot replaces the book (never merged into it, so no ghost levels
survive a resubscription); a change applies only if its ``prev_change_id`` is the
book's ``change_id``; anything else is a gap, and a crossed book after a change is
no better. Both answer "resync": the caller unsubscribes and subscribes that one
channel again. No I/O, no clock.

>>> from connectors.venues.deribit.parse import BOOK_DATA
>>> s = Symbol("BTC-PERPETUAL", "perpetual", "quote")
>>> events, resync = s.on_book(BOOK_DATA.decode(b'{"type":"snapshot","timestamp":1,'
...     b'"instrument_name":"BTC-PERPETUAL","change_id":10,"bids":[["new",99.5,10.0]],'
...     b'"asks":[["new",100.0,20.0]]}'), 7)
>>> [type(e).__name__ for e in events], resync
(['FeedStatus', 'BookSnapshot'], False)
>>> events, resync = s.on_book(BOOK_DATA.decode(b'{"type":"change","timestamp":2,'
...     b'"instrument_name":"BTC-PERPETUAL","change_id":12,"prev_change_id":11,'
...     b'"bids":[],"asks":[]}'), 8)
>>> [(e.state, e.expected_seq, e.got_seq) for e in events], resync
([('gap', 10, 11)], True)
"""

from __future__ import annotations

from typing import Literal

from connectors.book.l2 import L2Book, PyL2Book
from connectors.events import (
    BookDelta,
    BookSnapshot,
    Event,
    FeedState,
    FeedStatus,
    SizeUnit,
)
from connectors.venues.base import InstrumentStats
from connectors.venues.deribit import parse
from connectors.venues.deribit.parse import MS, VENUE
from connectors.venues.deribit.schemas import BookData

Scope = Literal["connection", "instrument"]


def status(symbol: str, ts: int, state: FeedState, scope: Scope = "instrument", reason: str = "",
           expected_seq: int | None = None, got_seq: int | None = None) -> FeedStatus:
    """A Deribit :class:`FeedStatus` (``symbol`` ``"*"`` for the connection)."""
    return FeedStatus(venue=VENUE, symbol=symbol, ts_exchange_ns=None, ts_recv_ns=ts, state=state,
                      scope=scope, reason=reason, expected_seq=expected_seq, got_seq=got_seq)


class Symbol:
    """One routed symbol: an instrument, or an index/channel pseudo-symbol (DVOL, ...).

    Parameters
    ----------
    symbol
        The event symbol (instrument name, ``btc_usd.dvol``, a channel).
    kind
        ``option``, ``future``, ``perpetual``; ``index``/``channel`` for pseudo-symbols.
    size_unit
        What the instrument's book and trade amounts count.
    """

    __slots__ = (
        "book", "channels", "crossed", "events", "gaps", "kind", "last", "last_ts", "malformed",
        "messages", "resyncs", "size_unit", "skipped", "state", "symbol", "synced", "syncs",
    )

    def __init__(self, symbol: str, kind: str, size_unit: SizeUnit) -> None:
        self.symbol = symbol
        self.kind = kind
        self.size_unit: SizeUnit = size_unit
        self.book: PyL2Book | None = None  # created by the first book message
        self.synced = False
        self.state = "disconnected"  # the book's FeedState, or subscribed/missing/expired
        self.last = 0  # change_id the book is at (valid when synced)
        self.last_ts = 0  # exchange ms of the book's last message
        self.channels: set[str] = set()  # routed channels of this symbol
        self.messages = self.syncs = self.gaps = self.resyncs = self.crossed = 0
        self.malformed = self.skipped = 0
        self.events: dict[str, int] = {}

    @property
    def pseudo(self) -> bool:
        """An index or a whole channel, not an instrument."""
        return self.kind in ("index", "channel")

    def count(self, kind: str, n: int = 1) -> None:
        """Count ``n`` events of ``kind`` emitted for this symbol."""
        self.events[kind] = self.events.get(kind, 0) + n

    def status(self, ts: int, state: FeedState, reason: str = "", expected_seq: int | None = None,
               got_seq: int | None = None) -> FeedStatus:
        """An instrument-scope :class:`FeedStatus` of this symbol, counted."""
        self.count("feed_status")
        return status(self.symbol, ts, state, "instrument", reason, expected_seq, got_seq)

    def drop_book(self, state: str) -> None:
        """Out of sync (``resyncing``, ``disconnected``, ``expired``): forget every level."""
        self.synced = False
        self.state = state
        if self.book is not None:
            self.book.clear()

    def on_book(self, msg: BookData, ts: int, emit_deltas: bool = True,
                view_depth: int | None = None) -> tuple[list[Event], bool]:
        """One ``book`` message -> ``(events, resync)``; ``resync``: the caller must
        unsubscribe and subscribe this channel again (a gap or a crossed book)."""
        self.messages += 1
        book = self.book
        if book is None:
            book = self.book = L2Book(max(64, 6 * (view_depth or 0)))
        if msg.type == "snapshot":
            return self._snapshot(msg, book, ts, view_depth)
        if not self.synced:
            self.skipped += 1  # a change before the (re)subscription's snapshot
            return [], False
        if msg.prev_change_id != self.last:
            self.gaps += 1
            got, expected = msg.prev_change_id, self.last
            return [self.status(ts, "gap", f"prev_change_id {got} does not follow the book's "
                                f"change_id {expected}", expected, got)], True
        bids, asks = parse.levels(msg.bids), parse.levels(msg.asks)
        book.apply(bids, asks)
        self.last, self.last_ts = msg.change_id, msg.timestamp
        if book.crossed():
            return self._crossed(ts), True
        out: list[Event] = []
        if emit_deltas:
            self.count("book_delta")
            out.append(BookDelta(venue=VENUE, symbol=self.symbol, ts_exchange_ns=msg.timestamp * MS,
                                 ts_recv_ns=ts, bids=bids, asks=asks, seq=msg.change_id,
                                 prev_seq=msg.prev_change_id, size_unit=self.size_unit))
        if view_depth:
            out.append(self.view(ts, view_depth))
        return out, False

    def _snapshot(self, msg: BookData, book: PyL2Book, ts: int,
                  view_depth: int | None) -> tuple[list[Event], bool]:
        book.replace(parse.levels(msg.bids), parse.levels(msg.asks))
        self.last, self.last_ts = msg.change_id, msg.timestamp
        out: list[Event] = []
        if not self.synced:
            self.synced = True
            self.syncs += 1
            out.append(self.status(ts, "synced", f"snapshot change_id={msg.change_id}",
                                   got_seq=msg.change_id))
        self.state = "synced"
        if book.crossed():
            return out + self._crossed(ts), True
        bids, asks = book.levels()
        self.count("book_snapshot")
        out.append(BookSnapshot(venue=VENUE, symbol=self.symbol, ts_exchange_ns=msg.timestamp * MS,
                                ts_recv_ns=ts, bids=bids, asks=asks, depth=None, seq=msg.change_id,
                                size_unit=self.size_unit))
        if view_depth:
            out.append(self.view(ts, view_depth))
        return out, False

    def _crossed(self, ts: int) -> list[Event]:
        assert self.book is not None
        self.crossed += 1
        bid, ask = self.book.best_bid(), self.book.best_ask()
        return [self.status(ts, "crossed", f"bid {bid} >= ask {ask} at change_id {self.last}",
                            got_seq=self.last)]

    def view(self, ts: int, depth: int) -> BookSnapshot:
        """The validated book's top ``depth`` levels."""
        assert self.book is not None
        self.count("book_snapshot")
        bids, asks = self.book.top(depth)
        return BookSnapshot(venue=VENUE, symbol=self.symbol, ts_exchange_ns=self.last_ts * MS,
                            ts_recv_ns=ts, bids=bids, asks=asks, depth=depth, seq=self.last,
                            size_unit=self.size_unit)

    def stats(self) -> InstrumentStats:
        """This symbol's counters, with its book's best bid/ask while in sync."""
        book = self.book if self.synced else None
        bb = book.best_bid() if book is not None else None
        ba = book.best_ask() if book is not None else None
        return InstrumentStats(
            symbol=self.symbol, state=self.state, messages=self.messages, events=dict(self.events),
            syncs=self.syncs, gaps=self.gaps, resyncs=self.resyncs, crossed=self.crossed,
            malformed=self.malformed, skipped=self.skipped,
            seq=self.last if self.synced else None,
            best_bid=bb[0] if bb else None, best_ask=ba[0] if ba else None,
            levels=len(book) if book is not None else 0,
        )
