"""The one feature path: normalized events in, fixed-cadence feature rows out.

The same :class:`FeatureBuilder` runs in the live flow (Bytewax keyed state), in
offline dataset building, in evaluation and in tests (ARCHITECTURE.md principle 1).
It is pure, holds only plain Python and numpy state, and pickles.

Steps and time
--------------
Step ``k`` covers event times ``[k*cadence, (k+1)*cadence)`` and its row carries
``ts_ns = (k+1)*cadence``, the step end: a row stamped ``t`` uses only events before
``t``. An event's time is ``ts_exchange_ns``; an event without one (Binance spot
``bookTicker``) and a late event both take the builder's clock, which never goes
backwards. A step is emitted when the clock reaches its end, by an event or by
:meth:`FeatureBuilder.advance_to`.

Integrity (principle 3)
-----------------------
The book is usable while the connection is up and the instrument's latest
``FeedStatus`` is ``synced``. Before any instrument status arrives, a
``BookSnapshot`` counts as one (the connector emits snapshots only from validated
books); a ``BBO`` alone does not, so a feed whose book never synced yields no book
features. Leaving that state drops the book, so nothing stale is carried across a
resync. Book-state features need a usable book at the step end; flow
features (return, RV, OFI) need it for the whole step (``FeatureRow.synced``).
Absent features are NaN in ``values`` and False in ``present``; never filled in.

>>> from connectors.events import BBO, FeedStatus
>>> fb = FeatureBuilder("binance:BTCUSDT")
>>> ids = dict(venue="binance", symbol="BTCUSDT", ts_recv_ns=0)
>>> fb.on_event(FeedStatus(ts_exchange_ns=50, state="synced", scope="instrument", **ids))
[]
>>> fb.on_event(BBO(ts_exchange_ns=100, bid_price=99.0, bid_size=1.0, ask_price=101.0, ask_size=3.0, **ids))
[]
>>> [row] = fb.advance_to(1_000_000_000)
>>> row.get("mid"), row.get("spread_bps"), row.get("imbalance_l1")
(100.0, 200.0, -0.5)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import msgspec
import numpy as np

from connectors.events import BBO, BookSnapshot, Event, FeedStatus, Trade

# (name, one-line definition with its reference). The order is the column order of
# FeatureRow.values and is part of every checkpoint's feature spec.
FEATURES: tuple[tuple[str, str], ...] = (
    ("mid", "Mid (b1 + a1) / 2 at step end, quote currency; carried forward while the synced book is unchanged."),
    ("log_return", "ln(mid_end / mid_start) over the step; 0 when a synced book did not move."),
    ("spread_bps", "Relative spread (a1 - b1) / mid * 1e4 at step end."),
    ("imbalance_l1", "Queue imbalance (qb1 - qa1) / (qb1 + qa1) at step end (Gould & Bonart 2016)."),
    ("imbalance_l5", "Depth imbalance over the top book_depth levels, sum(qb) - sum(qa) over sum(qb) + sum(qa)."),
    (
        "microprice_bps",
        "Weighted mid (a1*qb1 + b1*qa1)/(qb1 + qa1) minus mid, bps of mid: the usual first approximation of "
        "Stoikov's (2018) micro-price, without his fitted g(I, S); equals spread_bps * imbalance_l1 / 2.",
    ),
    (
        "ofi",
        "Order-flow imbalance sum(e_n) over top-of-book changes, over mean L1 depth (qb1+qa1)/2 in the step "
        "(Cont, Kukanov & Stoikov 2014, J. Financial Econometrics 12(1)).",
    ),
    ("trade_volume", "Sum of trade sizes in the step, base units."),
    ("trade_count", "Number of trades in the step."),
    ("signed_volume", "Sum of size * (+1 buy aggressor, -1 sell, 0 unknown) in the step."),
    ("rv_step", "Sum of squared tick log-mid returns in the step, starting from the previous step's last mid."),
    (
        "book_updates",
        "Number of book events (BookSnapshot, BBO) used in the step; 0 marks a step without book data.",
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in FEATURES)
INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}
N_FEATURES = len(FEATURES)


class FeatureSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What a feature row means; checkpoints carry it and refuse a mismatch (principle 5)."""

    names: tuple[str, ...]
    descriptions: tuple[str, ...]
    cadence_ns: int
    book_depth: int
    version: int = 1

    def check_compatible(self, other: FeatureSpec) -> None:
        """Raise ``ValueError`` naming the first difference from ``other``.

        >>> FEATURE_SPEC.check_compatible(FEATURE_SPEC)
        """
        for field in ("version", "names", "cadence_ns", "book_depth"):
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine != theirs:
                raise ValueError(f"feature spec mismatch on {field}: {mine!r} here, {theirs!r} in the other spec")


def feature_spec(cadence_ns: int = 1_000_000_000, book_depth: int = 5) -> FeatureSpec:
    """The spec of rows built with this cadence and depth.

    >>> feature_spec(cadence_ns=500_000_000).cadence_ns
    500000000
    """
    return FeatureSpec(
        names=FEATURE_NAMES,
        descriptions=tuple(doc for _, doc in FEATURES),
        cadence_ns=cadence_ns,
        book_depth=book_depth,
    )


FEATURE_SPEC = feature_spec()


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureRow:
    """One finished step of one instrument: ``values[F]`` float32 (NaN where absent) and ``present[F]``."""

    instrument_id: str
    ts_ns: int  # step end
    values: np.ndarray  # float32[N_FEATURES]
    present: np.ndarray  # bool[N_FEATURES]
    synced: bool  # a usable book was held for the whole step, so flow features exist

    def get(self, name: str) -> float | None:
        """The named feature, or None where absent.

        >>> row = FeatureRow.from_dict("x:Y", 10, {"trade_count": 3.0})
        >>> row.get("trade_count"), row.get("mid")
        (3.0, None)
        """
        i = INDEX[name]
        return float(self.values[i]) if self.present[i] else None

    @classmethod
    def from_dict(cls, instrument_id: str, ts_ns: int, features: dict[str, float], synced: bool = True) -> FeatureRow:
        """Row from named values; names not given are absent."""
        values = np.full(N_FEATURES, np.nan, dtype=np.float32)
        present = np.zeros(N_FEATURES, dtype=bool)
        for name, value in features.items():
            values[INDEX[name]] = value
            present[INDEX[name]] = True
        return cls(instrument_id, ts_ns, readonly(values), readonly(present), synced)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureRow):
            return NotImplemented
        return (
            self.instrument_id == other.instrument_id
            and self.ts_ns == other.ts_ns
            and self.synced == other.synced
            and np.array_equal(self.present, other.present)
            and np.array_equal(self.values, other.values, equal_nan=True)
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={float(v):.6g}" for n, v, p in zip(FEATURE_NAMES, self.values, self.present) if p)
        return f"FeatureRow({self.instrument_id!r}, ts_ns={self.ts_ns}, synced={self.synced}, {shown})"


def readonly(a: np.ndarray) -> np.ndarray:
    """``a`` itself, made read-only: rows share their arrays, so nobody may write into them."""
    a.setflags(write=False)
    return a


# Connection states in which the instrument's data can be trusted.
_CONNECTION_UP = frozenset({"connected", "synced"})


class FeatureBuilder:
    """Turns one instrument's normalized events into fixed-cadence ``FeatureRow`` s.

    Parameters
    ----------
    instrument_id : str
        ``venue:SYMBOL``, the Bytewax key; events of other instruments are refused.
        Connection-scope ``FeedStatus`` (symbol ``*``) of the same venue is accepted:
        the flow fans it out to every instrument of that venue.
    cadence_ns : int
        Step length.
    book_depth : int
        Levels per side in ``imbalance_l5``; needs snapshots with at least this depth.
    max_gap_steps : int
        A clock jump longer than this many steps (a bad timestamp, a recording gap)
        does not emit the empty steps one by one: the open step is emitted and the
        next row starts after the gap, with flow features absent.

    >>> FeatureBuilder("deribit:BTC-PERPETUAL").spec.cadence_ns
    1000000000
    """

    def __init__(
        self,
        instrument_id: str,
        cadence_ns: int = 1_000_000_000,
        book_depth: int = 5,
        max_gap_steps: int = 86_400,
    ) -> None:
        if ":" not in instrument_id:
            raise ValueError(f"instrument_id must be 'venue:SYMBOL', got {instrument_id!r}")
        if cadence_ns <= 0:
            raise ValueError(f"cadence_ns must be positive, got {cadence_ns}")
        if book_depth < 1:
            raise ValueError(f"book_depth must be at least 1, got {book_depth}")
        if max_gap_steps < 1:
            raise ValueError(f"max_gap_steps must be at least 1, got {max_gap_steps}")
        self.instrument_id = instrument_id
        self.venue = instrument_id.split(":", 1)[0]
        self.cadence_ns = cadence_ns
        self.book_depth = book_depth
        self.max_gap_steps = max_gap_steps
        self.spec = feature_spec(cadence_ns, book_depth)

        self._clock: int | None = None
        self._step_end: int | None = None  # end of the open step; None before the first clock
        # Integrity state.
        self._instrument_state: str | None = None  # latest instrument-scope FeedStatus, if any
        self._connection_up = True  # events arriving imply a connection until told otherwise
        self._trades_seen = False  # zero trades is a value only once the trade stream is known
        # Book state: top of book as (bid, bid_size, ask, ask_size), depth sums for L5.
        self._top: tuple[float, float, float, float] | None = None
        self._top_seq: int | None = None
        self._depth_sums: tuple[float, float] | None = None
        # Per-step accumulators, reset by _open_step.
        self._mid_start: float | None = None
        self._book_broken = True
        self._trades_broken = True
        self._sum_sq = 0.0
        self._ofi = 0.0
        self._depth_total = 0.0
        self._depth_n = 0
        self._volume = 0.0
        self._count = 0
        self._signed = 0.0
        self._book_updates = 0

    # ---------------------------------------------------------------- public API

    def on_event(self, ev: Event) -> list[FeatureRow]:
        """Consume one event; return the steps it finished (often none).

        Events of kinds that carry no features here (``BookDelta``, tickers,
        mempool) only move the clock.
        """
        if ev.instrument_id != self.instrument_id and not (
            isinstance(ev, FeedStatus) and ev.scope == "connection" and ev.venue == self.venue
        ):
            raise ValueError(f"event for {ev.instrument_id!r} sent to the builder of {self.instrument_id!r}")
        rows = self._advance(ev.ts_exchange_ns)
        if isinstance(ev, FeedStatus):
            self._on_status(ev)
        elif not self._connection_up:
            return rows  # data during an announced outage is not trusted
        elif isinstance(ev, Trade):
            self._on_trade(ev)
        elif isinstance(ev, BookSnapshot):
            self._on_snapshot(ev)
        elif isinstance(ev, BBO):
            self._on_bbo(ev)
        return rows

    def on_events(self, events: Iterable[Event]) -> list[FeatureRow]:
        """Consume events in order; the rows equal those of one ``on_event`` call each."""
        rows: list[FeatureRow] = []
        for ev in events:
            rows.extend(self.on_event(ev))
        return rows

    def advance_to(self, ts_ns: int) -> list[FeatureRow]:
        """Move the clock to ``ts_ns`` without an event; return the finished steps.

        Call it with event time (for example receive time minus the allowed
        lateness), since events stamped before the clock land in the open step.
        """
        return self._advance(ts_ns)

    @property
    def clock_ns(self) -> int | None:
        """Latest event time seen (never decreases); None before the first."""
        return self._clock

    # ---------------------------------------------------------------- clock and steps

    def _advance(self, ts_ns: int | None) -> list[FeatureRow]:
        if ts_ns is None or (self._clock is not None and ts_ns <= self._clock):
            return []
        self._clock = ts_ns
        end = (ts_ns // self.cadence_ns + 1) * self.cadence_ns
        if self._step_end is None:
            self._step_end = end
            self._open_step()
            return []
        rows: list[FeatureRow] = []
        if (end - self._step_end) // self.cadence_ns > self.max_gap_steps:
            rows.append(self._close_step())
            self._step_end = end
            self._open_step()
            self._mid_start = None  # a return across the gap is not a one-step return
            return rows
        while self._step_end < end:
            rows.append(self._close_step())
            self._step_end += self.cadence_ns
            self._open_step()
        return rows

    def _book_usable(self) -> bool:
        return self._connection_up and self._instrument_state == "synced"

    def _open_step(self) -> None:
        usable = self._book_usable()
        self._mid_start = _mid(self._top) if usable and self._top else None
        self._book_broken = not usable
        self._trades_broken = not self._connection_up
        self._sum_sq = 0.0
        self._ofi = 0.0
        # The state at the step start counts in the mean depth, so a quiet step
        # still normalizes its (zero) OFI by the depth that was there.
        self._depth_total = _l1_depth(self._top) if self._top else 0.0
        self._depth_n = 1 if self._top else 0
        self._volume = 0.0
        self._count = 0
        self._signed = 0.0
        self._book_updates = 0

    def _close_step(self) -> FeatureRow:
        assert self._step_end is not None
        values = np.full(N_FEATURES, np.nan, dtype=np.float64)
        top = self._top if self._book_usable() else None
        if top is not None:
            bid, bid_size, ask, ask_size = top
            mid = _mid(top)
            imbalance = (bid_size - ask_size) / (bid_size + ask_size)
            values[INDEX["mid"]] = mid
            values[INDEX["spread_bps"]] = (ask - bid) / mid * 1e4
            values[INDEX["imbalance_l1"]] = imbalance
            values[INDEX["microprice_bps"]] = (
                ((ask * bid_size + bid * ask_size) / (bid_size + ask_size) - mid) / mid * 1e4
            )
            if self._depth_sums is not None:
                bids, asks = self._depth_sums
                values[INDEX["imbalance_l5"]] = (bids - asks) / (bids + asks)
            if not self._book_broken and self._mid_start is not None:
                values[INDEX["log_return"]] = math.log(mid / self._mid_start)
                values[INDEX["rv_step"]] = self._sum_sq
                if self._depth_total > 0.0:
                    values[INDEX["ofi"]] = self._ofi / (self._depth_total / self._depth_n)
        if not self._trades_broken and self._trades_seen:
            values[INDEX["trade_volume"]] = self._volume
            values[INDEX["trade_count"]] = self._count
            values[INDEX["signed_volume"]] = self._signed
        values[INDEX["book_updates"]] = self._book_updates
        present = ~np.isnan(values)
        return FeatureRow(
            self.instrument_id,
            self._step_end,
            readonly(values.astype(np.float32)),
            readonly(present),
            not self._book_broken and self._mid_start is not None,
        )

    # ---------------------------------------------------------------- event handlers

    def _on_status(self, ev: FeedStatus) -> None:
        was_usable = self._book_usable()
        if ev.scope == "connection":
            self._connection_up = ev.state in _CONNECTION_UP
            if not self._connection_up:
                self._trades_broken = True
        else:
            self._instrument_state = ev.state
        if was_usable and not self._book_usable():
            # Drop the book: after a resync only a fresh snapshot may feed features.
            self._book_broken = True
            self._top = None
            self._top_seq = None
            self._depth_sums = None
            self._mid_start = None

    def _on_trade(self, ev: Trade) -> None:
        self._trades_seen = True
        self._volume += ev.size
        self._count += 1
        self._signed += ev.size * (1.0 if ev.side == "buy" else -1.0 if ev.side == "sell" else 0.0)

    def _on_snapshot(self, ev: BookSnapshot) -> None:
        if self._instrument_state is None:
            self._instrument_state = "synced"  # a validated snapshot vouches for the book
        if not (self._book_usable() and ev.bids and ev.asks):
            return  # a one-sided book has no mid; the connector reports why
        (bid, bid_size), (ask, ask_size) = ev.bids[0], ev.asks[0]
        self._set_top(bid, bid_size, ask, ask_size, ev.seq)
        if ev.depth is None or ev.depth >= self.book_depth:
            bids = sum(size for _, size in ev.bids[: self.book_depth])
            asks = sum(size for _, size in ev.asks[: self.book_depth])
            self._depth_sums = (bids, asks) if bids + asks > 0.0 else None
        else:
            self._depth_sums = None  # a shallower view cannot give the L5 imbalance

    def _on_bbo(self, ev: BBO) -> None:
        if self._book_usable():
            self._set_top(ev.bid_price, ev.bid_size, ev.ask_price, ev.ask_size, ev.seq)

    def _set_top(self, bid: float, bid_size: float, ask: float, ask_size: float, seq: int | None) -> None:
        if not (0.0 < bid < ask and bid_size > 0.0 and ask_size > 0.0):
            return  # crossed or empty top: the connector flags it; never a feature
        if seq is not None and self._top_seq is not None and seq < self._top_seq:
            return  # older than the top we hold (bookTicker u vs depth u)
        new = (bid, bid_size, ask, ask_size)
        old = self._top
        if old is not None and self._step_end is not None:
            self._ofi += _ofi_event(old, new)
            self._sum_sq += math.log(_mid(new) / _mid(old)) ** 2
        self._top = new
        if seq is not None:
            self._top_seq = seq
        if self._step_end is not None:
            self._depth_total += _l1_depth(new)
            self._depth_n += 1
            self._book_updates += 1


def _mid(top: tuple[float, float, float, float]) -> float:
    return 0.5 * (top[0] + top[2])


def _l1_depth(top: tuple[float, float, float, float]) -> float:
    return 0.5 * (top[1] + top[3])


def _ofi_event(old: tuple[float, float, float, float], new: tuple[float, float, float, float]) -> float:
    """Cont, Kukanov & Stoikov (2014) e_n = 1{Pb>=Pb'}qb - 1{Pb<=Pb'}qb' - 1{Pa<=Pa'}qa + 1{Pa>=Pa'}qa'.

    Primes mark the previous top of book.

    >>> _ofi_event((100.0, 1.0, 101.0, 1.0), (100.0, 3.0, 101.0, 1.0))  # bid queue grows
    2.0
    """
    bid0, bid_size0, ask0, ask_size0 = old
    bid, bid_size, ask, ask_size = new
    e = 0.0
    if bid >= bid0:
        e += bid_size
    if bid <= bid0:
        e -= bid_size0
    if ask <= ask0:
        e -= ask_size
    if ask >= ask0:
        e += ask_size0
    return e
