"""Conversions for mempool.space messages.

>>> btc_per_kvb_to_sat_per_vb(0.00001305)
1.305
"""

from __future__ import annotations

from connectors.events import ProjectedBlock
from connectors.venues.bitcoin import schemas

SAT_PER_BTC = 100_000_000


def btc_per_kvb_to_sat_per_vb(rate: float) -> float:
    """bitcoind's BTC per 1000 vbytes -> sat per vbyte (x 1e8 / 1e3), rounded to 1e-9."""
    return round(rate * SAT_PER_BTC / 1000, 9)


def fee_buckets(fees: schemas.Fees) -> dict[str, float]:
    """``fees`` -> ``{"fastest": .., "half_hour": .., "hour": .., "economy": .., "minimum": ..}`` (sat/vB)."""
    pairs = {
        "fastest": fees.fastestFee, "half_hour": fees.halfHourFee, "hour": fees.hourFee,
        "economy": fees.economyFee, "minimum": fees.minimumFee,
    }
    return {k: float(v) for k, v in pairs.items() if v is not None}


def projected_blocks(blocks: list[schemas.MempoolBlock]) -> list[ProjectedBlock]:
    return [
        ProjectedBlock(n_tx=b.nTx, vsize=b.blockVSize, total_fees=b.totalFees,
                       median_fee=b.medianFee, fee_range=list(b.feeRange))
        for b in blocks
    ]
