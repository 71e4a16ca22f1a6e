"""Serve recordings on loopback in Binance's, Deribit's, an Ethereum node's and mempool.space's own protocols.

The unmodified live connectors run against it: point their websocket and REST base
URLs at :meth:`ReplayServer.ws_url` and :meth:`ReplayServer.rest_url` (Deribit's
JSON-RPC websocket is ``ws_url() + "/ws/api/v2"``, what ``DeribitProtocol.stream_url``
appends; its behaviour is described in :mod:`connectors.replay.deribit`). An Ethereum
node's JSON-RPC is ``ws_url()`` itself (path ``/``, as on geth;
:mod:`connectors.replay.ethereum`) and mempool.space's websocket is ``ws_url() +
"/api/v1/ws"`` (:mod:`connectors.replay.mempool_space`).

Design
------
* **One port.** Websocket upgrades go to the stream handler; ``GET`` requests for the
  depth endpoints are answered from ``process_request`` during the HTTP handshake.
* **Markets.** Binance serves each market from its own host; one replay server serves
  every market in its recordings and tells them apart by an optional path prefix,
  ``/spot``, ``/usdm`` or ``/coinm``: ``ws://127.0.0.1:P/usdm/stream?streams=...`` and
  ``http://127.0.0.1:P/usdm/fapi/v1/depth?symbol=...``. Without a prefix a REST path
  names its market (``/api/v3`` spot, ``/fapi/v1`` USD-M, ``/dapi/v1`` COIN-M), and a
  websocket takes the one market whose recordings hold its symbols (then its streams).
  When two markets hold them (BTCUSDT on spot and on USD-M) the connection is closed
  with code 1008 asking for a prefix, so a server with one market needs none.
* **One clock.** The recordings play once, merged by receive time, as a live exchange
  would: the clock starts when the first client subscribes and keeps running while
  no client is connected, a client joining later sees the feed from where it is, and
  REST snapshots describe the book at the current replay position. ``speed=1`` keeps
  the recorded pace, ``speed=X`` is X times faster, ``speed=0`` sends as fast as the
  clients read: each send waits while the connection's write buffer is above its
  high-water mark, so the slowest reader sets the pace. A silence longer than
  ``max_gap_s`` of recorded time (between recordings of different days) is cut to
  ``max_gap_s``.
* **Streams.** ``/stream?streams=a/b`` sends frames exactly as recorded
  (``{"stream":...,"data":...}``); ``/ws/a/b`` and ``/ws`` send only ``data``.
  ``SUBSCRIBE``, ``UNSUBSCRIBE`` and ``LIST_SUBSCRIPTIONS`` are answered as Binance does.
  A stream of a symbol not in the recordings closes the connection with code 1008 and
  reason ``unknown symbol XYZ: ...``; an unrecorded stream of a known symbol
  (``btcusdt@aggTrade`` where only ``@trade`` was recorded) is accepted, stays silent
  and is logged as a warning.
* **End.** When a market's recordings end, its clients are closed with code 1000 and
  reason ``end of recording`` (:data:`END_OF_RECORDING`), and so is any later
  connection to it. Clients should treat that reason as final, not reconnect.
* **Depth snapshots.** ``GET /api/v3/depth`` (``/fapi/v1/depth``, ``/dapi/v1/depth``)
  returns the symbol's most recent recorded snapshot, byte for byte, until a later
  diff has been replayed; from then on the snapshot rebuilt from it by the diffs
  replayed since, with ``lastUpdateId`` the last applied ``u`` (futures ``E``/``T``
  from that diff). ``limit`` keeps the top levels of each side (default 100 spot, 500
  futures). Before the replay reaches a recorded snapshot the request waits for one,
  and so it does after a sequence break in the recording (the book is unknown until
  the next recorded snapshot); after ``snapshot_timeout_s`` it gets HTTP 503 with a
  JSON error. Unknown symbol: HTTP 400 ``{"code":-1121,"msg":"Invalid symbol."}``.
* **Deribit.** Websocket upgrades on ``/ws/api/v2`` speak Deribit's JSON-RPC
  (:mod:`connectors.replay.deribit`), on the same clock; ``GET
  /api/v2/public/get_instruments?currency=BTC[&kind=option]`` answers the listing
  over HTTP too.
* **Ethereum, mempool.space.** Websocket upgrades on ``/`` speak a node's JSON-RPC
  (``eth_subscribe``, ``eth_unsubscribe``, ``eth_getTransactionByHash``), on
  ``/api/v1/ws`` mempool.space's messages (``want``, ``track-mempool``, ``ping``), both
  on the same clock, from what ``volcast record --venue ethereum|bitcoin`` captured.
* Frames of other venues in the recordings are skipped.
"""

from __future__ import annotations

import asyncio
import errno
import http
import logging
import os
import signal
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from connectors.record.detect import merge_recordings
from connectors.record.frames import Frame, RecordingFormatError
from connectors.record.hftbacktest import decode_envelope
from connectors.replay.deribit import LISTING_PATH as DERIBIT_LISTING_PATH
from connectors.replay.deribit import PATH as DERIBIT_PATH
from connectors.replay.deribit import DeribitReplay
from connectors.replay.ethereum import PATH as ETHEREUM_PATH
from connectors.replay.ethereum import EthereumReplay
from connectors.replay.mempool_space import PATH as MEMPOOL_SPACE_PATH
from connectors.replay.mempool_space import MempoolSpaceReplay
from connectors.replay.state import (
    BITCOIN,
    DERIBIT,
    DIFF_STREAM,
    ETHEREUM,
    Catalog,
    RecordedBook,
    decode_diff,
    scan,
    snapshot_key,
    symbol_of,
)

log = logging.getLogger(__name__)

END_OF_RECORDING = "end of recording"
MARKETS = ("spot", "usdm", "coinm")
_DEPTH_PATHS = {"/api/v3/depth": "spot", "/fapi/v1/depth": "usdm", "/dapi/v1/depth": "coinm"}
_DEFAULT_LIMIT = {"spot": 100, "usdm": 500, "coinm": 500}
_YIELD_EVERY = 64  # frames between yields to REST handlers and new clients at full speed
_MAX_REASON_BYTES = 123  # RFC 6455 limit of a close reason
_MISSING_SYMBOL = "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."


class _Request(msgspec.Struct):
    method: str
    params: list[str] = []
    id: int | str | None = None


_request_decoder = msgspec.json.Decoder(_Request)
_Waiter = tuple["asyncio.Future[bytes | None]", int]  # a REST call waiting for a book, its limit


def _json(status: int, body: bytes | object) -> Response:
    data = body if isinstance(body, bytes) else msgspec.json.encode(body)
    headers = Headers(
        [
            ("Content-Type", "application/json;charset=UTF-8"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, data)


def _error(status: int, code: int, msg: str) -> Response:
    return _json(status, {"code": code, "msg": msg})


def _split_prefix(path: str) -> tuple[str | None, str]:
    """``/usdm/fapi/v1/depth`` -> ``("usdm", "/fapi/v1/depth")``; no prefix -> ``None``."""
    first, _, rest = path[1:].partition("/")
    if first in MARKETS:
        return first, "/" + rest
    return None, path


def _stream_names(names: Iterable[str]) -> list[str]:
    # Binance stream names are lower-case symbols and camelCase kinds (btcusdt@bookTicker).
    out = []
    for name in names:
        symbol, at, kind = name.partition("@")
        if symbol:
            out.append(symbol.lower() + at + kind)
    return out


class _Client:
    __slots__ = ("ws", "market", "combined", "streams")

    def __init__(self, ws: ServerConnection, market: str | None, combined: bool) -> None:
        self.ws = ws
        self.market = market
        self.combined = combined  # /stream sends the envelope, /ws only its data
        self.streams: set[str] = set()


class ReplayServer:
    """Replay Binance recordings to websocket and REST clients on one loopback port.

    >>> import asyncio
    >>> from pathlib import Path
    >>> data = Path(__file__).parents[2] / "tests/data/cryptofeed"
    >>> async def main():
    ...     async with ReplayServer([data / "BINANCE.ws.1.0"], speed=0) as server:
    ...         return server.markets["spot"]
    >>> asyncio.run(main())
    ('BLZETH', 'LRCBTC', 'NKNUSDT', 'RUNEEUR')
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        snapshot_timeout_s: float = 10.0,
        max_gap_s: float = 10.0,
        deribit_min_heartbeat_s: float = 10.0,
    ) -> None:
        self._paths = [Path(p) for p in paths]
        if not self._paths:
            raise ValueError("ReplayServer needs at least one recording")
        for path in self._paths:
            if not path.is_file():
                raise FileNotFoundError(errno.ENOENT, "no such recording", str(path))
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0: as fast as clients read), got {speed}")
        self._host, self._port, self._speed = host, port, speed
        self._snapshot_timeout_s = snapshot_timeout_s
        self._max_gap_ns = int(max_gap_s * 1e9)
        self._catalog = Catalog()
        self._server: Server | None = None
        self._replay_task: asyncio.Task[None] | None = None
        self._go = asyncio.Event()  # set by the first subscription: starts the clock
        self._clients: set[_Client] = set()
        self._subs: dict[tuple[str, str], set[_Client]] = defaultdict(set)
        self._books: dict[tuple[str, str], RecordedBook] = {}
        self._waiters: dict[tuple[str, str], list[_Waiter]] = defaultdict(list)
        self._ended: set[str] = set()  # markets whose recordings are over
        self._finished = False  # every market is over
        self._closing: set[asyncio.Task[None]] = set()  # close handshakes in flight
        self._deribit_min_heartbeat_s = deribit_min_heartbeat_s
        self._deribit: DeribitReplay | None = None  # when the recordings hold Deribit
        self._ethereum: EthereumReplay | None = None  # ... an Ethereum node
        self._mempool_space: MempoolSpaceReplay | None = None  # ... mempool.space
        self._position = (0, 0)  # (index, recorded receive ns) of the frame last played

    @property
    def port(self) -> int:
        """The bound port (the requested one before :meth:`start`)."""
        if self._server is None:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def markets(self) -> dict[str, tuple[str, ...]]:
        """Market -> recorded symbols, known after :meth:`start`."""
        return {m: tuple(sorted(i.symbols)) for m, i in sorted(self._catalog.markets.items())}

    @property
    def deribit(self) -> DeribitReplay | None:
        """The Deribit half (its sessions and counters), after :meth:`start`; None without
        Deribit recordings."""
        return self._deribit

    @property
    def ethereum(self) -> EthereumReplay | None:
        """The Ethereum node half (its clients), after :meth:`start`; None without one recorded."""
        return self._ethereum

    @property
    def mempool_space(self) -> MempoolSpaceReplay | None:
        """The mempool.space half (its clients), after :meth:`start`; None without one recorded."""
        return self._mempool_space

    def ws_url(self, market: str | None = None) -> str:
        """Websocket base URL; append ``/stream?streams=...`` or ``/ws/...`` (Binance),
        ``/ws/api/v2`` (Deribit), ``/api/v1/ws`` (mempool.space); an Ethereum node is
        this URL itself."""
        return f"ws://{self._host}:{self.port}" + (f"/{market}" if market else "")

    def rest_url(self, market: str | None = None) -> str:
        """REST base URL; append ``/api/v3/depth?...`` (or ``/fapi/v1``, ``/dapi/v1``)."""
        return f"http://{self._host}:{self.port}" + (f"/{market}" if market else "")

    async def start(self) -> None:
        """Index the recordings (one pass), then listen; ``OSError`` names a busy port."""
        self._catalog = await asyncio.to_thread(scan, self._paths)
        if not self._catalog.markets:
            names = ", ".join(str(p) for p in self._paths)
            raise RecordingFormatError(
                f"no Binance, Deribit, Ethereum node or mempool.space frames to replay in {names}")
        recorded = self._catalog.deribit
        self._position = (0, recorded.first_ns or 0)
        if DERIBIT in self._catalog.markets:
            self._deribit = DeribitReplay(
                recorded, self._go.set, lambda: self._position, self._deribit_min_heartbeat_s)
        if ETHEREUM in self._catalog.markets:
            self._ethereum = EthereumReplay(self._catalog.ethereum, self._go.set)
        if BITCOIN in self._catalog.markets:
            self._mempool_space = MempoolSpaceReplay(self._go.set)
        try:
            self._server = await serve(
                self._handle,
                self._host,
                self._port,
                process_request=self._process_request,
                compression=None,  # Binance does not offer permessage-deflate
                # A depth request may wait for the replay inside the handshake.
                open_timeout=self._snapshot_timeout_s + 5.0,
                # At speed 0 the client sets the pace; a consumer that stalls (a
                # full stdout pipe, a debugger) must not be cut off by a ping timeout.
                ping_interval=None,
            )
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)
            raise OSError(
                exc.errno, f"replay server cannot listen on {self._host}:{self._port}: {why}"
            ) from exc
        self._replay_task = asyncio.create_task(self._replay())
        log.info("replay server on %s: %s", self.ws_url(), ", ".join(
            f"{market} {', '.join(syms) if len(syms) <= 8 else f'{len(syms)} instruments'}"
            for market, syms in self.markets.items()))
        if self._ethereum is not None:
            log.info("Ethereum node (%s) on %s", ", ".join(sorted(self._catalog.ethereum.kinds)),
                     self.ws_url())
        if self._mempool_space is not None:
            log.info("mempool.space on %s%s", self.ws_url(), MEMPOOL_SPACE_PATH)

    async def close(self) -> None:
        """Stop the replay, answer waiting REST calls with 503, close every connection."""
        if self._replay_task is not None:
            self._replay_task.cancel()
            await asyncio.gather(self._replay_task, return_exceptions=True)
        for key in list(self._waiters):
            self._wake(key, None)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the server has been closed."""
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> ReplayServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # The replay: one pass over the merged recordings.

    async def _replay(self) -> None:
        await self._go.wait()
        loop = asyncio.get_running_loop()
        ends_at: dict[int, list[str]] = defaultdict(list)
        for market, info in self._catalog.markets.items():
            ends_at[info.last_index].append(market)
        frames = merge_recordings(self._paths)
        wall0 = loop.time()
        played_ns = 0  # recorded time played so far, silences cut to max_gap_s
        last_ns: int | None = None
        try:
            for i, frame in enumerate(frames):
                if last_ns is not None:
                    played_ns += min(max(frame.ts_recv_ns - last_ns, 0), self._max_gap_ns)
                last_ns = frame.ts_recv_ns
                delay = 0.0
                if self._speed > 0:
                    delay = wall0 + played_ns / (1e9 * self._speed) - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif i % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                self._position = (i, frame.ts_recv_ns)
                await self._play(frame)
                for market in ends_at.get(i, ()):
                    self._end(market)
        except RecordingFormatError as exc:
            # The scan read these files whole, so they changed since; never leave
            # clients waiting on a feed that will not come.
            log.error("replay stopped: %s", exc)
            self._finish(1011, "recording unreadable")
            return
        finally:
            frames.close()
        self._finish(1000, END_OF_RECORDING)

    async def _play(self, frame: Frame) -> None:
        if frame.kind == "rest":
            key = snapshot_key(frame)
            if key is not None:
                book = self._books.setdefault(key, RecordedBook())
                try:
                    book.on_snapshot(frame.payload)
                except msgspec.DecodeError as exc:
                    log.warning("skipping a malformed %s depth snapshot: %s", key, exc)
                self._wake(key, book)
            return
        market = self._catalog.conn_market.get(frame.conn_id)
        if market == DERIBIT:
            if frame.kind == "recv" and self._deribit is not None:
                await self._deribit.play(frame.payload)
            return
        if market == ETHEREUM:
            if self._ethereum is not None:
                await self._ethereum.play(frame)  # its sent requests name the subscriptions
            return
        if market == BITCOIN:
            if frame.kind == "recv" and self._mempool_space is not None:
                await self._mempool_space.play(frame.payload)
            return
        env = decode_envelope(frame.payload) if frame.kind == "recv" and market else None
        if market is None or env is None:
            return
        if DIFF_STREAM.fullmatch(env.stream):
            key = (market, symbol_of(env.stream))
            book = self._books.setdefault(key, RecordedBook())
            try:
                broken = book.on_diff(decode_diff(env.data))
            except msgspec.DecodeError as exc:
                broken = f"malformed diff ({exc})"
            if broken:
                log.warning(
                    "%s %s: the recording breaks the depth sequence (%s); REST depth "
                    "waits for the next recorded snapshot",
                    *key,
                    broken,
                )
        for client in list(self._subs.get((market, env.stream), ())):
            data = frame.payload if client.combined else bytes(env.data)
            try:
                await client.ws.send(data, text=True)
            except ConnectionClosed:
                self._drop(client)

    def _wake(self, key: tuple[str, str], book: RecordedBook | None) -> None:
        for fut, limit in self._waiters.pop(key, []):
            if not fut.done():
                fut.set_result(book.render(limit) if book is not None else None)

    def _close_client(self, client: _Client, code: int, reason: str) -> None:
        task = asyncio.create_task(client.ws.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _end(self, market: str, code: int = 1000, reason: str = END_OF_RECORDING) -> None:
        if market in self._ended:
            return
        self._ended.add(market)
        for key in [k for k in self._waiters if k[0] == market]:
            self._wake(key, None)
        for client in [c for c in self._clients if c.market == market]:
            self._close_client(client, code, reason)

    def _finish(self, code: int, reason: str) -> None:
        self._finished = True
        for market in self._catalog.markets:
            self._end(market, code, reason)
        for client in [c for c in self._clients if c.market is None]:
            self._close_client(client, code, reason)

    # Websocket clients.

    async def _handle(self, ws: ServerConnection) -> None:
        url = urlsplit(ws.request.path if ws.request is not None else "/")
        if url.path == DERIBIT_PATH and self._deribit is not None:
            await self._handle_one_endpoint(ws, DERIBIT, self._deribit.serve)
            return
        if url.path == ETHEREUM_PATH and self._ethereum is not None:
            await self._handle_one_endpoint(ws, ETHEREUM, self._ethereum.serve)
            return
        if url.path == MEMPOOL_SPACE_PATH and self._mempool_space is not None:
            await self._handle_one_endpoint(ws, BITCOIN, self._mempool_space.serve)
            return
        market, path = _split_prefix(url.path)
        combined = path == "/stream"
        raw_names = parse_qs(url.query).get("streams", [""])[0] if combined else path[3:]
        client = _Client(ws, market, combined)
        self._clients.add(client)
        try:
            if self._finished or market in self._ended:
                await ws.close(1000, END_OF_RECORDING)
                return
            names = _stream_names(raw_names.split("/"))
            if names:
                if not await self._admit(client, names):
                    return
                self._register(client, names)
            async for message in ws:
                await self._control(client, message)
        finally:
            self._drop(client)

    async def _handle_one_endpoint(self, ws: ServerConnection, venue: str,
                                   serve_client: Callable[[ServerConnection], Awaitable[None]]) -> None:
        client = _Client(ws, venue, False)  # so that _end/_finish close it too
        self._clients.add(client)
        try:
            if self._finished or venue in self._ended:
                await ws.close(1000, END_OF_RECORDING)
                return
            await serve_client(ws)
        finally:
            self._clients.discard(client)

    async def _admit(self, client: _Client, names: list[str]) -> bool:
        """Settle the client's market for ``names``, or close the connection saying why."""
        market, refusal = client.market, ""
        binance = [m for m in self._catalog.markets if m in MARKETS]
        if market is None and len(binance) == 1:
            market = binance[0]
        if market is None:
            market, refusal = self._infer_market(names)
        if market is not None:
            known = self._catalog.markets[market].symbols
            unknown = sorted({symbol_of(n) for n in names if not n.startswith("!")} - known)
            if unknown:
                # Binance accepts streams of symbols it does not list and sends nothing on
                # them; the REST depth call answers -1121 "Invalid symbol.", as here.
                log.warning("streams of unknown symbols %s stay silent (not in the %s recordings)",
                            ", ".join(unknown), market)
        if market is None:
            reason = refusal.encode()[:_MAX_REASON_BYTES].decode("ascii", "ignore")
            await client.ws.close(1008, reason)
            return False
        if market in self._ended:
            await client.ws.close(1000, END_OF_RECORDING)
            return False
        client.market = market
        return True

    def _infer_market(self, names: list[str]) -> tuple[str | None, str]:
        """The one market holding these streams' symbols (then streams), or why not."""
        symbols = {symbol_of(n) for n in names if not n.startswith("!")}
        markets = {m: info for m, info in self._catalog.markets.items() if m in MARKETS}
        found = [m for m in sorted(markets) if symbols <= markets[m].symbols]
        if len(found) > 1:
            found = [m for m in found if set(names) <= markets[m].streams] or found
        if len(found) == 1:
            return found[0], ""
        if found:
            prefixes = " or ".join(f"/{m}" for m in found)
            return None, f"{', '.join(sorted(symbols))} recorded in several markets: use {prefixes}"
        missing = sorted(symbols - set().union(*(info.symbols for info in markets.values())))
        if missing:
            return None, f"unknown symbol {missing[0]}: not in the recordings"
        return None, f"{', '.join(sorted(symbols))} are not all in one market's recordings"

    def _register(self, client: _Client, names: list[str]) -> None:
        if not names:
            return
        assert client.market is not None  # set by _admit
        recorded = self._catalog.markets[client.market].streams
        for name in names:
            if name not in recorded:
                log.warning("stream %s is not in the %s recordings: silent", name, client.market)
            client.streams.add(name)
            self._subs[(client.market, name)].add(client)
        self._go.set()

    def _drop(self, client: _Client) -> None:
        self._clients.discard(client)
        for name in client.streams:
            self._subs[(client.market or "", name)].discard(client)

    async def _control(self, client: _Client, message: str | bytes) -> None:
        """Answer a live-subscription message as Binance does."""
        try:
            req = _request_decoder.decode(message)
        except msgspec.DecodeError as exc:
            error = {"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}, "id": None}
            await client.ws.send(msgspec.json.encode(error), text=True)
            return
        names = _stream_names(req.params)
        reply: dict[str, object] = {"result": None, "id": req.id}
        if req.method == "SUBSCRIBE":
            if names and not await self._admit(client, names):
                return
        elif req.method == "UNSUBSCRIBE":
            for name in names:
                client.streams.discard(name)
                self._subs[(client.market or "", name)].discard(client)
        elif req.method == "LIST_SUBSCRIPTIONS":
            reply["result"] = sorted(client.streams)
        else:
            msg = f"Invalid request: unknown method {req.method!r}"
            reply = {"error": {"code": 2, "msg": msg}, "id": req.id}
        # The ack goes out before the first frame of a new stream, as on Binance.
        await client.ws.send(msgspec.json.encode(reply), text=True)
        if req.method == "SUBSCRIBE":
            self._register(client, names)

    # REST.

    async def _process_request(self, _: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        for path, venue, replay in ((ETHEREUM_PATH, "an Ethereum node", self._ethereum),
                                    (MEMPOOL_SPACE_PATH, "mempool.space", self._mempool_space)):
            if url.path == path:
                if replay is None:
                    return _error(404, -1, f"no recordings of {venue} on this replay server")
                return None  # go on with the websocket handshake
        if url.path in (DERIBIT_PATH, DERIBIT_LISTING_PATH):
            if self._deribit is None:
                return _error(404, -1, "no deribit recordings on this replay server")
            if url.path == DERIBIT_PATH:
                return None  # go on with the websocket handshake
            query = parse_qs(url.query)
            currency = query.get("currency", [""])[0]
            if not currency:
                return _json(400, {"jsonrpc": "2.0", "error": {
                    "code": -32602, "message": "Invalid params", "data": {"param": "currency"}}})
            return _json(200, self._deribit.listing_body(currency, query.get("kind", [None])[0]))
        prefix, path = _split_prefix(url.path)
        if path in _DEPTH_PATHS:
            return await self._depth(prefix, path, parse_qs(url.query))
        if path in ("/stream", "/ws") or path.startswith("/ws/"):
            if prefix is not None and prefix not in self._catalog.markets:
                return _error(404, -1, f"no {prefix} recordings on this replay server")
            return None  # go on with the websocket handshake
        return _error(404, -1, f"unknown path {url.path}")

    async def _depth(self, prefix: str | None, path: str, query: dict[str, list[str]]) -> Response:
        market = _DEPTH_PATHS[path]
        if prefix is not None and prefix != market:
            return _error(404, -1, f"{path} is a {market} endpoint, not {prefix}")
        info = self._catalog.markets.get(market)
        if info is None:
            return _error(404, -1, f"no {market} recordings on this replay server")
        symbol = query.get("symbol", [""])[0].upper()
        if not symbol:
            return _error(400, -1102, _MISSING_SYMBOL)
        if symbol not in info.symbols:
            return _error(400, -1121, "Invalid symbol.")
        limit_text = query.get("limit", [str(_DEFAULT_LIMIT[market])])[0]
        if not limit_text.isdigit() or int(limit_text) < 1:
            msg = f"Illegal characters found in parameter 'limit': {limit_text!r}"
            return _error(400, -1100, msg)
        key, limit = (market, symbol), int(limit_text)
        book = self._books.get(key)
        body = book.render(limit) if book is not None else None
        if body is None and market not in self._ended:
            fut: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
            self._waiters[key].append((fut, limit))
            try:
                body = await asyncio.wait_for(fut, self._snapshot_timeout_s)
            except TimeoutError:
                self._waiters[key] = [w for w in self._waiters[key] if w[0] is not fut]
        if body is None:
            why = (
                "the recording ended without one"
                if market in self._ended
                else f"none reached within {self._snapshot_timeout_s:g} s"
            )
            msg = f"no depth snapshot of {symbol} at the replay position: {why}"
            return _error(503, -1001, msg)
        return _json(200, body)


def serve_forever(
    paths: Iterable[str | os.PathLike[str]],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    speed: float = 1.0,
    on_ready: Callable[[ReplayServer], None] | None = None,
) -> None:
    """Run a replay server until SIGINT or SIGTERM (``volcast replay-server``).

    ``on_ready`` is called with the started server, e.g. to print its URLs.
    """
    server = ReplayServer(paths, host=host, port=port, speed=speed)  # Deribit: /ws/api/v2
    asyncio.run(_serve_until_signal(server, on_ready))


async def _serve_until_signal(
    server: ReplayServer, on_ready: Callable[[ReplayServer], None] | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        if on_ready is not None:
            on_ready(server)
        await stop.wait()
