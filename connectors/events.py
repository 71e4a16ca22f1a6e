"""Normalized, typed, frozen market-data events.

Every exchange frame is decoded once, at the edge, into one of these records.
Units (ARCHITECTURE.md): times are integer nanoseconds UTC; IV and vol are decimal
fractions; prices are float64 in quote currency; sizes in base units unless a
``size_unit`` field says otherwise.

Every event carries the venue's own time (``ts_exchange_ns``, ``None`` where the
venue sends none, as in Binance spot ``bookTicker``) and the local receive time
(``ts_recv_ns``), so replayed recordings reproduce identical output.

>>> ev = Trade(venue="binance", symbol="BTCUSDT", ts_exchange_ns=1, ts_recv_ns=2,
...            price=61800.3, size=0.006, side="buy", trade_id="5266583935")
>>> ev.instrument_id
'binance:BTCUSDT'
>>> decode_event(encode_event(ev)) == ev
True
"""

from __future__ import annotations

from typing import Literal, Union

import msgspec

Side = Literal["buy", "sell", "unknown"]
SizeUnit = Literal["base", "quote", "contracts"]
# A price level as (price, size); size 0 in a delta deletes the level.
Level = tuple[float, float]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Fields common to every normalized event."""

    venue: str  # binance, binance_usdm, binance_coinm, deribit, ethereum, bitcoin, ...
    symbol: str  # venue-native symbol, upper-case for Binance (BTCUSDT)
    ts_exchange_ns: int | None
    ts_recv_ns: int

    @property
    def instrument_id(self) -> str:
        """Canonical ``venue:SYMBOL`` id used as the Bytewax key."""
        return f"{self.venue}:{self.symbol}"


class BookSnapshot(Event, frozen=True, tag="book_snapshot"):
    """A whole (or top-``depth``) validated book; replaces any previous state."""

    bids: list[Level]  # best first
    asks: list[Level]  # best first
    depth: int | None = None  # None: every level we know; N: only the top N levels
    seq: int | None = None  # venue update id the book is at (Binance lastUpdateId / u)
    size_unit: SizeUnit = "base"


class BookDelta(Event, frozen=True, tag="book_delta"):
    """Absolute sizes per changed level, already checked to be in sequence."""

    bids: list[Level]
    asks: list[Level]
    first_seq: int | None = None  # Binance U
    seq: int | None = None  # Binance u
    prev_seq: int | None = None  # Binance futures pu
    size_unit: SizeUnit = "base"


class Trade(Event, frozen=True, tag="trade"):
    price: float
    size: float
    side: Side  # aggressor side
    trade_id: str | None = None
    iv: float | None = None  # option trades: implied vol, decimal
    index_price: float | None = None
    liquidation: bool = False
    size_unit: SizeUnit = "base"  # Deribit futures and perpetuals trade USD amounts ("quote")


class BBO(Event, frozen=True, tag="bbo"):
    """Best bid and offer as the venue publishes it (Binance bookTicker)."""

    bid_price: float
    bid_size: float
    ask_price: float
    ask_size: float
    seq: int | None = None  # Binance bookTicker u, comparable with depth u


class OptionTicker(Event, frozen=True, tag="option_ticker"):
    """One option's quote; every IV a decimal fraction, a zero IV side is None."""

    underlying_price: float
    underlying_index: str
    index_price: float
    mark_price: float
    mark_iv: float | None
    bid_iv: float | None
    ask_iv: float | None
    best_bid_price: float | None
    best_bid_size: float | None
    best_ask_price: float | None
    best_ask_size: float | None
    delta: float | None = None
    gamma: float | None = None
    vega: float | None = None
    theta: float | None = None
    rho: float | None = None
    open_interest: float | None = None
    interest_rate: float | None = None
    price_unit: Literal["base_coin", "quote"] = "base_coin"


class OptionQuote(msgspec.Struct, frozen=True, kw_only=True):
    """One option's quote as the surface fitter reads it (not a wire event).

    Built from a ticker (``connectors.chains.quotes_from_tickers``) or a chain file
    (``connectors.chains.read_chain``). IVs are decimal fractions, ``None`` where the
    side is empty (a zero IV is an empty side); prices are in the base coin, as
    Deribit quotes its inverse options (coin premium x forward = USD premium).
    ``underlying_price`` is the price the venue values the option against: on Deribit
    the expiry's future or synthetic future, i.e. the forward. ``forward`` is an
    explicit forward from elsewhere (a futures mark), used first when present.
    """

    expiry_ns: int
    strike: float
    is_call: bool
    ts_ns: int  # time of the quote (venue time when known)
    underlying_price: float | None = None
    forward: float | None = None
    bid_iv: float | None = None
    ask_iv: float | None = None
    mark_iv: float | None = None
    bid_price: float | None = None  # base coin
    ask_price: float | None = None
    mark_price: float | None = None
    symbol: str = ""  # venue instrument name, for reports only


class Instrument(Event, frozen=True, tag="instrument"):
    base: str
    quote: str
    settle: str
    instrument_kind: Literal["spot", "perpetual", "future", "option"]
    strike: float | None = None
    expiry_ns: int | None = None
    option_type: Literal["C", "P"] | None = None
    contract_size: float | None = None
    tick_size: float | None = None
    min_size: float | None = None
    is_active: bool = True


class IndexValue(Event, frozen=True, tag="index"):
    name: str  # btc_usd, btc_usd.dvol, ...
    value: float
    value_unit: Literal["usd", "vol_decimal"] = "usd"


class MempoolTx(Event, frozen=True, tag="mempool_tx"):
    chain: Literal["ethereum", "bitcoin"]
    txid: str
    sender: str | None = None
    to: str | None = None
    value: int = 0  # wei or sat
    tx_type: int | None = None
    gas_limit: int | None = None
    max_fee: int | None = None  # wei per gas
    max_priority_fee: int | None = None
    gas_price_reported: int | None = None
    effective_tip: int | None = None
    fee_rate_sat_vb: float | None = None
    vsize: int | None = None
    selector: str | None = None
    input_len: int = 0
    nonce: int | None = None
    # Known DEX router call (Uniswap V2/V3 routers, Universal Router), by selector.
    dex_swap: bool = False
    swap_token_in: str | None = None  # decoded input token; None when ETH or not decodable
    swap_amount_in: int | None = None  # in swap_token_in's base units (or wei when ETH)
    swap_notional_wei: int | None = None  # only when the input is ETH/WETH; else None


class ChainHead(Event, frozen=True, tag="chain_head"):
    chain: Literal["ethereum", "bitcoin"]
    height: int
    block_hash: str
    parent_hash: str | None = None
    base_fee: int | None = None
    gas_used_ratio: float | None = None
    tx_count: int | None = None


class ProjectedBlock(msgspec.Struct, frozen=True, kw_only=True):
    """One mempool.space projected block (``mempool-blocks``); fees in sat/vB."""

    n_tx: int
    vsize: float
    total_fees: int  # sat
    median_fee: float
    fee_range: list[float] = []


class MempoolStats(Event, frozen=True, tag="mempool_stats"):
    chain: Literal["ethereum", "bitcoin"]
    size_tx: int
    vbytes: int | None = None
    vbytes_per_s: float | None = None
    min_fee: float | None = None
    fee_buckets: dict[str, float] = {}
    projected_blocks: list[ProjectedBlock] = []


FeedState = Literal[
    "connecting",
    "connected",
    "disconnected",
    "buffering",  # subscribed, waiting for a snapshot to bridge the diffs
    "synced",
    "gap",
    "crossed",
    "resyncing",
    "stale",
    "error",
]


class FeedStatus(Event, frozen=True, tag="feed_status"):
    """A state transition of a connection (symbol "*") or of one instrument's book."""

    state: FeedState
    scope: Literal["connection", "instrument"]
    reason: str = ""
    expected_seq: int | None = None
    got_seq: int | None = None


AnyEvent = Union[
    BookSnapshot,
    BookDelta,
    Trade,
    BBO,
    OptionTicker,
    Instrument,
    IndexValue,
    MempoolTx,
    ChainHead,
    MempoolStats,
    FeedStatus,
]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    """JSON bytes with a ``kind`` tag; the inverse of :func:`decode_event`."""
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> AnyEvent:
    """Decode what :func:`encode_event` wrote."""
    return _decoder.decode(data)
