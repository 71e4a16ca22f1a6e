"""A websocket server that fans records out to subscribed clients.

Protocol (JSON text frames; ``ws://HOST:PORT``):

* client → server ``{"op": "subscribe", "topics": ["forecast.BTC"], "since_ts_ns": 0}``;
  topics are exact (``forecast.BTC``) or patterns (``forecast.*``, ``*``). With
  ``since_ts_ns`` the server first replays the records it still holds (the last
  ``history`` per topic) stamped after it, so a client that reconnects with the
  ``ts_ns`` of the last record it saw misses nothing that is still in memory.
  The same can be asked for in the URL: ``ws://HOST:PORT/?topics=forecast.*&since_ts_ns=0``.
* client → server ``{"op": "unsubscribe", "topics": [...]}``.
* server → client ``{"type": "subscribed", "topics": [...]}``,
  ``{"type": "error", "error": "..."}`` and one frame per record:
  ``{"type": "record", "topic": "forecast.BTC", "id": "BTC:...", "data": {...}}``
  (with ``format=msgpack`` record frames are binary msgpack of the same map).

Each client has a bounded queue. Publishing only ever enqueues (``put_nowait``);
a client whose queue is full is disconnected (close code 1008, "slow consumer")
and counted, so one slow reader never holds up the others or the dataflow.

With a ``token`` the handshake must carry ``Authorization: Bearer <token>`` (or
``?token=<token>`` for browsers, which cannot set headers); otherwise it is answered
401. The server binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import fnmatch
import hmac
import http
import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from connectors.sinks.message import Format, Message

log = logging.getLogger("volcast.sink.ws")

SLOW_CONSUMER = 1008

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


def record_frame(m: Message) -> bytes:
    """The frame of one record: the envelope around the already encoded payload.

    >>> from connectors.sinks.message import to_message
    >>> record_frame(to_message({"schema": "volcast.forecast/1", "id": "BTC:1", "ts_ns": 1, "underlying": "BTC"}))
    b'{"type":"record","topic":"forecast.BTC","id":"BTC:1","data":{"schema":"volcast.forecast/1","id":"BTC:1","ts_ns":1,"underlying":"BTC"}}'
    """
    if m.format == "msgpack":
        return _msgpack.encode({"type": "record", "topic": m.topic, "id": m.id, "data": msgspec.Raw(m.payload)})
    return b"".join(
        (b'{"type":"record","topic":', _json.encode(m.topic), b',"id":', _json.encode(m.id), b',"data":', m.payload, b"}")
    )


class _Client:
    __slots__ = ("_cache", "patterns", "peer", "queue", "sender", "ws")

    def __init__(self, ws: ServerConnection, maxsize: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes | str] = asyncio.Queue(maxsize=maxsize)
        self.patterns: set[str] = set()
        self._cache: dict[str, bool] = {}
        self.sender: asyncio.Task[None] | None = None
        addr = ws.remote_address
        self.peer = f"{addr[0]}:{addr[1]}" if addr else "?"

    def wants(self, topic: str) -> bool:
        hit = self._cache.get(topic)
        if hit is None:
            hit = any(fnmatch.fnmatchcase(topic, p) for p in self.patterns)
            self._cache[topic] = hit
        return hit

    def set_patterns(self, patterns: set[str]) -> None:
        self.patterns = patterns
        self._cache.clear()


class WsServer:
    """The publisher behind ``ws://`` sinks (see the module docstring for the protocol)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        token: str | None = None,
        client_queue: int = 1024,
        history: int = 256,
        format: Format = "json",
        write_limit: int = 2**16,
    ) -> None:
        self.host = host
        self.port = port
        self._token = token
        self._client_queue = client_queue
        self._history: collections.defaultdict[str, collections.deque[tuple[int, bytes]]] = (
            collections.defaultdict(lambda: collections.deque(maxlen=history))
        )
        self._history_len = history
        self._format = format
        self._write_limit = write_limit
        self._clients: set[_Client] = set()
        self._server: Server | None = None
        self.clients_total = 0
        self.slow_disconnects = 0
        self.rejected = 0

    def extra_stats(self) -> dict[str, float]:
        return {
            "clients": float(len(self._clients)),
            "slow_disconnects": float(self.slow_disconnects),
            "rejected": float(self.rejected),
        }

    async def open(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._authorize if self._token else None,
            compression=None,
            max_size=2**16,  # clients only send small control messages
            ping_interval=20,
            ping_timeout=20,
            close_timeout=1,
            write_limit=self._write_limit,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("websocket sink listening on ws://%s:%d", self.host, self.port)

    async def connect(self) -> None:
        return None

    async def publish(self, messages: list[Message]) -> int:
        for m in messages:
            frame = record_frame(m)
            if self._history_len:
                self._history[m.topic].append((m.ts_ns, frame))
            for client in list(self._clients):
                if client.wants(m.topic):
                    self._push(client, frame)
        return 0

    async def close(self) -> None:
        # Give connected clients a moment to receive what is queued, then close.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while loop.time() < deadline and any(not c.queue.empty() for c in self._clients):
            await asyncio.sleep(0.01)
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 3.0)
            except TimeoutError:
                pass

    # -- connections ---------------------------------------------------------------

    def _authorize(self, connection: ServerConnection, request: Request) -> Response | None:
        assert self._token is not None
        given = ""
        auth = request.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        else:
            given = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        if hmac.compare_digest(given.encode(), self._token.encode()):
            return None
        self.rejected += 1
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token\n")

    async def _handle(self, ws: ServerConnection) -> None:
        client = _Client(ws, self._client_queue)
        self.clients_total += 1
        self._clients.add(client)
        client.sender = asyncio.create_task(self._send_loop(client))
        try:
            query = parse_qs(urlsplit(ws.request.path if ws.request else "/").query)
            if "topics" in query:
                topics = [t for v in query["topics"] for t in v.split(",") if t]
                since = query.get("since_ts_ns", [None])[0]
                self._subscribe(client, topics, int(since) if since and since.lstrip("-").isdigit() else None)
            async for raw in ws:
                self._on_control(client, raw)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            client.sender.cancel()

    def _on_control(self, client: _Client, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
            op = msg.get("op")
            topics = msg.get("topics", [])
            if not isinstance(topics, list) or not all(isinstance(t, str) and t for t in topics):
                raise ValueError("topics must be a list of non-empty strings")
        except (ValueError, AttributeError) as exc:
            self._reply(client, {"type": "error", "error": f"bad request: {exc}"})
            return
        if op == "subscribe":
            since = msg.get("since_ts_ns")
            self._subscribe(client, topics, since if isinstance(since, int) else None)
        elif op == "unsubscribe":
            client.set_patterns(client.patterns - set(topics))
            self._reply(client, {"type": "subscribed", "topics": sorted(client.patterns)})
        else:
            self._reply(client, {"type": "error", "error": f"unknown op {op!r} (subscribe, unsubscribe)"})

    def _subscribe(self, client: _Client, topics: list[str], since_ts_ns: int | None) -> None:
        new = set(topics) - client.patterns
        client.set_patterns(client.patterns | set(topics))
        self._reply(client, {"type": "subscribed", "topics": sorted(client.patterns)})
        if since_ts_ns is None or not new:
            return
        # Replay what is still held, oldest first, at most half the client's queue.
        backlog = sorted(
            (ts, frame)
            for topic, frames in self._history.items()
            if any(fnmatch.fnmatchcase(topic, p) for p in new)
            for ts, frame in frames
            if ts > since_ts_ns
        )[-(self._client_queue // 2) :]
        for _ts, frame in backlog:
            self._push(client, frame)

    def _reply(self, client: _Client, msg: dict[str, Any]) -> None:
        self._push(client, json.dumps(msg, separators=(",", ":")))

    def _push(self, client: _Client, frame: bytes | str) -> None:
        if client not in self._clients:
            return
        try:
            client.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._drop_slow(client)

    def _drop_slow(self, client: _Client) -> None:
        self._clients.discard(client)
        self.slow_disconnects += 1
        if client.sender is not None:
            client.sender.cancel()
        log.info("ws client %s disconnected: slow consumer (%d messages queued)", client.peer, client.queue.qsize())
        asyncio.get_running_loop().create_task(self._close_slow(client))

    async def _close_slow(self, client: _Client) -> None:
        try:
            await asyncio.wait_for(client.ws.close(SLOW_CONSUMER, "slow consumer"), 1.0)
        except (TimeoutError, ConnectionClosed, OSError):
            pass
        finally:
            if client.ws.transport is not None:
                client.ws.transport.abort()

    async def _send_loop(self, client: _Client) -> None:
        text = self._format == "json"
        try:
            while True:
                frame = await client.queue.get()
                if isinstance(frame, bytes) and text:
                    await client.ws.send(frame, text=True)
                else:
                    await client.ws.send(frame)
        except ConnectionClosed:
            pass
