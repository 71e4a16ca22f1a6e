"""Pure decoders: Binance wire Structs -> normalized events.

Every function takes the receive time as an argument and reads no clock, so a
replayed recording produces identical events. Exchange times are milliseconds on
the wire and nanoseconds in events.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import msgspec

from connectors.errors import ProtocolError
from connectors.events import BBO, BookDelta, SizeUnit, Trade
from connectors.venues.binance.schemas import (
    AggTradeEnvelope,
    AggTradeMsg,
    BookTickerEnvelope,
    BookTickerMsg,
    DepthEnvelope,
    DepthSnapshot,
    DepthUpdate,
    Envelope,
    TradeEnvelope,
    TradeMsg,
)

MS = 1_000_000  # ns per ms

# One decoder per message type, created once. strict=False lets quoted decimals
# decode to float in C.
ENVELOPE = msgspec.json.Decoder(Envelope)
SNAPSHOT = msgspec.json.Decoder(DepthSnapshot, strict=False)
DEPTH = msgspec.json.Decoder(DepthUpdate, strict=False)
DEPTH_ENVELOPE = msgspec.json.Decoder(DepthEnvelope, strict=False)
TRADE = msgspec.json.Decoder(TradeMsg, strict=False)
TRADE_ENVELOPE = msgspec.json.Decoder(TradeEnvelope, strict=False)
AGG_TRADE = msgspec.json.Decoder(AggTradeMsg, strict=False)
AGG_TRADE_ENVELOPE = msgspec.json.Decoder(AggTradeEnvelope, strict=False)
BOOK_TICKER = msgspec.json.Decoder(BookTickerMsg, strict=False)
BOOK_TICKER_ENVELOPE = msgspec.json.Decoder(BookTickerEnvelope, strict=False)


def split_stream(stream: str) -> tuple[str, str]:
    """``"btcusdt@depth@100ms"`` -> ``("BTCUSDT", "depth@100ms")``.

    >>> split_stream("btcusdt@depth@100ms")
    ('BTCUSDT', 'depth@100ms')
    """
    symbol, sep, channel = stream.partition("@")
    if not sep or not symbol or not channel:
        raise ProtocolError(f"not a Binance stream name: {stream!r}")
    return symbol.upper(), channel


def snapshot_symbol(url: str) -> str:
    """The upper-case ``symbol`` query parameter of a depth-snapshot URL.

    >>> snapshot_symbol("https://api.binance.com/api/v3/depth?symbol=btcusdt&limit=5000")
    'BTCUSDT'
    >>> snapshot_symbol("/fapi/v1/depth?symbol=SUSHIUSDT&limit=1000")
    'SUSHIUSDT'
    """
    values = parse_qs(urlsplit(url).query).get("symbol")
    if not values:
        raise ProtocolError(f"no symbol= in depth snapshot URL {url!r}")
    return values[0].upper()


def depth_delta(
    msg: DepthUpdate, venue: str, symbol: str, ts_recv_ns: int, size_unit: SizeUnit
) -> BookDelta:
    """A depth diff as a :class:`BookDelta` (levels passed through as decoded).

    Wire (USD-M, trimmed)::

        {"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1723161256299,
         "T":1723161256298,"s":"BTCUSDT","U":5123107832006,"u":5123107837557,
         "pu":5123107831937,"b":[["61510.90","0.000"],["61800.20","2.507"]],
         "a":[["61800.30","3.330"]]}}

    >>> msg = DEPTH.decode(b'{"e":"depthUpdate","E":1723161256299,"U":5,"u":7,"pu":4,'
    ...                    b'"b":[["61510.90","0.000"]],"a":[["61800.30","3.330"]]}')
    >>> d = depth_delta(msg, "binance_usdm", "BTCUSDT", 0, "base")
    >>> d.bids, d.asks, d.first_seq, d.seq, d.prev_seq
    ([(61510.9, 0.0)], [(61800.3, 3.33)], 5, 7, 4)
    """
    return BookDelta(
        venue=venue,
        symbol=symbol,
        ts_exchange_ns=msg.E * MS,
        ts_recv_ns=ts_recv_ns,
        bids=msg.b,
        asks=msg.a,
        first_seq=msg.U,
        seq=msg.u,
        prev_seq=msg.pu,
        size_unit=size_unit,
    )


def trade(msg: TradeMsg, venue: str, symbol: str, ts_recv_ns: int) -> Trade:
    """A ``@trade`` message as a :class:`Trade`; ``m: true`` (buyer is maker) is a sell.

    Wire (spot; USD-M adds ``"X":"MARKET"``)::

        {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",
         "t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,
         "m":true,"M":true}}

    >>> msg = TRADE.decode(b'{"e":"trade","E":1723161255343,"t":3735683259,'
    ...     b'"p":"61837.63000000","q":"0.02000000","T":1723161255342,"m":true,"M":true}')
    >>> t = trade(msg, "binance", "BTCUSDT", 7)
    >>> t.price, t.size, t.side, t.trade_id, t.ts_exchange_ns
    (61837.63, 0.02, 'sell', '3735683259', 1723161255342000000)
    """
    return Trade(
        venue=venue,
        symbol=symbol,
        ts_exchange_ns=msg.T * MS,
        ts_recv_ns=ts_recv_ns,
        price=msg.p,
        size=msg.q,
        side="sell" if msg.m else "buy",
        trade_id=str(msg.t),
        liquidation=msg.X == "INSURANCE_FUND",
    )


def agg_trade(msg: AggTradeMsg, venue: str, symbol: str, ts_recv_ns: int) -> Trade:
    """An ``@aggTrade`` message as a :class:`Trade` (id = the aggregate id ``a``).

    Wire (USD-M)::

        {"stream":"sushiusdt@aggTrade","data":{"e":"aggTrade","E":1626992744262,
         "a":87353230,"s":"SUSHIUSDT","p":"7.6120","q":"297","f":126902924,
         "l":126902927,"T":1626992744108,"m":false}}

    >>> msg = AGG_TRADE.decode(b'{"e":"aggTrade","E":1626992744262,"a":87353230,'
    ...     b'"p":"7.6120","q":"297","f":126902924,"l":126902927,"T":1626992744108,"m":false}')
    >>> t = agg_trade(msg, "binance_usdm", "SUSHIUSDT", 7)
    >>> t.price, t.size, t.side, t.trade_id
    (7.612, 297.0, 'buy', '87353230')
    """
    return Trade(
        venue=venue,
        symbol=symbol,
        ts_exchange_ns=msg.T * MS,
        ts_recv_ns=ts_recv_ns,
        price=msg.p,
        size=msg.q,
        side="sell" if msg.m else "buy",
        trade_id=str(msg.a),
    )


def book_ticker(msg: BookTickerMsg, venue: str, symbol: str, ts_recv_ns: int) -> BBO:
    """A ``@bookTicker`` message as a :class:`BBO`; ``seq`` is its update id ``u``.

    Spot sends no times (``ts_exchange_ns`` None); futures send ``E``, used here::

        {"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT",
         "b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}
        {"stream":"sushiusdt@bookTicker","data":{"e":"bookTicker","u":600859600576,
         "s":"SUSHIUSDT","b":"7.6110","B":"2","a":"7.6120","A":"297",
         "T":1626992741012,"E":1626992741017}}

    >>> msg = BOOK_TICKER.decode(b'{"u":50093239212,"s":"BTCUSDT","b":"61837.63000000",'
    ...     b'"B":"3.78826000","a":"61837.64000000","A":"1.54698000"}')
    >>> q = book_ticker(msg, "binance", "BTCUSDT", 7)
    >>> q.bid_price, q.ask_price, q.seq, q.ts_exchange_ns
    (61837.63, 61837.64, 50093239212, None)
    """
    return BBO(
        venue=venue,
        symbol=symbol,
        ts_exchange_ns=None if msg.E is None else msg.E * MS,
        ts_recv_ns=ts_recv_ns,
        bid_price=msg.b,
        bid_size=msg.B,
        ask_price=msg.a,
        ask_size=msg.A,
        seq=msg.u,
    )
