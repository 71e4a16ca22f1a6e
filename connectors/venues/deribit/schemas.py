"""Deribit API v2 wire messages as frozen msgspec Structs, in Deribit's field names.

Deribit speaks JSON-RPC 2.0 over one websocket (research/protocols.md §1). Every
frame is one of:

* a notification ``{"jsonrpc":"2.0","method":"subscription","params":{"channel":...,
  "data":...}}``; its ``data`` type depends on the channel's first word;
* a heartbeat ``{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}``
  (or ``"type":"heartbeat"``);
* a response ``{"jsonrpc":"2.0","id":N,"result":...,"usIn":...,"usOut":...}``;
* an error ``{"jsonrpc":"2.0","id":N,"error":{"code":10028,"message":"too_many_requests"}}``.

Numbers are JSON numbers (never quoted), so decoding is strict. Fields the
connector does not use (ticker ``stats``, ``min_price``, trade ``tick_direction``,
instrument commissions, ...) are not declared: msgspec skips them. The constrained
``Price``/``Amount`` types make a level with a negative or absurd value fail the whole
frame instead of poisoning a book.
"""

from __future__ import annotations

from typing import Annotated, Generic, Literal, TypeVar

import msgspec

T = TypeVar("T")

# Option prices are in the base coin and may be 0 (an empty side of a ticker).
Price = Annotated[float, msgspec.Meta(ge=0.0, lt=1e300)]
Amount = Annotated[float, msgspec.Meta(ge=0.0, lt=1e300)]
# ["new"|"change"|"delete", price, amount] on the wire; a delete carries amount 0.
WireLevel = tuple[Literal["new", "change", "delete"], Price, Amount]


class RpcError(msgspec.Struct, frozen=True, gc=False):
    """The ``error`` member of a failed call (``10028`` is ``too_many_requests``)."""

    code: int  # Deribit error code, or a JSON-RPC one (-32600 ...)
    message: str = ""
    data: msgspec.Raw = msgspec.Raw()  # details, sometimes {"reason":..., "param":...}


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """Any JSON-RPC frame; ``params``/``result`` stay raw until the method is known."""

    method: str | None = None  # "subscription", "heartbeat"; None for a response
    params: msgspec.Raw = msgspec.Raw()  # notification or heartbeat parameters
    id: int | str | None = None  # responses only: the request's id
    result: msgspec.Raw = msgspec.Raw()  # responses only
    error: RpcError | None = None  # failed responses only
    usOut: int | None = None  # responses only: server time the answer left, microseconds


class Params(msgspec.Struct, frozen=True, gc=False):
    """``params`` of a notification (``channel``, ``data``) or a heartbeat (``type``)."""

    channel: str | None = None  # e.g. "book.BTC-PERPETUAL.100ms"
    data: msgspec.Raw = msgspec.Raw()
    type: str | None = None  # heartbeat: "heartbeat" or "test_request"


class BookData(msgspec.Struct, frozen=True, gc=False):
    """``book.{instrument}.{interval}``: the first message a snapshot, then changes."""

    timestamp: int  # ms
    instrument_name: str
    change_id: int  # id of this book state
    bids: list[WireLevel]  # snapshot: every level (action "new"); change: changed levels
    asks: list[WireLevel]
    type: Literal["snapshot", "change"] | None = None  # absent in grouped books
    prev_change_id: int | None = None  # changes only: the change_id this one follows


class Greeks(msgspec.Struct, frozen=True, gc=False):
    """Option greeks of a ticker, per one contract (one coin)."""

    delta: float | None = None
    gamma: float | None = None
    vega: float | None = None
    theta: float | None = None
    rho: float | None = None


class TickerData(msgspec.Struct, frozen=True, gc=False):
    """``ticker.{instrument}.{interval}``; the IV fields exist for options only."""

    timestamp: int  # ms
    instrument_name: str
    mark_price: Price  # options: in the base coin
    index_price: Price  # the currency's price index, USD
    best_bid_price: Price | None = None  # 0 when the side is empty
    best_bid_amount: Amount | None = None
    best_ask_price: Price | None = None
    best_ask_amount: Amount | None = None
    underlying_price: Price | None = None  # options: the forward of the expiry (or the index)
    underlying_index: str | None = None  # options: "BTC-24SEP21" (a future) or "index_price"
    mark_iv: float | None = None  # options: percent
    bid_iv: float | None = None  # options: percent, 0 when there is no bid
    ask_iv: float | None = None  # options: percent, 0 when there is no ask
    greeks: Greeks | None = None  # options only
    open_interest: float | None = None
    interest_rate: float | None = None  # options only


class TradeData(msgspec.Struct, frozen=True, gc=False):
    """One element of ``trades.{instrument}.{interval}`` (a list per notification)."""

    timestamp: int  # ms
    instrument_name: str
    trade_id: str
    price: Price  # options: base coin; futures: USD
    amount: Amount  # options: coin contracts; futures and perpetuals: USD
    direction: Literal["buy", "sell"]  # the taker's side
    index_price: float | None = None
    iv: float | None = None  # options only: percent
    liquidation: str | None = None  # "M", "T" or "MT" when a side was liquidated


class VolatilityIndexData(msgspec.Struct, frozen=True, gc=False):
    """``deribit_volatility_index.{index}``: DVOL."""

    timestamp: int  # ms
    volatility: float  # percent
    index_name: str  # "btc_usd"


class PriceIndexData(msgspec.Struct, frozen=True, gc=False):
    """``deribit_price_index.{index}``."""

    timestamp: int  # ms
    price: Price  # USD
    index_name: str  # "btc_usd"


class MarkPriceData(msgspec.Struct, frozen=True, gc=False):
    """One element of ``markprice.options.{index}`` (every option of the index)."""

    timestamp: int  # ms
    instrument_name: str
    mark_price: Price  # base coin
    iv: float  # a decimal fraction (0.9 = 90%) per the docs' example; unverified live


class InstrumentStateData(msgspec.Struct, frozen=True, gc=False):
    """``instrument.state.{kind}.{currency}``: listings and expiries."""

    timestamp: int  # ms
    instrument_name: str
    state: str  # created, started, settled, closed, deactivated, terminated


class InstrumentInfo(msgspec.Struct, frozen=True, gc=False):
    """One element of the ``public/get_instruments`` result."""

    instrument_name: str
    kind: str  # future, option, spot, future_combo, option_combo
    base_currency: str
    quote_currency: str  # options: the base coin (prices in coin); inverse futures: USD
    expiration_timestamp: int | None = None  # ms; perpetuals: year 3000
    settlement_period: str | None = None  # perpetual, day, week, month
    is_active: bool = True
    strike: float | None = None  # options only
    option_type: Literal["call", "put"] | None = None  # options only
    contract_size: float | None = None  # options: 1 coin; BTC futures: 10 USD
    tick_size: float | None = None
    min_trade_amount: float | None = None
    settlement_currency: str | None = None  # newer responses only
    counter_currency: str | None = None  # newer responses only


class Request(msgspec.Struct, frozen=True, gc=False):
    """A JSON-RPC request, as we send it or as a recording holds it."""

    method: str
    id: int | str | None = None
    params: msgspec.Raw = msgspec.Raw()


class ChannelsParams(msgspec.Struct, frozen=True, gc=False):
    """``params`` of ``public/subscribe`` and ``public/unsubscribe``."""

    channels: list[str] = []


class InstrumentsParams(msgspec.Struct, frozen=True, gc=False):
    """``params`` of ``public/get_instruments``."""

    currency: str = ""
    kind: str | None = None
    expired: bool = False


# Typed notifications: when the channel can be read off the frame's first bytes, the
# whole frame is decoded in one pass with its data's own type.
class NotificationParams(msgspec.Struct, Generic[T], frozen=True, gc=False):
    """``params`` of a notification with ``data`` typed."""

    data: T


class Notification(msgspec.Struct, Generic[T], frozen=True, gc=False):
    """``{"jsonrpc":"2.0","method":"subscription","params":{"channel":...,"data":T}}``."""

    params: NotificationParams[T]
