"""Open any recording volcast reads, merge several by time, and tell a frame's venue.

>>> from pathlib import Path
>>> data = Path(__file__).parents[2] / "tests/data/cryptofeed"
>>> frames = merge_recordings([data / "BINANCE.ws.1.0", data / "BINANCE.http.0.0"])
>>> [f.kind for f in frames][:4]
['open', 'recv', 'rest', 'recv']
>>> detect_venue(Frame(0, "c", "open", b"", "wss://fstream.binance.com/stream?streams=x"))
('binance', 'usdm')
>>> detect_venue(Frame(0, "c", "sent", b'{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}'))
('ethereum', 'all')
"""

from __future__ import annotations

import gzip
import heapq
import os
import re
import zlib
from collections.abc import Generator, Iterable
from operator import attrgetter
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import msgspec

from connectors.record.cryptofeed import parse_line, read_cryptofeed
from connectors.record.frames import GZIP_MAGIC, Frame, RecordingFormatError
from connectors.record.hftbacktest import classify_binance, read_hftbacktest
from connectors.record.ticker_csv import is_ticker_csv_header, read_ticker_csv
from connectors.record.volcast_format import MAGIC, read_volcast

RecordingFormat = Literal["volcast", "hftbacktest", "cryptofeed", "deribit_ticker_csv"]

_READERS = {
    "volcast": read_volcast,
    "hftbacktest": read_hftbacktest,
    "cryptofeed": read_cryptofeed,
    "deribit_ticker_csv": read_ticker_csv,
}
_MAX_HEAD_BYTES = 1 << 20  # a first line longer than this is no recording of ours
_MAX_LEADING_BLANKS = 16
_HFTBACKTEST_LINE = re.compile(rb"\d+ [{\[]")

# Host -> (venue, market); market "all" where one endpoint serves every market.
_HOSTS: tuple[tuple[re.Pattern[str], tuple[str, str]], ...] = tuple(
    (re.compile(pattern), venue)
    for pattern, venue in (
        (
            r"(?:stream|api\d?)\.binance\.com|data-(?:stream|api)\.binance\.vision",
            ("binance", "spot"),
        ),
        (r"fstream(?:-auth)?\.binance\.com|fapi\.binance\.com", ("binance", "usdm")),
        (r"dstream\.binance\.com|dapi\.binance\.com", ("binance", "coinm")),
        (r"(?:[a-z0-9-]+\.)*deribit\.com", ("deribit", "all")),
        (r"(?:[a-z0-9-]+\.)*mempool\.space", ("bitcoin", "all")),
    )
)
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# Paths of volcast's replay server (connectors.replay.server): a market prefix or a
# Binance REST path tells the market of a recording made against it.
_LOOPBACK_PATHS = (
    ("/spot/", "spot"),
    ("/usdm/", "usdm"),
    ("/coinm/", "coinm"),
    ("/api/v3/", "spot"),
    ("/fapi/", "usdm"),
    ("/dapi/", "coinm"),
)
# The replay server's mempool.space path (mempool.space's own: /api/v1/ws).
MEMPOOL_SPACE_PATH = "/api/v1/ws"
# Top-level keys of mempool.space websocket messages, both ways (backend websocket-handler.ts).
_MEMPOOL_SPACE_KEYS = frozenset(
    {
        "action",  # a client's want/init/ping
        "block",
        "blocks",
        "da",
        "fees",
        "live-2h-chart",
        "mempool-blocks",
        "mempool-transactions",
        "mempool-txids",
        "mempoolInfo",
        "pong",
        "track-mempool",
        "track-mempool-txids",
        "vBytesPerSecond",
    }
)
_DERIBIT_CHANNELS = frozenset(
    {
        "announcements",
        "book",
        "chart",
        "deribit_price_index",
        "deribit_price_ranking",
        "deribit_price_statistics",
        "deribit_volatility_index",
        "estimated_expiration_price",
        "incremental_ticker",
        "instrument",
        "markprice",
        "perpetual",
        "platform_state",
        "quote",
        "ticker",
        "trades",
        "user",
    }
)


class _RpcParams(msgspec.Struct):
    channel: str = ""


class _Rpc(msgspec.Struct):
    jsonrpc: str
    method: str = ""
    params: msgspec.Raw = msgspec.Raw()  # an object (Deribit) or a list (Ethereum)


_rpc_decoder = msgspec.json.Decoder(_Rpc)
_params_decoder = msgspec.json.Decoder(_RpcParams)
_object_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _head(path: Path) -> bytes:
    """The first non-blank line of a plain or gzip file (at most 1 MiB of it)."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw) if magic == GZIP_MAGIC else raw
        try:
            for _ in range(_MAX_LEADING_BLANKS):
                line = stream.readline(_MAX_HEAD_BYTES)
                if line.strip() or not line:
                    return line
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise RecordingFormatError(f"{path}: corrupt gzip at its start ({exc})") from exc
    return b""


def sniff_format(path: str | os.PathLike[str]) -> RecordingFormat:
    """Which reader a file needs, from its first line; raises for anything else."""
    path = Path(path)
    line = _head(path)
    if line.startswith(MAGIC):
        return "volcast"
    if _HFTBACKTEST_LINE.match(line):
        return "hftbacktest"
    if line.startswith(b"configuration: ") or parse_line(line.rstrip(b"\r\n")) is not None:
        return "cryptofeed"
    if is_ticker_csv_header(line):
        return "deribit_ticker_csv"
    raise RecordingFormatError(
        f"{path}: not a recording volcast can read (first line: {line[:80]!r})"
    )


def open_recording(path: str | os.PathLike[str]) -> Generator[Frame, None, None]:
    """The frames of one recording in file order, its format detected from its content.

    Raises ``FileNotFoundError`` (naming the path) or :class:`RecordingFormatError`
    at once, before any frame is read.
    """
    return _READERS[sniff_format(path)](path)


def merge_recordings(paths: Iterable[str | os.PathLike[str]]) -> Generator[Frame, None, None]:
    """The frames of several recordings in receive-time order.

    Each file keeps its own order; frames with equal times come in ``paths`` order.
    Used to join a cryptofeed websocket file with its ``.http`` file, or a day's
    hftbacktest file with the next day's.
    """
    readers = [open_recording(p) for p in paths]
    return _merged(readers)


def _merged(readers: list[Generator[Frame, None, None]]) -> Generator[Frame, None, None]:
    try:
        yield from heapq.merge(*readers, key=attrgetter("ts_recv_ns"))
    finally:
        for reader in readers:
            reader.close()  # release the files when the caller stops early


def _venue_of_url(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    for pattern, venue in _HOSTS:
        if pattern.fullmatch(host):
            return venue
    if host in _LOOPBACK:
        if parts.path == "/ws/api/v2" or parts.path.startswith("/api/v2/"):
            return "deribit", "all"  # the replay server's Deribit endpoints
        if parts.path == MEMPOOL_SPACE_PATH:
            return "bitcoin", "all"
        for prefix, market in _LOOPBACK_PATHS:
            if parts.path.startswith(prefix) or parts.path == prefix.rstrip("/"):
                return "binance", market
    return None


def _venue_of_payload(payload: bytes) -> tuple[str, str] | None:
    try:
        rpc = _rpc_decoder.decode(payload)
    except msgspec.DecodeError:
        _, market = classify_binance(payload)
        if market:
            return "binance", market
        return ("bitcoin", "all") if _is_mempool_space(payload) else None
    if rpc.method.startswith(("public/", "private/")):
        return "deribit", "all"
    if rpc.method == "subscription":
        try:
            channel = _params_decoder.decode(rpc.params).channel if rpc.params else ""
        except msgspec.DecodeError:
            return None
        return ("deribit", "all") if channel.partition(".")[0] in _DERIBIT_CHANNELS else None
    if rpc.method.startswith("eth_"):  # eth_subscribe, eth_subscription, eth_getTransactionByHash
        return "ethereum", "all"
    return None


def _is_mempool_space(payload: bytes) -> bool:
    """A JSON object whose first key is one mempool.space sends or takes."""
    try:
        obj = _object_decoder.decode(payload)
    except msgspec.DecodeError:
        return False
    return next(iter(obj), None) in _MEMPOOL_SPACE_KEYS


def detect_venue(frame: Frame) -> tuple[str, str] | None:
    """``(venue, market)`` of a frame from its URL, else from its payload's shape.

    Binance markets are ``spot``, ``usdm`` and ``coinm``; Deribit, Ethereum (a node's
    JSON-RPC) and Bitcoin (mempool.space) are ``(venue, "all")``. ``None`` when the
    frame alone cannot tell (a subscription ack, a ``{"lastUpdateId":...}`` body
    without its URL, the opening of a node's loopback socket).

    >>> coinm = b'{"stream":"btcusd_perp@depth","data":{"s":"BTCUSD_PERP"}}'
    >>> detect_venue(Frame(0, "c", "recv", coinm))
    ('binance', 'coinm')
    >>> rpc = b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERP.raw"}}'
    >>> detect_venue(Frame(0, "c", "recv", rpc))
    ('deribit', 'all')
    >>> detect_venue(Frame(0, "c", "open", b"", "ws://127.0.0.1:8001/ws/api/v2"))
    ('deribit', 'all')
    >>> detect_venue(Frame(0, "c", "recv", b'{"mempoolInfo":{"size":1},"vBytesPerSecond":2}'))
    ('bitcoin', 'all')
    """
    if frame.url is not None:
        venue = _venue_of_url(frame.url)
        if venue is not None:
            return venue
    return _venue_of_payload(frame.payload)
