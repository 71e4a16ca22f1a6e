"""Wire shapes of the mempool.space websocket messages we read (protocols.md §4.3).

Every server frame is one JSON object whose keys depend on the subscriptions;
unknown keys and fields are ignored.
"""

from __future__ import annotations

import msgspec


class MempoolInfo(msgspec.Struct, kw_only=True):
    """bitcoind ``getmempoolinfo`` as mempool.space forwards it."""

    size: int
    bytes: int | None = None
    usage: int | None = None
    mempoolminfee: float | None = None  # BTC/kvB
    minrelaytxfee: float | None = None


class Fees(msgspec.Struct, kw_only=True):
    """Recommended fees, sat/vB."""

    fastestFee: float | None = None
    halfHourFee: float | None = None
    hourFee: float | None = None
    economyFee: float | None = None
    minimumFee: float | None = None


class MempoolBlock(msgspec.Struct, kw_only=True):
    blockSize: int | None = None
    blockVSize: float
    nTx: int
    totalFees: int = 0
    medianFee: float
    feeRange: list[float] = []


class Block(msgspec.Struct, kw_only=True):
    id: str
    height: int
    timestamp: int | None = None
    tx_count: int | None = None
    previousblockhash: str | None = None


class StrippedTx(msgspec.Struct, kw_only=True):
    """A stripped tx of ``mempool-transactions.added``: ``{txid,fee,vsize,value,rate,flags}``."""

    txid: str
    fee: int | None = None
    vsize: float | None = None
    value: int = 0
    rate: float | None = None


class MempoolTransactions(msgspec.Struct, kw_only=True):
    sequence: int | None = None
    added: list[StrippedTx] = []
    removed: list[str] = []
    mined: list[str] = []


WANT = '{"action":"want","data":["blocks","mempool-blocks","stats"]}'
TRACK_MEMPOOL = '{"track-mempool":true}'
PING = '{"action":"ping"}'
