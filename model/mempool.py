"""Mempool features at the model cadence: one row per step of one chain's pending-transaction activity.

:class:`MempoolFeatures` is fed, in receive-time order, the normalized events of one
chain's feed (``MempoolTx``, ``MempoolStats``, ``ChainHead`` and the feed's connection
``FeedStatus``) and emits a :class:`MempoolRow` at every step end its clock passes, as
:class:`model.features.FeatureBuilder` does for a book: step ``k`` covers receive times
``[k*cadence, (k+1)*cadence)`` and its row carries ``ts_ns = (k+1)*cadence``. The clock
is the receive time (a pending transaction has no exchange time); it never goes
backwards, moves with every event and with :meth:`MempoolFeatures.advance_to`.

Channels (the column order of ``MempoolRow.vector``; :data:`MEMPOOL_CHANNELS` gives each
a one-line definition):

================================  ===========================================================
``arrivals_per_s``                pending transactions first seen in the step / step length
``tip_p10_gwei`` .. ``p90``       effective priority fee of the step's Ethereum arrivals,
                                  min(maxPriorityFee, maxFee - next base fee); 10/50/90th
                                  percentiles
``fee_rate_p10_sat_vb`` .. ``p90``  fee rate of the step's Bitcoin arrivals (track-mempool)
``swap_count``                    DEX router swaps among the step's Ethereum arrivals
``swap_notional_eth``             ETH/WETH paid into those swaps, where the calldata says
``base_fee_gwei``                 base fee of the latest head (Ethereum)
``base_fee_change``               ln(latest head's base fee / its parent's)
``pending_count``                 transactions in the mempool (Bitcoin: mempool.space stats)
``mempool_vbytes_per_s``          mempool inflow, vbytes/s (Bitcoin stats)
``next_block_fee_median_sat_vb``  fee band of the first projected block (Bitcoin):
``next_block_fee_min_sat_vb``     its median fee rate, the bottom and the top of its
``next_block_fee_max_sat_vb``     fee range
================================  ===========================================================

Presence (``MempoolRow.present``; an absent channel holds 0.0 in ``vector`` and None in
``values``, never a made-up number):

* a channel the chain does not have is always absent (an Ethereum node reports no
  mempool size; mempool.space no base fee);
* the per-step transaction channels (arrivals, swaps) need the transaction stream: a
  ``MempoolTx`` seen since the connection opened, the connection up for the whole step
  and no sequence gap in it; the percentiles also need one value in the step;
* the latest-state channels (base fee, stats, projected block) need their input no older
  than ``stale_after_ns`` at the step end, received on the current connection;
* a stale feed, no event at all for ``stale_after_ns``, makes every channel absent.

Memory is bounded by one step's arrivals (the percentile buffers) plus the latest head
and stats; the builder holds plain Python and numpy state and pickles (Bytewax state).

>>> from connectors.events import MempoolTx
>>> f = MempoolFeatures("ethereum", cadence_ns=10**9)
>>> tx = lambda k, tip: MempoolTx(venue="ethereum", symbol="ETH", ts_exchange_ns=None, ts_recv_ns=k,
...                               chain="ethereum", txid=hex(k), effective_tip=tip)
>>> rows = f.on_events([tx(1, 10**9), tx(2, 3 * 10**9), tx(10**9 + 5, None)])
>>> row = rows[0]
>>> row.ts_ns, row.get("arrivals_per_s"), row.get("tip_p50_gwei"), row.get("pending_count")
(1000000000, 2.0, 2.0, None)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Literal

import numpy as np

from connectors.events import ChainHead, Event, FeedStatus, MempoolStats, MempoolTx
from model.features import readonly

Chain = Literal["ethereum", "bitcoin"]

# (name, one-line definition with its reference). The order is the column order of
# MempoolRow.vector.
MEMPOOL_CHANNELS: tuple[tuple[str, str], ...] = (
    ("arrivals_per_s", "Pending transactions first seen in the step divided by the step length, tx/s."),
    ("tip_p10_gwei", "10th percentile of the step's effective tips, min(maxPriorityFee, maxFee - next base fee) "
                     "(EIP-1559; legacy: gasPrice - next base fee), gwei; linear interpolation (Hyndman & Fan 1996, type 7)."),
    ("tip_p50_gwei", "Median of the step's effective tips, gwei (as tip_p10_gwei)."),
    ("tip_p90_gwei", "90th percentile of the step's effective tips, gwei (as tip_p10_gwei)."),
    ("fee_rate_p10_sat_vb", "10th percentile of the step's Bitcoin arrivals' fee rates (fee / vsize), sat/vB; type 7."),
    ("fee_rate_p50_sat_vb", "Median of the step's Bitcoin arrivals' fee rates, sat/vB."),
    ("fee_rate_p90_sat_vb", "90th percentile of the step's Bitcoin arrivals' fee rates, sat/vB."),
    ("swap_count", "Arrivals in the step calling a known DEX router function (Uniswap V2/V3 routers, Universal Router)."),
    ("swap_notional_eth", "ETH paid into the step's swaps where the calldata tells it (msg.value, or a WETH amountIn); "
                          "swaps paying other tokens are not priced, so a lower bound of swap volume, ETH."),
    ("base_fee_gwei", "Base fee per gas of the latest head, gwei (EIP-1559)."),
    ("base_fee_change", "ln(base fee of the latest head / base fee of its parent), when both were received."),
    ("pending_count", "Transactions in the mempool, mempool.space's mempoolInfo.size (bitcoind getmempoolinfo)."),
    ("mempool_vbytes_per_s", "Mempool inflow in vbytes per second, mempool.space's vBytesPerSecond."),
    ("next_block_fee_median_sat_vb", "Median fee rate of mempool.space's first projected block, sat/vB."),
    ("next_block_fee_min_sat_vb", "Lowest fee rate of the first projected block (feeRange[0]), sat/vB."),
    ("next_block_fee_max_sat_vb", "Highest fee rate of the first projected block (feeRange[-1]), sat/vB."),
)
CHANNEL_NAMES: tuple[str, ...] = tuple(name for name, _ in MEMPOOL_CHANNELS)
INDEX: dict[str, int] = {name: i for i, name in enumerate(CHANNEL_NAMES)}
N_CHANNELS = len(MEMPOOL_CHANNELS)

_TX_CHANNELS = ("arrivals_per_s", "swap_count", "swap_notional_eth")
CHAIN_CHANNELS: dict[str, frozenset[str]] = {
    "ethereum": frozenset({"arrivals_per_s", "tip_p10_gwei", "tip_p50_gwei", "tip_p90_gwei", "swap_count",
                           "swap_notional_eth", "base_fee_gwei", "base_fee_change"}),
    "bitcoin": frozenset({"arrivals_per_s", "fee_rate_p10_sat_vb", "fee_rate_p50_sat_vb", "fee_rate_p90_sat_vb",
                          "pending_count", "mempool_vbytes_per_s", "next_block_fee_median_sat_vb",
                          "next_block_fee_min_sat_vb", "next_block_fee_max_sat_vb"}),
}
GWEI = 1e9
WEI_PER_ETH = 1e18
PERCENTILES = (10.0, 50.0, 90.0)
_CONNECTION_UP = frozenset({"connected", "synced"})
_CONNECTION_DOWN = frozenset({"disconnected", "stale"})


@dataclasses.dataclass(frozen=True, eq=False)
class MempoolRow:
    """One finished step of one chain: ``vector[C]`` float64 (0.0 where absent) and ``present[C]``."""

    chain: str
    ts_ns: int  # step end
    vector: np.ndarray  # float64[N_CHANNELS]
    present: np.ndarray  # bool[N_CHANNELS]

    def get(self, name: str) -> float | None:
        """The named channel, or None where absent."""
        i = INDEX[name]
        return float(self.vector[i]) if self.present[i] else None

    @property
    def values(self) -> dict[str, float | None]:
        """Every channel by name, None where absent (the form forecast records carry)."""
        return {name: float(v) if p else None for name, v, p in zip(CHANNEL_NAMES, self.vector, self.present)}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MempoolRow):
            return NotImplemented
        return (self.chain == other.chain and self.ts_ns == other.ts_ns
                and np.array_equal(self.present, other.present) and np.array_equal(self.vector, other.vector))

    __hash__ = None  # type: ignore[assignment]  # holds arrays

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={float(v):.6g}" for n, v, p in zip(CHANNEL_NAMES, self.vector, self.present) if p)
        return f"MempoolRow({self.chain!r}, ts_ns={self.ts_ns}, {shown})"


class MempoolFeatures:
    """Streaming mempool features of one chain's feed; picklable.

    Parameters
    ----------
    chain : "ethereum" or "bitcoin"
        The feed's venue; events of other venues are refused.
    cadence_ns : int
        Step length (the flow's cadence).
    stale_after_ns : int
        A feed without any event for this long, and an input (head, stats) older than
        this at a step end, count as absent.
    max_gap_steps : int
        A clock jump longer than this many steps does not emit the steps one by one: the
        open step is emitted and the next row is the step the clock landed in.

    >>> MempoolFeatures("bitcoin").stale_after_ns
    30000000000
    """

    def __init__(self, chain: Chain, cadence_ns: int = 1_000_000_000, stale_after_ns: int = 30_000_000_000,
                 max_gap_steps: int = 86_400) -> None:
        if chain not in CHAIN_CHANNELS:
            raise ValueError(f"chain must be ethereum or bitcoin, got {chain!r}")
        if cadence_ns <= 0 or stale_after_ns <= 0:
            raise ValueError(f"cadence_ns and stale_after_ns must be positive, got {cadence_ns}, {stale_after_ns}")
        if max_gap_steps < 1:
            raise ValueError(f"max_gap_steps must be at least 1, got {max_gap_steps}")
        self.chain = chain
        self.cadence_ns = cadence_ns
        self.stale_after_ns = stale_after_ns
        self.max_gap_steps = max_gap_steps
        self._own = np.array([name in CHAIN_CHANNELS[chain] for name in CHANNEL_NAMES])
        self._clock: int | None = None
        self._step_end: int | None = None
        self._last_event_ns: int | None = None
        # Connection state.
        self._connection_up = True  # events arriving imply a connection until told otherwise
        self._txs_seen = False  # the transaction stream is known on this connection
        # Latest state: (received at, value).
        self._head: tuple[int, ChainHead] | None = None
        self._parent_base_fee: float | None = None  # base fee of the latest head's parent, gwei
        self._stats: tuple[int, MempoolStats] | None = None
        # Per step, reset by _open_step.
        self._step_broken = False
        self._arrivals = 0
        self._tips: list[float] = []
        self._fee_rates: list[float] = []
        self._swaps = 0
        self._swap_eth = 0.0

    # ---------------------------------------------------------------- public API

    def on_event(self, ev: Event) -> list[MempoolRow]:
        """Consume one event of this chain's feed; the rows of the steps it closes."""
        if ev.venue != self.chain:
            raise ValueError(f"event of {ev.venue!r} sent to the mempool features of {self.chain!r}")
        rows = self._advance(ev.ts_recv_ns)
        assert self._clock is not None
        ts = self._clock  # a late event counts as received now
        self._last_event_ns = ts
        if isinstance(ev, FeedStatus):
            self._on_status(ev)
        elif not self._connection_up:
            return rows  # data during an announced outage is not trusted
        elif isinstance(ev, MempoolTx):
            self._on_tx(ev)
        elif isinstance(ev, ChainHead):
            self._on_head(ev, ts)
        elif isinstance(ev, MempoolStats):
            self._stats = (ts, ev)
        return rows

    def on_events(self, events: Iterable[Event]) -> list[MempoolRow]:
        """Consume events in order; the rows equal those of one ``on_event`` call each."""
        rows: list[MempoolRow] = []
        for ev in events:
            rows.extend(self.on_event(ev))
        return rows

    def advance_to(self, ts_ns: int) -> list[MempoolRow]:
        """Move the clock to ``ts_ns`` (receive time) without an event; the finished steps."""
        return self._advance(ts_ns)

    @property
    def clock_ns(self) -> int | None:
        """Latest receive time seen (never decreases); None before the first."""
        return self._clock

    # ---------------------------------------------------------------- clock and steps

    def _advance(self, ts_ns: int) -> list[MempoolRow]:
        if self._clock is not None and ts_ns <= self._clock:
            return []
        self._clock = ts_ns
        if self._step_end is not None and ts_ns < self._step_end:
            return []  # still in the open step: the common case, per transaction
        end = (ts_ns // self.cadence_ns + 1) * self.cadence_ns
        if self._step_end is None:
            self._step_end = end
            self._open_step()
            return []
        rows: list[MempoolRow] = []
        if (end - self._step_end) // self.cadence_ns > self.max_gap_steps:
            rows.append(self._close_step())
            self._step_end = end
            self._open_step()
            return rows
        while self._step_end < end:
            rows.append(self._close_step())
            self._step_end += self.cadence_ns
            self._open_step()
        return rows

    def _open_step(self) -> None:
        self._step_broken = not self._connection_up
        self._arrivals = 0
        self._tips = []
        self._fee_rates = []
        self._swaps = 0
        self._swap_eth = 0.0

    def _fresh(self, received_ns: int, end: int) -> bool:
        return end - received_ns <= self.stale_after_ns

    def _close_step(self) -> MempoolRow:
        end = self._step_end
        assert end is not None
        vector = np.zeros(N_CHANNELS)
        present = np.zeros(N_CHANNELS, dtype=bool)

        def put(name: str, value: float) -> None:
            vector[INDEX[name]] = value
            present[INDEX[name]] = True

        if self._last_event_ns is not None and self._fresh(self._last_event_ns, end):
            if self._txs_seen and not self._step_broken:
                put("arrivals_per_s", self._arrivals / (self.cadence_ns / 1e9))
                put("swap_count", float(self._swaps))
                put("swap_notional_eth", self._swap_eth)
                for prefix, samples in (("tip", self._tips), ("fee_rate", self._fee_rates)):
                    if samples:
                        unit = "gwei" if prefix == "tip" else "sat_vb"
                        for q, value in zip(PERCENTILES, np.percentile(samples, PERCENTILES)):
                            put(f"{prefix}_p{q:.0f}_{unit}", float(value))
            if self._head is not None and self._fresh(self._head[0], end) and self._head[1].base_fee is not None:
                base_fee = self._head[1].base_fee / GWEI
                put("base_fee_gwei", base_fee)
                if self._parent_base_fee:
                    put("base_fee_change", math.log(base_fee / self._parent_base_fee))
            if self._stats is not None and self._fresh(self._stats[0], end):
                self._put_stats(self._stats[1], put)
        present &= self._own
        vector[~present] = 0.0
        return MempoolRow(self.chain, end, readonly(vector), readonly(present))

    @staticmethod
    def _put_stats(stats: MempoolStats, put) -> None:
        put("pending_count", float(stats.size_tx))
        if stats.vbytes_per_s is not None:
            put("mempool_vbytes_per_s", stats.vbytes_per_s)
        if stats.projected_blocks:
            block = stats.projected_blocks[0]
            put("next_block_fee_median_sat_vb", block.median_fee)
            if block.fee_range:
                put("next_block_fee_min_sat_vb", block.fee_range[0])
                put("next_block_fee_max_sat_vb", block.fee_range[-1])

    # ---------------------------------------------------------------- event handlers

    def _on_status(self, ev: FeedStatus) -> None:
        if ev.scope != "connection":
            return
        if ev.state in _CONNECTION_DOWN:
            self._connection_up = False
            self._step_broken = True
            # Nothing carried across a reconnect: the node resubscribes and sends afresh.
            self._txs_seen = False
            self._head = None
            self._parent_base_fee = None
            self._stats = None
        elif ev.state in _CONNECTION_UP:
            self._connection_up = True
        elif ev.state == "gap":  # transactions were lost (mempool.space sequence): not a full step
            self._step_broken = True

    def _on_tx(self, ev: MempoolTx) -> None:
        self._txs_seen = True
        self._arrivals += 1
        if ev.effective_tip is not None:
            self._tips.append(ev.effective_tip / GWEI)
        if ev.fee_rate_sat_vb is not None:
            self._fee_rates.append(ev.fee_rate_sat_vb)
        if ev.dex_swap:
            self._swaps += 1
            if ev.swap_notional_wei is not None:
                self._swap_eth += ev.swap_notional_wei / WEI_PER_ETH

    def _on_head(self, ev: ChainHead, ts: int) -> None:
        previous = self._head[1] if self._head is not None else None
        # A change is head over its parent only: a skipped height or a reorg gives none.
        is_parent = previous is not None and previous.height + 1 == ev.height and bool(previous.base_fee)
        self._parent_base_fee = previous.base_fee / GWEI if is_parent and previous is not None else None
        self._head = (ts, ev)


def rows_on_bars(rows: Iterable[MempoolRow], bar_ts_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows placed on bars: ``values[n, C]`` (NaN where absent) and ``present[n, C]``.

    A row lands on the bar whose end time equals its ``ts_ns``: with ``cadence_ns`` = the
    bar length, the step ``[t - bar, t)`` ends where the bar ``(t - bar, t]`` ends, so the
    row is known at that bar's close and not before. A bar without a row, or a row whose
    step end is no bar's end (bars off the UTC grid of their length), has every channel
    absent.

    >>> f = MempoolFeatures("bitcoin", cadence_ns=10)
    >>> st = MempoolStats(venue="bitcoin", symbol="BTC", ts_exchange_ns=None, ts_recv_ns=5, chain="bitcoin",
    ...                   size_tx=7)
    >>> values, present = rows_on_bars(f.on_events([st]) + f.advance_to(25), np.array([10, 20, 30]))
    >>> values[:, INDEX["pending_count"]].tolist(), present.any(axis=1).tolist()
    ([7.0, 7.0, nan], [True, True, False])
    """
    ts = np.asarray(bar_ts_ns, dtype=np.int64)
    values = np.full((len(ts), N_CHANNELS), np.nan)
    present = np.zeros((len(ts), N_CHANNELS), dtype=bool)
    rows = list(rows)
    if not rows or not len(ts):
        return values, present
    row_ts = np.array([r.ts_ns for r in rows], dtype=np.int64)
    at = np.clip(np.searchsorted(ts, row_ts), 0, len(ts) - 1)
    hit = ts[at] == row_ts
    vec = np.stack([r.vector for r in rows])[hit]
    pres = np.stack([r.present for r in rows])[hit]
    present[at[hit]] = pres
    values[at[hit]] = np.where(pres, vec, np.nan)
    return values, present
