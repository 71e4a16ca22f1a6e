"""SYNTHETIC market data, for benchmarks and tests that need more history than any bundled recording.

The attention model needs 4 hours of 1-minute bars before its first window; the
bundled real recordings hold minutes. Everything here is generated, says so in
its name, and is never presented as market data.
"""

from __future__ import annotations

import numpy as np

from connectors.events import BookSnapshot

SECOND_NS = 1_000_000_000
MIDNIGHT_NS = 1_723_161_600 * SECOND_NS  # 2024-08-09T00:00Z, a round start


def synthetic_book_snapshots(
    steps: int, *, symbol: str = "BTCUSDT", vol: float = 0.55, start_ns: int = MIDNIGHT_NS, seed: int = 7
) -> list[BookSnapshot]:
    """SYNTHETIC: one top-5 snapshot per second of a mid on a geometric random walk with annualized ``vol``."""
    rng = np.random.default_rng(seed)
    sigma = vol / np.sqrt(365 * 86400)
    mids = 60_000.0 * np.exp(np.cumsum(sigma * rng.standard_normal(steps)))
    out = []
    for i, mid in enumerate(mids.tolist()):
        ts = start_ns + i * SECOND_NS + SECOND_NS // 2
        out.append(
            BookSnapshot(
                venue="binance", symbol=symbol, ts_exchange_ns=ts, ts_recv_ns=ts,
                bids=[(round(mid - 0.5 - k, 2), 1.0 + k) for k in range(5)],
                asks=[(round(mid + 0.5 + k, 2), 1.0 + k) for k in range(5)],
                depth=5, seq=i + 1,
            )
        )
    return out
