"""Read hftbacktest's raw Binance collector files as :class:`Frame` records.

gzip text, one message per line, ``<local receive ns> <raw websocket JSON>``::

    1723161253937085768 {"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate",...}}
    1723161254206652067 {"lastUpdateId":50093239218,"bids":[...],"asks":[...]}

The collector writes one symbol per file and takes one REST depth snapshot after it
connects; that line carries no symbol, so it becomes a ``rest`` frame whose URL is
rebuilt from the symbol and market of the stream lines around it
(``https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000`` for spot,
``https://fapi.binance.com/fapi/v1/depth?...`` for USD-M, ``https://dapi...`` for
COIN-M). Lines are held back until one of them tells the symbol and market, which
the first line usually does. There is no ``open`` frame; every frame of a file gets
``conn_id`` ``hftbacktest:<market>:<SYMBOL>``, so a day's file and the next day's
continuation (``btcusdt_20240808.gz`` then ``btcusdt_20240809.gz``) read as one
connection.

>>> from pathlib import Path
>>> path = Path(__file__).parents[2] / "data/binance/hftbacktest/usdm/btcusdt_20240808.gz"
>>> snap = next(f for f in read_hftbacktest(path) if f.kind == "rest")
>>> snap.conn_id, snap.url
('hftbacktest:usdm:BTCUSDT', 'https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000')
"""

from __future__ import annotations

import os
from collections.abc import Generator

import msgspec

from connectors.record.frames import Frame, RecordingFormatError, iter_lines

SNAPSHOT_URL = {
    "spot": "https://api.binance.com/api/v3/depth?symbol={symbol}&limit=1000",
    "usdm": "https://fapi.binance.com/fapi/v1/depth?symbol={symbol}&limit=1000",
    "coinm": "https://dapi.binance.com/dapi/v1/depth?symbol={symbol}&limit=1000",
}
# Lines held back while the symbol or market is still unknown; the collector's
# first line normally settles both, so hitting this means the file is not Binance's.
MAX_HELD_LINES = 10_000
_SNAPSHOT_PREFIX = b'{"lastUpdateId"'


class Envelope(msgspec.Struct):
    """A Binance combined-stream frame: ``{"stream": ..., "data": ...}``, data kept raw."""

    stream: str
    data: msgspec.Raw


class _Shape(msgspec.Struct):
    """The few fields of a Binance event that tell spot from futures."""

    e: str | msgspec.UnsetType = msgspec.UNSET
    s: str | msgspec.UnsetType = msgspec.UNSET
    pu: int | msgspec.UnsetType = msgspec.UNSET
    M: bool | msgspec.UnsetType = msgspec.UNSET


_envelope_decoder = msgspec.json.Decoder(Envelope)
_shape_decoder = msgspec.json.Decoder(_Shape)


def decode_envelope(payload: bytes) -> Envelope | None:
    """The combined-stream envelope of ``payload``, or ``None`` if it is not one."""
    try:
        return _envelope_decoder.decode(payload)
    except msgspec.DecodeError:
        return None


def classify_binance(payload: bytes) -> tuple[str | None, str | None]:
    """``(SYMBOL, market)`` of a Binance websocket message, each ``None`` if it can't tell.

    Market is ``spot``, ``usdm`` or ``coinm``, read from the message's shape: COIN-M
    symbols have an underscore (``BTCUSD_PERP``); futures depth diffs carry ``pu``;
    spot ``bookTicker`` has no ``e`` field; spot trades carry ``M``, futures trades don't.

    >>> classify_binance(b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1"}}')
    ('BTCUSDT', 'spot')
    >>> classify_binance(b'{"e":"depthUpdate","s":"ETHUSDT","U":1,"u":2,"pu":0}')
    ('ETHUSDT', 'usdm')
    """
    env = decode_envelope(payload)
    stream = env.stream if env is not None else ""
    try:
        shape = _shape_decoder.decode(env.data if env is not None else payload)
    except msgspec.DecodeError:
        return None, None
    symbol = shape.s if shape.s else stream.partition("@")[0].upper()
    if not symbol or symbol.startswith("!"):
        return None, None
    if "_" in symbol:
        return symbol, "coinm"
    if shape.pu is not msgspec.UNSET or stream.endswith("@depth@0ms"):
        return symbol, "usdm"
    if shape.e == "depthUpdate":
        return symbol, "spot"
    if shape.e in ("trade", "aggTrade"):
        return symbol, "spot" if shape.M is not msgspec.UNSET else "usdm"
    if stream.endswith("@bookTicker"):
        return symbol, "usdm" if shape.e is not msgspec.UNSET else "spot"
    return symbol, None


def _split(path: str | os.PathLike[str], lineno: int, line: bytes) -> tuple[int, bytes]:
    ts, _, payload = (line[:-1] if line.endswith(b"\n") else line).partition(b" ")
    if not ts.isdigit() or not payload:
        raise RecordingFormatError(
            f"{os.fspath(path)}:{lineno}: not an hftbacktest line: {line[:80]!r}"
        )
    return int(ts), payload


def read_hftbacktest(path: str | os.PathLike[str]) -> Generator[Frame, None, None]:
    """Yield the frames of one hftbacktest collector file in file order."""
    symbol: str | None = None
    market: str | None = None
    held: list[tuple[int, bytes]] = []
    conn_id = snapshot_url = ""
    for lineno, line in enumerate(iter_lines(path), 1):
        ts, payload = _split(path, lineno, line)
        if conn_id:
            yield _frame(conn_id, snapshot_url, ts, payload)
            continue
        held.append((ts, payload))
        if not payload.startswith(_SNAPSHOT_PREFIX):
            sym, mkt = classify_binance(payload)
            symbol = symbol or sym
            market = market or mkt
        if symbol and market:
            conn_id = f"hftbacktest:{market}:{symbol}"
            snapshot_url = SNAPSHOT_URL[market].format(symbol=symbol)
            for held_ts, held_payload in held:
                yield _frame(conn_id, snapshot_url, held_ts, held_payload)
            held.clear()
        elif len(held) >= MAX_HELD_LINES:
            raise RecordingFormatError(
                f"{os.fspath(path)}: no Binance symbol and market in the first "
                f"{MAX_HELD_LINES} lines"
            )
    if held:
        raise RecordingFormatError(
            f"{os.fspath(path)}: cannot tell the Binance symbol and market of any line"
        )


def _frame(conn_id: str, snapshot_url: str, ts: int, payload: bytes) -> Frame:
    if payload.startswith(_SNAPSHOT_PREFIX):
        return Frame(ts, conn_id, "rest", payload, snapshot_url)
    return Frame(ts, conn_id, "recv", payload)
