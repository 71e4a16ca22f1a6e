"""Binance market-data wire messages as frozen msgspec Structs, in Binance's field names.

Decoded with ``msgspec.json.Decoder(..., strict=False)``, which turns Binance's
quoted decimals (``"61837.63000000"``) straight into floats in C: no per-level
Python conversion. The constrained ``Price``/``Size`` types reject what lax
decoding would otherwise let through (``"NaN"``, ``"inf"``, negative sizes), so a
bad level fails the whole frame instead of poisoning a book.

Fields the connector does not use (``e``, ``s``, ``T`` of depth and book ticker, trade
``E``, aggTrade ``f``/``l``, spot ``M``, COIN-M ``ps``) are not declared: msgspec
skips them without allocating. The symbol comes from the stream name, which is
what the subscription asked for.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# A finite positive price / a finite non-negative size. Lax mode accepts "NaN" and
# "inf" as floats; these bounds make the C decoder reject them.
Price = Annotated[float, msgspec.Meta(gt=0.0, lt=1e300)]
Size = Annotated[float, msgspec.Meta(ge=0.0, lt=1e300)]
# [price, size] on the wire; a tuple so it goes into BookDelta/L2Book as decoded.
WireLevel = tuple[Price, Size]


class DepthUpdate(msgspec.Struct, frozen=True, gc=False):
    """``<symbol>@depth[@100ms|@0ms]`` diff (``"e":"depthUpdate"``)."""

    E: int  # event time, ms
    U: int  # first update id in this event
    u: int  # final update id in this event
    b: list[WireLevel]  # bids to set, absolute size; size 0 deletes the level
    a: list[WireLevel]  # asks to set, absolute size; size 0 deletes the level
    pu: int | None = None  # futures only: final update id of the previous event


class DepthSnapshot(msgspec.Struct, frozen=True, gc=False):
    """REST ``GET /api/v3/depth`` (spot), ``/fapi/v1/depth``, ``/dapi/v1/depth`` body."""

    lastUpdateId: int  # the book below is as of this update id
    bids: list[WireLevel]  # best first
    asks: list[WireLevel]  # best first
    E: int | None = None  # futures only: message output time, ms


class TradeMsg(msgspec.Struct, frozen=True, gc=False):
    """``<symbol>@trade`` (``"e":"trade"``): one fill."""

    T: int  # trade time, ms
    t: int  # trade id
    p: Price  # price
    q: Size  # quantity (COIN-M: contracts)
    m: bool  # true: the buyer is the maker, so the aggressor sold
    X: str | None = None  # futures only: MARKET, or INSURANCE_FUND for a liquidation


class AggTradeMsg(msgspec.Struct, frozen=True, gc=False):
    """``<symbol>@aggTrade`` (``"e":"aggTrade"``): fills of one taker order at one price."""

    T: int  # trade time, ms
    a: int  # aggregate trade id
    p: Price  # price
    q: Size  # quantity (COIN-M: contracts)
    m: bool  # true: the buyer is the maker, so the aggressor sold


class BookTickerMsg(msgspec.Struct, frozen=True, gc=False):
    """``<symbol>@bookTicker``: best bid and ask after update id ``u``."""

    u: int  # order book update id, comparable with depth ``u``
    b: Annotated[float, msgspec.Meta(ge=0.0, lt=1e300)]  # best bid price (0: no bid)
    B: Size  # best bid quantity
    a: Annotated[float, msgspec.Meta(ge=0.0, lt=1e300)]  # best ask price (0: no ask)
    A: Size  # best ask quantity
    E: int | None = None  # futures only (spot sends no times): event time, ms


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """A combined-stream frame, or a reply to a control request (``{"result":null,"id":1}``)."""

    stream: str | None = None  # <symbol>@<channel>, lower case
    data: msgspec.Raw = msgspec.Raw()  # the payload, decoded once its stream is known
    id: int | str | None = None  # control replies only


# Typed envelopes: when the stream name can be read off the frame's first bytes,
# the whole frame is decoded in one pass with the payload's own type. ``stream`` is
# not declared: it is already known, and skipping it saves a string per frame.
class DepthEnvelope(msgspec.Struct, frozen=True, gc=False):
    """``{"stream": ..., "data": DepthUpdate}``."""

    data: DepthUpdate


class TradeEnvelope(msgspec.Struct, frozen=True, gc=False):
    """``{"stream": ..., "data": TradeMsg}``."""

    data: TradeMsg


class AggTradeEnvelope(msgspec.Struct, frozen=True, gc=False):
    """``{"stream": ..., "data": AggTradeMsg}``."""

    data: AggTradeMsg


class BookTickerEnvelope(msgspec.Struct, frozen=True, gc=False):
    """``{"stream": ..., "data": BookTickerMsg}``."""

    data: BookTickerMsg
