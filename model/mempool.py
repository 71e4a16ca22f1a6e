"""Mempool features at the model cadence: one row per step of one chain's pending-transaction activity.

Fed, in receive-time order, the normalized events of one chain (``MempoolTx``,
``MempoolStats``, ``ChainHead``), :class:`MempoolFeatures` emits a
:class:`MempoolRow` at every step end its clock passes, like
:class:`model.features.FeatureBuilder` does for a book. The clock is the receive
time: a pending transaction has no exchange time. Channels (None = absent, never
a made-up number):

=====================  ==============================================================
``pending_tx_per_s``   transactions first seen in the step / step length
``tip_p10_gwei``       effective priority fee of the step's Ethereum arrivals,
``tip_p50_gwei``       min(maxPriorityFee, maxFee - next base fee), percentiles
``tip_p90_gwei``       (absent without an arrival that has one)
``fee_rate_p50_sat_vb``  median fee rate of the step's Bitcoin arrivals (track-mempool)
``swap_count``         DEX router swaps among the step's arrivals (Ethereum)
``swap_notional_eth``  their ETH/WETH input where the calldata tells it
``base_fee_gwei``      base fee of the latest head (Ethereum)
``base_fee_change``    ln(latest head's base fee / the previous head's)
``pending_count``      transactions in the mempool (the latest stats)
``mempool_vbytes_per_s``  mempool inflow (Bitcoin stats)
``next_block_fee_median_sat_vb``, ``next_block_fee_min_sat_vb``, ``next_block_fee_max_sat_vb``
                       the first projected block's fee band (Bitcoin)
=====================  ==============================================================

A channel whose chain does not have it is always absent. A row exists only for a
step the feed's own events close: a dead feed emits nothing, and the consumer
(the flow joins the latest row into each record) treats a row older than its
staleness limit as absent, never as a quiet mempool. Per-step buffers only:
memory is bounded by one step's arrivals.

>>> from connectors.events import MempoolTx
>>> f = MempoolFeatures("ethereum", cadence_ns=10**9)
>>> tx = lambda k, tip: MempoolTx(venue="ethereum", symbol="ETH", ts_exchange_ns=None, ts_recv_ns=k,
...                               chain="ethereum", txid=hex(k), effective_tip=tip)
>>> rows = [r for ev in (tx(1, 10**9), tx(2, 3 * 10**9), tx(10**9 + 5, None)) for r in f.on_event(ev)]
>>> rows[0].values["pending_tx_per_s"], rows[0].values["tip_p50_gwei"], rows[0].values["pending_count"]
(2.0, 2.0, None)
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec
import numpy as np

from connectors.events import ChainHead, Event, MempoolStats, MempoolTx

Chain = Literal["ethereum", "bitcoin"]
CHANNELS: tuple[str, ...] = (
    "pending_tx_per_s",
    "tip_p10_gwei",
    "tip_p50_gwei",
    "tip_p90_gwei",
    "fee_rate_p50_sat_vb",
    "swap_count",
    "swap_notional_eth",
    "base_fee_gwei",
    "base_fee_change",
    "pending_count",
    "mempool_vbytes_per_s",
    "next_block_fee_median_sat_vb",
    "next_block_fee_min_sat_vb",
    "next_block_fee_max_sat_vb",
)
_CHAIN_CHANNELS: dict[str, frozenset[str]] = {
    "ethereum": frozenset({
        "pending_tx_per_s", "tip_p10_gwei", "tip_p50_gwei", "tip_p90_gwei", "swap_count", "swap_notional_eth",
        "base_fee_gwei", "base_fee_change", "pending_count",
    }),
    "bitcoin": frozenset({
        "pending_tx_per_s", "fee_rate_p50_sat_vb", "pending_count", "mempool_vbytes_per_s",
        "next_block_fee_median_sat_vb", "next_block_fee_min_sat_vb", "next_block_fee_max_sat_vb",
    }),
}
GWEI = 1e9
WEI_PER_ETH = 1e18


class MempoolRow(msgspec.Struct, frozen=True):
    """One step of one chain: ``values[channel]``, None where absent."""

    chain: str
    ts_ns: int  # step end
    values: dict[str, float | None]


class MempoolFeatures:
    """Streaming mempool features of one chain; picklable.

    Parameters
    ----------
    chain : "ethereum" or "bitcoin"
    cadence_ns : int
        Step length (the flow's cadence).
    """

    def __init__(self, chain: Chain, cadence_ns: int = 1_000_000_000) -> None:
        if chain not in _CHAIN_CHANNELS:
            raise ValueError(f"chain must be ethereum or bitcoin, got {chain!r}")
        if cadence_ns <= 0:
            raise ValueError(f"cadence_ns must be positive, got {cadence_ns}")
        self.chain = chain
        self.cadence_ns = cadence_ns
        self._own = _CHAIN_CHANNELS[chain]
        self._step_end: int | None = None
        # Per step.
        self._arrivals = 0
        self._tips: list[float] = []
        self._fee_rates: list[float] = []
        self._swaps = 0
        self._swap_eth = 0.0
        self._swap_eth_known = False
        # Latest state.
        self._base_fees: tuple[float | None, float | None] = (None, None)  # (previous, latest), gwei
        self._stats: MempoolStats | None = None

    def on_event(self, ev: Event) -> list[MempoolRow]:
        """Consume one event of this chain; the rows of the steps it closes."""
        ts = ev.ts_recv_ns
        rows = self._advance(ts)
        if isinstance(ev, MempoolTx):
            self._arrivals += 1
            if ev.effective_tip is not None:
                self._tips.append(ev.effective_tip / GWEI)
            if ev.fee_rate_sat_vb is not None:
                self._fee_rates.append(ev.fee_rate_sat_vb)
            if ev.dex_swap:
                self._swaps += 1
                if ev.swap_notional_wei is not None:
                    self._swap_eth += ev.swap_notional_wei / WEI_PER_ETH
                    self._swap_eth_known = True
        elif isinstance(ev, ChainHead) and ev.base_fee is not None:
            self._base_fees = (self._base_fees[1], ev.base_fee / GWEI)
        elif isinstance(ev, MempoolStats):
            self._stats = ev
        return rows

    def _advance(self, ts: int) -> list[MempoolRow]:
        if self._step_end is None:
            self._step_end = (ts // self.cadence_ns + 1) * self.cadence_ns
            return []
        rows = []
        while ts >= self._step_end:
            rows.append(self._close(self._step_end))
            # A long silence: one row at the next step after it, not one per empty step.
            nxt = self._step_end + self.cadence_ns
            self._step_end = nxt if ts < nxt + self.cadence_ns else (ts // self.cadence_ns + 1) * self.cadence_ns
        return rows

    def _close(self, end: int) -> MempoolRow:
        values: dict[str, float | None] = dict.fromkeys(CHANNELS)
        step_s = self.cadence_ns / 1e9
        values["pending_tx_per_s"] = self._arrivals / step_s
        if self._tips:
            p10, p50, p90 = np.percentile(self._tips, (10, 50, 90)).tolist()
            values.update(tip_p10_gwei=p10, tip_p50_gwei=p50, tip_p90_gwei=p90)
        if self._fee_rates:
            values["fee_rate_p50_sat_vb"] = float(np.median(self._fee_rates))
        values["swap_count"] = float(self._swaps)
        if self._swap_eth_known:
            values["swap_notional_eth"] = self._swap_eth
        prev, latest = self._base_fees
        values["base_fee_gwei"] = latest
        if prev and latest:
            values["base_fee_change"] = math.log(latest / prev)
        if self._stats is not None:
            values["pending_count"] = float(self._stats.size_tx)
            values["mempool_vbytes_per_s"] = self._stats.vbytes_per_s
            if self._stats.projected_blocks:
                b0 = self._stats.projected_blocks[0]
                values["next_block_fee_median_sat_vb"] = b0.median_fee
                if b0.fee_range:
                    values["next_block_fee_min_sat_vb"] = b0.fee_range[0]
                    values["next_block_fee_max_sat_vb"] = b0.fee_range[-1]
        for name in CHANNELS:
            if name not in self._own:
                values[name] = None
        self._arrivals, self._tips, self._fee_rates = 0, [], []
        self._swaps, self._swap_eth, self._swap_eth_known = 0, 0.0, False
        return MempoolRow(self.chain, end, values)
