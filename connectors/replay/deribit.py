"""Deribit's JSON-RPC websocket (``/ws/api/v2``) served from recordings.

:class:`~connectors.replay.server.ReplayServer` routes websocket upgrades on
``/ws/api/v2`` here and hands every recorded Deribit notification to :meth:`DeribitReplay.play`
at its replay time (the server's one clock). Per client, as Deribit does:

* ``public/set_heartbeat`` -> ``"ok"``; then a ``heartbeat``/``test_request`` every
  interval (wall clock). A client that has not answered the previous one with
  ``public/test`` by the next is closed (1008 ``heartbeat test_request not
  answered``). Intervals under ``min_heartbeat_s`` (Deribit: 10) get error -32602.
* ``public/test`` -> ``{"version": "volcast-replay"}``; ``public/get_time`` -> the
  replay position in ms.
* ``public/get_instruments`` -> a recorded listing (a REST ``DERIBIT.0``-style
  response, or the answer to a recorded request), filtered by ``kind``; else one
  built from the instrument names in the recorded channels. ``usIn``/``usOut`` of
  every answer are recorded times (the listing's own, else the replay position), so
  a client's exchange clock stays in the recording's time.
* ``public/subscribe`` -> the ack lists only channels the recordings know (with
  notifications, or listed by a recorded ack: subscribed but silent); an unknown
  channel is left out silently, as Deribit does. The first subscription of a known
  channel starts the server's clock. A book channel subscribed after
  its recorded snapshot was played gets a snapshot of the recorded book at the
  replay position (then the recorded changes), as a live resubscription would.
* ``public/unsubscribe`` -> the channels actually unsubscribed.
* anything else -> error -32601; unreadable JSON -> -32700.

Recorded notifications go out byte for byte. When the recordings' last Deribit frame
has played, the server closes every Deribit client with 1000 ``end of recording``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from connectors.replay.state import DeribitRecordings, RecordedDeribitBook, decode_rpc

log = logging.getLogger(__name__)

PATH = "/ws/api/v2"
LISTING_PATH = "/api/v2/public/get_instruments"
VERSION = "volcast-replay"
TEST_REQUEST = '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}'


class _Request(msgspec.Struct):
    method: str
    id: int | str | None = None
    params: msgspec.Raw = msgspec.Raw()


class _HeartbeatParams(msgspec.Struct):
    interval: float


class _ChannelsParams(msgspec.Struct):
    channels: list[str] = []


class _ListingParams(msgspec.Struct):
    currency: str
    kind: str | None = None
    expired: bool = False


_request = msgspec.json.Decoder(_Request)
_heartbeat = msgspec.json.Decoder(_HeartbeatParams)
_channels = msgspec.json.Decoder(_ChannelsParams)
_listing = msgspec.json.Decoder(_ListingParams)
_encode = msgspec.json.encode


class _Session:
    """One Deribit client: its channels, its heartbeat and a lock that keeps its frames
    in order (a resubscription's snapshot before the changes that follow it)."""

    __slots__ = ("channels", "heartbeat", "lock", "test_pending", "tests_answered", "ws")

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.channels: set[str] = set()
        self.lock = asyncio.Lock()
        self.heartbeat: asyncio.Task[None] | None = None
        self.test_pending = False
        self.tests_answered = 0


class DeribitReplay:
    """The Deribit half of a replay server: clients, their channels, the recorded books.

    Parameters
    ----------
    recordings
        What the scan found of Deribit in the recordings.
    start
        Called on the first subscription of a recorded channel (starts the clock).
    position
        ``(frame index, recorded receive time in ns)`` of the replay position now.
    min_heartbeat_s
        The smallest ``set_heartbeat`` interval accepted (Deribit: 10).
    """

    def __init__(self, recordings: DeribitRecordings, start: Callable[[], None],
                 position: Callable[[], tuple[int, int]], min_heartbeat_s: float = 10.0) -> None:
        self.recordings = recordings
        self._known = recordings.known
        self._start = start
        self._position = position
        self._min_heartbeat_s = min_heartbeat_s
        self._subs: dict[str, set[_Session]] = defaultdict(set)
        self._books: dict[str, RecordedDeribitBook] = {}
        self.sessions: set[_Session] = set()
        self.tests_answered = 0  # public/test calls answered, over all sessions (for tests)

    # The replay.

    async def play(self, payload: bytes) -> None:
        """A recorded frame at its replay time: update its book, send it to subscribers."""
        method, channel, data = decode_rpc(payload)
        if method != "subscription" or channel is None:
            return  # a recorded ack, heartbeat or reply: not for replay
        if channel.startswith("book.") and channel.count(".") == 2:
            book = self._books.setdefault(channel, RecordedDeribitBook())
            try:
                broken = book.on_data(bytes(data))
            except msgspec.DecodeError as exc:
                broken = f"malformed book data ({exc})"
            if broken:
                log.warning("%s: the recording breaks the change_id chain (%s); a late "
                            "subscription gets no snapshot until the next recorded one",
                            channel, broken)
        subscribers = self._subs.get(channel)
        if not subscribers:
            return
        text = payload.decode()
        for session in list(subscribers):
            try:
                async with session.lock:
                    await session.ws.send(text)
            except ConnectionClosed:
                self._drop(session)

    # One client.

    async def serve(self, ws: ServerConnection) -> None:
        """Answer one client's requests until it or the server closes the connection."""
        session = _Session(ws)
        self.sessions.add(session)
        try:
            async for message in ws:
                await self._answer(session, message)
        except ConnectionClosed:
            pass
        finally:
            self._drop(session)

    def _drop(self, session: _Session) -> None:
        self.sessions.discard(session)
        for ch in session.channels:
            self._subs[ch].discard(session)
        session.channels = set()
        if session.heartbeat is not None:
            session.heartbeat.cancel()
            session.heartbeat = None

    async def _send(self, session: _Session, doc: dict[str, object]) -> None:
        async with session.lock:
            await session.ws.send(_encode(doc).decode())

    def _reply(self, id_: object, result: object) -> dict[str, object]:
        us = self._now_us()
        return {"jsonrpc": "2.0", "id": id_, "result": result, "usIn": us, "usOut": us,
                "usDiff": 0, "testnet": False}

    @staticmethod
    def _error(id_: object, code: int, message: str, reason: str | None = None) -> dict[str, object]:
        err: dict[str, object] = {"code": code, "message": message}
        if reason is not None:
            err["data"] = {"reason": reason}
        return {"jsonrpc": "2.0", "id": id_, "error": err, "testnet": False}

    def _now_us(self) -> int:
        return self._position()[1] // 1000

    async def _answer(self, session: _Session, message: str | bytes) -> None:
        try:
            req = _request.decode(message)
        except msgspec.DecodeError as exc:
            await self._send(session, self._error(None, -32700, "parse error", str(exc)))
            return
        method, id_ = req.method, req.id
        try:
            if method == "public/subscribe":
                await self._subscribe(session, id_, _channels.decode(req.params).channels)
            elif method == "public/unsubscribe":
                await self._unsubscribe(session, id_, _channels.decode(req.params).channels)
            elif method == "public/test":
                session.test_pending = False
                session.tests_answered += 1
                self.tests_answered += 1
                await self._send(session, self._reply(id_, {"version": VERSION}))
            elif method == "public/set_heartbeat":
                await self._set_heartbeat(session, id_, _heartbeat.decode(req.params).interval)
            elif method == "public/disable_heartbeat":
                if session.heartbeat is not None:
                    session.heartbeat.cancel()
                    session.heartbeat = None
                await self._send(session, self._reply(id_, "ok"))
            elif method == "public/get_instruments":
                p = _listing.decode(req.params)
                await self._send_raw(session, self.listing_body(p.currency, p.kind, id_))
            elif method == "public/get_time":
                await self._send(session, self._reply(id_, self._now_us() // 1000))
            else:
                await self._send(session, self._error(id_, -32601, "Method not found"))
        except msgspec.DecodeError as exc:
            await self._send(session, self._error(id_, -32602, "Invalid params", str(exc)))

    async def _send_raw(self, session: _Session, body: bytes) -> None:
        async with session.lock:
            await session.ws.send(body.decode())

    def listing_body(self, currency: str, kind: str | None, id_: object = None) -> bytes:
        """A ``get_instruments`` answer (with ``id_``; None for the REST endpoint)."""
        index, _ = self._position()
        items, us_in, us_out = self.recordings.answer_listing(currency, kind, index, self._now_us())
        head = b'{"jsonrpc":"2.0",' + (b'"id":' + _encode(id_) + b"," if id_ is not None else b"")
        tail = (b'],"usIn":' + str(us_in).encode() + b',"usOut":' + str(us_out).encode()
                + b',"usDiff":' + str(max(0, us_out - us_in)).encode() + b',"testnet":false}')
        return head + b'"result":[' + b",".join(items) + tail

    async def _subscribe(self, session: _Session, id_: object, channels: list[str]) -> None:
        known = self._known
        accepted = [ch for ch in dict.fromkeys(channels) if ch in known]
        unknown = [ch for ch in channels if ch not in known]
        if unknown:
            log.info("deribit: %d channel(s) not in the recordings, left out of the ack: %s",
                     len(unknown), ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else ""))
        async with session.lock:
            await session.ws.send(_encode(self._reply(id_, accepted)).decode())
            snapshots = []
            for ch in accepted:  # no await: registration and snapshots see one book state
                if ch in session.channels:
                    continue
                session.channels.add(ch)
                self._subs[ch].add(session)
                book = self._books.get(ch)
                snap = book.render(ch) if book is not None else None
                if snap is not None:
                    snapshots.append(snap)
            for snap in snapshots:
                await session.ws.send(snap.decode())
        if accepted:
            self._start()

    async def _unsubscribe(self, session: _Session, id_: object, channels: list[str]) -> None:
        removed = [ch for ch in dict.fromkeys(channels) if ch in session.channels]
        for ch in removed:
            session.channels.discard(ch)
            self._subs[ch].discard(session)
        await self._send(session, self._reply(id_, removed))

    async def _set_heartbeat(self, session: _Session, id_: object, interval: float) -> None:
        if interval < self._min_heartbeat_s:
            reason = f"interval must be >= {self._min_heartbeat_s:g}"
            await self._send(session, self._error(id_, -32602, "Invalid params", reason))
            return
        if session.heartbeat is not None:
            session.heartbeat.cancel()
        session.test_pending = False
        session.heartbeat = asyncio.create_task(self._heartbeats(session, interval))
        await self._send(session, self._reply(id_, "ok"))

    async def _heartbeats(self, session: _Session, interval: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                if session.test_pending:
                    log.info("deribit: a client missed a heartbeat test_request; closing it")
                    await session.ws.close(1008, "heartbeat test_request not answered")
                    return
                session.test_pending = True
                async with session.lock:
                    await session.ws.send(TEST_REQUEST)
        except ConnectionClosed:
            pass
