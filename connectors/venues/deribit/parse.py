"""Pure decoders: Deribit wire Structs -> normalized events, and JSON-RPC requests.

Every function takes the receive time as an argument and reads no clock, so a
replayed recording produces identical events. Units are normalized here, once
(ARCHITECTURE.md "Units everywhere inside"):

* IV and DVOL arrive in percent and leave as decimal fractions (``142.78`` -> ``1.4278``);
  a zero bid/ask IV (an empty side) becomes ``None``, as does a zero best price.
* Option prices stay in the base coin (``OptionTicker.price_unit == "base_coin"``);
  ``index_price`` and ``underlying_price`` ride along so USD is one multiplication away.
* Amounts: options count coin contracts of one coin (``size_unit="base"``); inverse
  futures and perpetuals count USD (``"quote"``); linear ``*_USDC`` ones count coin.
* Exchange times are milliseconds on the wire (``usOut`` microseconds) and
  nanoseconds in events.
"""

from __future__ import annotations

import calendar
import re
import zlib
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from connectors.errors import ProtocolError
from connectors.events import (
    IndexValue,
    Instrument,
    Level,
    OptionTicker,
    SizeUnit,
    Trade,
)
from connectors.venues.deribit.schemas import (
    BookData,
    ChannelsParams,
    Envelope,
    InstrumentInfo,
    InstrumentsParams,
    InstrumentStateData,
    MarkPriceData,
    Notification,
    Params,
    PriceIndexData,
    Request,
    TickerData,
    TradeData,
    VolatilityIndexData,
    WireLevel,
)

VENUE = "deribit"
MS = 1_000_000  # ns per ms
US = 1_000  # ns per microsecond
PERPETUAL_EXPIRY_MS = 32503708800000  # Deribit's expiration_timestamp of perpetuals (year 3000)

# One decoder per message type, created once.
ENVELOPE = msgspec.json.Decoder(Envelope)
PARAMS = msgspec.json.Decoder(Params)
REQUEST = msgspec.json.Decoder(Request)
CHANNELS_PARAMS = msgspec.json.Decoder(ChannelsParams)
INSTRUMENTS_PARAMS = msgspec.json.Decoder(InstrumentsParams)
STRINGS = msgspec.json.Decoder(list[str])
INSTRUMENTS = msgspec.json.Decoder(list[InstrumentInfo])
# Typed whole-frame decoders (fast path) and data-only ones (generic path), per channel.
BOOK = msgspec.json.Decoder(Notification[BookData])
BOOK_DATA = msgspec.json.Decoder(BookData)
TICKER = msgspec.json.Decoder(Notification[TickerData])
TICKER_DATA = msgspec.json.Decoder(TickerData)
TRADES = msgspec.json.Decoder(Notification[list[TradeData]])
TRADES_DATA = msgspec.json.Decoder(list[TradeData])
DVOL = msgspec.json.Decoder(Notification[VolatilityIndexData])
DVOL_DATA = msgspec.json.Decoder(VolatilityIndexData)
PRICE_INDEX = msgspec.json.Decoder(Notification[PriceIndexData])
PRICE_INDEX_DATA = msgspec.json.Decoder(PriceIndexData)
MARKPRICE = msgspec.json.Decoder(Notification[list[MarkPriceData]])
MARKPRICE_DATA = msgspec.json.Decoder(list[MarkPriceData])
INSTRUMENT_STATE = msgspec.json.Decoder(Notification[InstrumentStateData])
INSTRUMENT_STATE_DATA = msgspec.json.Decoder(InstrumentStateData)

_encoder = msgspec.json.Encoder()
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_EXPIRY = re.compile(r"(\d{1,2})([A-Z]{3})(\d{2})")
_STRIKE = re.compile(r"\d+(?:d\d+)?")
InstrumentKind = Literal["option", "future", "perpetual"]


def request(id: int, method: str, params: Mapping[str, Any]) -> str:
    """One JSON-RPC request as the text frame we send, compact and key-ordered.

    >>> request(1, "public/set_heartbeat", {"interval": 30})
    '{"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":30}}'
    """
    doc = {"jsonrpc": "2.0", "id": id, "method": method, "params": params}
    return _encoder.encode(doc).decode()


def shard_of(instrument_name: str, shards: int) -> int:
    """The shard (0..shards-1) an instrument belongs to: CRC-32 of its name, stable
    across processes and runs (unlike ``hash()``).

    >>> shard_of("BTC-24SEP21-8000-P", 4), shard_of("BTC-24SEP21-8000-P", 1)
    (0, 0)
    """
    return zlib.crc32(instrument_name.encode()) % shards


class NameInfo(msgspec.Struct, frozen=True):
    """What an instrument's name tells: ``BTC-24SEP21-8000-P``, ``ETH-PERPETUAL``."""

    currency: str  # the name's first part: "BTC", "BTC_USDC"
    kind: InstrumentKind
    expiry_ms: int | None = None  # 08:00 UTC of the expiry day; None for perpetuals
    strike: float | None = None
    option_type: Literal["C", "P"] | None = None

    @property
    def base(self) -> str:
        """The base coin: ``BTC`` of ``BTC`` and of ``BTC_USDC``."""
        return self.currency.partition("_")[0]

    @property
    def linear(self) -> bool:
        """Quoted and settled in a stablecoin (``BTC_USDC-PERPETUAL``): coin amounts."""
        return "_" in self.currency


def parse_name(name: str) -> NameInfo | None:
    """Currency, kind, expiry, strike and type from an instrument name; None for
    names this connector does not trade (combos, spot pairs).

    >>> parse_name("BTC-24SEP21-8000-P")
    NameInfo(currency='BTC', kind='option', expiry_ms=1632470400000, strike=8000.0, option_type='P')
    >>> parse_name("ETH-PERPETUAL").kind, parse_name("BTC-25MAR22").expiry_ms
    ('perpetual', 1648195200000)
    >>> parse_name("XRP_USDC-30JUN23-0d625-C").strike, parse_name("BTC-FS-24SEP21_PERP") is None
    (0.625, True)
    """
    parts = name.split("-")
    if not parts[0] or not parts[0].replace("_", "").isalnum():
        return None
    if len(parts) == 2 and parts[1] == "PERPETUAL":
        return NameInfo(parts[0], "perpetual")
    if len(parts) not in (2, 4):
        return None
    expiry = _expiry_ms(parts[1])
    if expiry is None:
        return None
    if len(parts) == 2:
        return NameInfo(parts[0], "future", expiry)
    if not _STRIKE.fullmatch(parts[2]) or parts[3] not in ("C", "P"):
        return None
    strike = float(parts[2].replace("d", "."))
    return NameInfo(parts[0], "option", expiry, strike, "C" if parts[3] == "C" else "P")


def _expiry_ms(code: str) -> int | None:
    """``24SEP21`` -> 2021-09-24 08:00 UTC in ms (Deribit expiries are at 08:00 UTC)."""
    m = _EXPIRY.fullmatch(code)
    if m is None or m.group(2) not in _MONTHS:
        return None
    day, month, year = int(m.group(1)), _MONTHS[m.group(2)], 2000 + int(m.group(3))
    if not 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return (calendar.timegm((year, month, day, 8, 0, 0)) * 1000)


def instrument_kind(info: InstrumentInfo) -> InstrumentKind | None:
    """``option``, ``future`` or ``perpetual``; None for kinds we do not trade (combos, spot)."""
    if info.kind == "option":
        return "option"
    if info.kind == "future":
        return "perpetual" if info.settlement_period == "perpetual" else "future"
    return None


def size_unit_of(kind: InstrumentKind, linear: bool, contract_size: float | None = None) -> SizeUnit:
    """What book and trade amounts count for an instrument.

    Options: coin contracts; with Deribit's contract size of one coin that is the
    base unit (a different contract size says ``contracts``). Inverse futures and
    perpetuals: USD (``quote``). Linear (USDC) futures and perpetuals: coin.

    >>> size_unit_of("option", False, 1.0), size_unit_of("perpetual", False), size_unit_of("perpetual", True)
    ('base', 'quote', 'base')
    """
    if kind == "option":
        return "base" if contract_size in (None, 1, 1.0) else "contracts"
    return "base" if linear else "quote"


def levels(wire: list[WireLevel]) -> list[Level]:
    """``[["new", 0.0015, 94.7], ["delete", 0.001, 0.0]]`` -> ``[(0.0015, 94.7), (0.001, 0.0)]``.

    A ``delete`` always becomes size 0, whatever amount it carries.

    >>> levels([("new", 0.0015, 94.7), ("delete", 0.001, 3.0)])
    [(0.0015, 94.7), (0.001, 0.0)]
    """
    return [(px, 0.0 if action == "delete" else amount) for action, px, amount in wire]


def percent_to_decimal(percent: float) -> float:
    """Shift the decimal point of the number the venue sent: ``152.71`` -> ``1.5271``
    (plain ``/ 100.0`` gives ``1.5271000000000001``). Rounding the quotient to 10
    decimals gives the double nearest the shifted decimal for Deribit's IVs and DVOL
    (at most 4 decimals in percent), at half the cost of going through a string.

    >>> percent_to_decimal(152.71), percent_to_decimal(129.36), percent_to_decimal(80.0)
    (1.5271, 1.2936, 0.8)
    """
    return round(percent / 100.0, 10)


def _iv(percent: float | None) -> float | None:
    """Percent -> decimal; 0 (Deribit's "no quote") and absent -> None."""
    return percent_to_decimal(percent) if percent else None


def _px(price: float | None) -> float | None:
    return price if price else None


def option_ticker(msg: TickerData, ts_recv_ns: int) -> OptionTicker:
    """A ``ticker.{option}.{interval}`` message as an :class:`OptionTicker`.

    Wire (real, cryptofeed ``DERIBIT.ws.1.0``, trimmed)::

        {"jsonrpc":"2.0","method":"subscription","params":{"channel":
         "ticker.BTC-24SEP21-8000-P.raw","data":{"underlying_price":32366.75,
         "underlying_index":"BTC-24SEP21","timestamp":1626993722929,"open_interest":729.2,
         "mark_price":0.00090376,"mark_iv":142.78,"interest_rate":0.0,
         "instrument_name":"BTC-24SEP21-8000-P","index_price":32201.67,"greeks":{
         "vega":1.62145,"theta":-1.82613,"rho":-0.27934,"gamma":0.0,"delta":-0.00407},
         "bid_iv":133.0,"best_bid_price":0.0005,"best_bid_amount":153.1,
         "best_ask_price":0.0015,"best_ask_amount":94.7,"ask_iv":152.71}}}

    >>> msg = TICKER_DATA.decode(b'{"underlying_price":32366.75,"underlying_index":"BTC-24SEP21",'
    ...     b'"timestamp":1626993722929,"mark_price":0.00090376,"mark_iv":142.78,'
    ...     b'"instrument_name":"BTC-24SEP21-8000-P","index_price":32201.67,"bid_iv":0.0,'
    ...     b'"best_bid_price":0.0,"best_bid_amount":0.0,"best_ask_price":0.0015,'
    ...     b'"best_ask_amount":94.7,"ask_iv":152.71}')
    >>> t = option_ticker(msg, 7)
    >>> t.mark_iv, t.bid_iv, t.ask_iv, t.best_bid_price, t.best_ask_price, t.price_unit
    (1.4278, None, 1.5271, None, 0.0015, 'base_coin')
    """
    if msg.underlying_price is None or msg.underlying_index is None:
        raise ProtocolError(f"ticker of {msg.instrument_name} has no underlying: not an option ticker")
    g = msg.greeks
    bid = _px(msg.best_bid_price)
    ask = _px(msg.best_ask_price)
    return OptionTicker(
        venue=VENUE,
        symbol=msg.instrument_name,
        ts_exchange_ns=msg.timestamp * MS,
        ts_recv_ns=ts_recv_ns,
        underlying_price=msg.underlying_price,
        underlying_index=msg.underlying_index,
        index_price=msg.index_price,
        mark_price=msg.mark_price,
        mark_iv=_iv(msg.mark_iv),
        bid_iv=_iv(msg.bid_iv),
        ask_iv=_iv(msg.ask_iv),
        best_bid_price=bid,
        best_bid_size=msg.best_bid_amount if bid is not None else None,
        best_ask_price=ask,
        best_ask_size=msg.best_ask_amount if ask is not None else None,
        delta=g.delta if g else None,
        gamma=g.gamma if g else None,
        vega=g.vega if g else None,
        theta=g.theta if g else None,
        rho=g.rho if g else None,
        open_interest=msg.open_interest,
        interest_rate=msg.interest_rate,
        price_unit="base_coin",
    )


def trade(msg: TradeData, ts_recv_ns: int, size_unit: SizeUnit) -> Trade:
    """One element of a ``trades.*`` notification as a :class:`Trade`.

    Wire (nautilus_trader fixture ``ws_trades.json``)::

        {"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.100ms",
         "data":[{"timestamp":1765531356452,"price":92294.5,"amount":10.0,"direction":"sell",
         "index_price":92276.75,"instrument_name":"BTC-PERPETUAL","trade_seq":271252854,
         "mark_price":92287.11,"tick_direction":2,"contracts":1.0,"trade_id":"403691824"}]}}

    >>> msg = TRADES_DATA.decode(b'[{"timestamp":1765531356452,"price":92294.5,"amount":10.0,'
    ...     b'"direction":"sell","index_price":92276.75,"instrument_name":"BTC-PERPETUAL",'
    ...     b'"trade_id":"403691824"}]')[0]
    >>> t = trade(msg, 7, "quote")
    >>> t.price, t.size, t.side, t.trade_id, t.size_unit, t.iv
    (92294.5, 10.0, 'sell', '403691824', 'quote', None)
    """
    return Trade(
        venue=VENUE,
        symbol=msg.instrument_name,
        ts_exchange_ns=msg.timestamp * MS,
        ts_recv_ns=ts_recv_ns,
        price=msg.price,
        size=msg.amount,
        side=msg.direction,
        trade_id=msg.trade_id,
        iv=_iv(msg.iv),
        index_price=msg.index_price,
        liquidation=bool(msg.liquidation),
        size_unit=size_unit,
    )


def volatility_index(msg: VolatilityIndexData, ts_recv_ns: int) -> IndexValue:
    """DVOL as an :class:`IndexValue` named ``<index>.dvol``, as a decimal.

    >>> v = volatility_index(DVOL_DATA.decode(
    ...     b'{"timestamp":1619777946007,"volatility":129.36,"index_name":"btc_usd"}'), 7)
    >>> v.symbol, v.name, v.value, v.value_unit
    ('btc_usd.dvol', 'btc_usd.dvol', 1.2936, 'vol_decimal')
    """
    name = f"{msg.index_name}.dvol"
    return IndexValue(venue=VENUE, symbol=name, ts_exchange_ns=msg.timestamp * MS,
                      ts_recv_ns=ts_recv_ns, name=name, value=percent_to_decimal(msg.volatility),
                      value_unit="vol_decimal")


def price_index(msg: PriceIndexData, ts_recv_ns: int) -> IndexValue:
    """``deribit_price_index`` as an :class:`IndexValue` named after the index (USD).

    >>> v = price_index(PRICE_INDEX_DATA.decode(
    ...     b'{"timestamp":1535098298227,"price":6521.17,"index_name":"btc_usd"}'), 7)
    >>> v.symbol, v.value, v.value_unit
    ('btc_usd', 6521.17, 'usd')
    """
    return IndexValue(venue=VENUE, symbol=msg.index_name, ts_exchange_ns=msg.timestamp * MS,
                      ts_recv_ns=ts_recv_ns, name=msg.index_name, value=msg.price,
                      value_unit="usd")


def mark_iv(msg: MarkPriceData, ts_recv_ns: int) -> IndexValue:
    """One ``markprice.options`` element as an :class:`IndexValue` ``markprice:<option>``
    holding the mark IV, taken as the decimal fraction the docs show (``0.9``).

    >>> v = mark_iv(MARKPRICE_DATA.decode(b'[{"timestamp":1622470378005,"mark_price":0.0333,'
    ...     b'"iv":0.9,"instrument_name":"BTC-2JUN21-37000-P"}]')[0], 7)
    >>> v.symbol, v.name, v.value, v.value_unit
    ('BTC-2JUN21-37000-P', 'markprice:BTC-2JUN21-37000-P', 0.9, 'vol_decimal')
    """
    return IndexValue(venue=VENUE, symbol=msg.instrument_name, ts_exchange_ns=msg.timestamp * MS,
                      ts_recv_ns=ts_recv_ns, name=f"markprice:{msg.instrument_name}",
                      value=msg.iv, value_unit="vol_decimal")


def instrument(info: InstrumentInfo, ts_recv_ns: int, ts_exchange_ns: int | None,
               is_active: bool = True) -> Instrument:
    """A ``public/get_instruments`` element as an :class:`Instrument` event.

    Wire (real, cryptofeed ``DERIBIT.0``)::

        {"tick_size":0.0005,"taker_commission":0.0003,"strike":40000.0,
         "settlement_period":"month","quote_currency":"BTC","option_type":"put",
         "min_trade_amount":0.1,"maker_commission":0.0003,"kind":"option","is_active":true,
         "instrument_name":"BTC-24SEP21-40000-P","expiration_timestamp":1632470400000,
         "creation_timestamp":1606129458000,"contract_size":1.0,
         "block_trade_commission":0.00015,"base_currency":"BTC"}

    >>> info = INSTRUMENTS.decode(b'[{"tick_size":0.0005,"strike":40000.0,"settlement_period":'
    ...     b'"month","quote_currency":"BTC","option_type":"put","min_trade_amount":0.1,"kind":'
    ...     b'"option","is_active":true,"instrument_name":"BTC-24SEP21-40000-P",'
    ...     b'"expiration_timestamp":1632470400000,"contract_size":1.0,"base_currency":"BTC"}]')[0]
    >>> i = instrument(info, 7, None)
    >>> i.instrument_kind, i.strike, i.option_type, i.expiry_ns, i.settle, i.tick_size
    ('option', 40000.0, 'P', 1632470400000000000, 'BTC', 0.0005)
    """
    kind = instrument_kind(info)
    if kind is None:
        raise ProtocolError(f"{info.instrument_name}: kind {info.kind!r} is not traded here")
    expiry = info.expiration_timestamp
    settle = info.settlement_currency or (
        info.quote_currency if info.quote_currency not in ("USD", info.base_currency)
        else info.base_currency)
    return Instrument(
        venue=VENUE,
        symbol=info.instrument_name,
        ts_exchange_ns=ts_exchange_ns,
        ts_recv_ns=ts_recv_ns,
        base=info.base_currency,
        quote=info.quote_currency,
        settle=settle,
        instrument_kind=kind,
        strike=info.strike,
        expiry_ns=None if kind == "perpetual" or expiry is None else expiry * MS,
        option_type=None if info.option_type is None else ("C" if info.option_type == "call" else "P"),
        contract_size=info.contract_size,
        tick_size=info.tick_size,
        min_size=info.min_trade_amount,
        is_active=is_active and info.is_active,
    )


def instrument_from_name(name: NameInfo, symbol: str, ts_recv_ns: int,
                         is_active: bool = True) -> Instrument:
    """An :class:`Instrument` from the name alone (no listing seen): no tick or size."""
    quote = name.currency.partition("_")[2] or ("USD" if name.kind != "option" else name.base)
    return Instrument(
        venue=VENUE, symbol=symbol, ts_exchange_ns=None, ts_recv_ns=ts_recv_ns,
        base=name.base, quote=quote, settle=name.currency.partition("_")[2] or name.base,
        instrument_kind=name.kind, strike=name.strike,
        expiry_ns=None if name.expiry_ms is None else name.expiry_ms * MS,
        option_type=name.option_type, is_active=is_active,
    )
