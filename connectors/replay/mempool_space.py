"""mempool.space's websocket (its own path, ``/api/v1/ws``) served from recordings.

:class:`~connectors.replay.server.ReplayServer` routes websocket upgrades on
``/api/v1/ws`` here and hands every message a recorded mempool.space connection
received to :meth:`MempoolSpaceReplay.play` at its replay time (the server's one
clock). Per client, as the backend's ``websocket-handler.ts`` does (mempool/mempool,
protocols.md §4.3):

* ``{"action":"want","data":[...]}`` sets the client's wants among ``blocks``,
  ``mempool-blocks``, ``stats``, ``live-2h-chart``, ``tomahawk`` (a want left out is
  dropped), and answers a newly wanted one at once with the latest replayed value:
  ``blocks``; ``mempool-blocks``; ``mempoolInfo``, ``vBytesPerSecond``, ``fees``, ``da``
  for ``stats``. ``{"track-mempool":true|false}`` and ``{"track-mempool-txids":...}``
  switch the per-transaction streams. The first want or track starts the clock
  :data:`~connectors.replay.clients.START_GRACE_S` later (a client sends its want and
  its track one after the other).
* ``{"action":"init"}`` -> every latest replayed member in one message (once blocks
  were replayed); ``{"action":"ping"}`` -> ``{"pong": true}``.
* Each replayed message goes to a client with the members it subscribed to: ``block``
  and ``blocks`` (want blocks), ``mempool-blocks``, ``mempoolInfo``/``vBytesPerSecond``/
  ``fees``/``da``/``transactions`` (want stats), ``live-2h-chart``, ``tomahawk``,
  ``mempool-transactions`` (track-mempool), ``mempool-txids``; ``loadingIndicators``
  and ``conversions`` to every client. A client that takes every member of a message
  gets its recorded bytes; otherwise the members it takes, serialized as the backend
  does (``{"key": value, ...}``, each value byte for byte). Answers to the recording
  client's own requests (``pong``, ``txPosition``, ``txConfirmed``, ...) are not
  replayed, and per-transaction tracking (``track-tx``, ``track-address``, ...) is
  accepted and stays silent.
* Unreadable JSON closes the connection (1008), as the backend closes it.

When the recordings' last mempool.space message has played, every client is closed
with 1000 ``end of recording``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import msgspec
from websockets.asyncio.server import ServerConnection

from connectors.record.detect import MEMPOOL_SPACE_PATH
from connectors.replay.clients import ReplayClients

log = logging.getLogger(__name__)

PATH = MEMPOOL_SPACE_PATH
WANTABLE = ("blocks", "mempool-blocks", "live-2h-chart", "stats", "tomahawk")
# Which subscription each member of a server message belongs to; None: every client.
MEMBER_SUBSCRIPTION: dict[str, str | None] = {
    "block": "blocks",
    "blocks": "blocks",
    "mempool-blocks": "mempool-blocks",
    "mempoolInfo": "stats",
    "vBytesPerSecond": "stats",
    "fees": "stats",
    "da": "stats",
    "transactions": "stats",
    "live-2h-chart": "live-2h-chart",
    "tomahawk": "tomahawk",
    "mempool-transactions": "track-mempool",
    "mempool-txids": "track-mempool-txids",
    "loadingIndicators": None,
    "conversions": None,
}
# Members of the backend's socket data (what ``init`` and a new want answer with).
STATE_MEMBERS = frozenset({
    "backend", "backendInfo", "blocks", "conversions", "da", "fees", "loadingIndicators",
    "mempool-blocks", "mempoolInfo", "rbfSummary", "transactions", "vBytesPerSecond",
})
INITIAL_BLOCKS = 8  # the backend's MEMPOOL.INITIAL_BLOCKS_AMOUNT default: blocks kept for a new want
_ANSWERS_TO_WANT = {
    "blocks": ("blocks",),
    "mempool-blocks": ("mempool-blocks",),
    "stats": ("mempoolInfo", "vBytesPerSecond", "fees", "da"),
}

_members = msgspec.json.Decoder(dict[str, msgspec.Raw])
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


def serialize(members: dict[str, bytes]) -> bytes:
    """Members as the backend's ``serializeResponse`` joins them (values byte for byte).

    >>> serialize({"pong": b"true", "fees": b'{"fastestFee":8}'})
    b'{"pong": true, "fees": {"fastestFee":8}}'
    """
    return b"{" + b", ".join(b'"' + key.encode() + b'": ' + value for key, value in members.items()) + b"}"


class SocketState:
    """The latest value of each socket-data member at the replay position (sans I/O).

    >>> state = SocketState()
    >>> state.play(b'{"blocks":[{"height":1}],"fees":{"fastestFee":8}}')
    {'blocks': b'[{"height":1}]', 'fees': b'{"fastestFee":8}'}
    >>> _ = state.play(b'{"block":{"height":2}}')
    >>> state.members["blocks"]
    b'[{"height":1},{"height":2}]'
    """

    def __init__(self) -> None:
        self.members: dict[str, bytes] = {}

    def play(self, payload: bytes) -> dict[str, bytes] | None:
        """A recorded message: its members (None if it is no JSON object); the state follows it."""
        try:
            found = {key: bytes(value) for key, value in _members.decode(payload).items()}
        except msgspec.DecodeError:
            return None
        for key, value in found.items():
            if key in STATE_MEMBERS:
                self.members[key] = value
        if "block" in found:  # a new block joins the recent blocks a new want gets
            try:
                blocks = _raw_list.decode(self.members.get("blocks", b"[]"))
            except msgspec.DecodeError:
                blocks = []
            recent = [bytes(b) for b in blocks][-(INITIAL_BLOCKS - 1):] + [found["block"]]
            self.members["blocks"] = b"[" + b",".join(recent) + b"]"
        return found


class _ClientMessage(msgspec.Struct):
    action: str | None = None
    data: list[str] | None = None
    track_mempool: bool | None = msgspec.field(default=None, name="track-mempool")
    track_mempool_txids: bool | None = msgspec.field(default=None, name="track-mempool-txids")
    refresh_blocks: bool | None = msgspec.field(default=None, name="refresh-blocks")


_client_message = msgspec.json.Decoder(_ClientMessage)


class MempoolSpaceClient:
    """One client's subscriptions and answers (sans I/O).

    >>> state = SocketState()
    >>> _ = state.play(b'{"mempoolInfo":{"size":5},"vBytesPerSecond":7}')
    >>> c = MempoolSpaceClient()
    >>> c.answer(b'{"action":"want","data":["stats"]}', state)
    [b'{"mempoolInfo": {"size":5}, "vBytesPerSecond": 7}']
    >>> c.answer(b'{"action":"ping"}', state)
    [b'{"pong": true}']
    >>> c.select({"mempoolInfo": b'{"size":6}', "txPosition": b"{}"}, b"...")
    b'{"mempoolInfo": {"size":6}}'
    """

    def __init__(self) -> None:
        self.subscriptions: set[str] = set()  # wants (blocks, stats, ...) and tracks (track-mempool)

    def answer(self, message: bytes | str, state: SocketState) -> list[bytes]:
        """The messages to send back; raises ``msgspec.DecodeError`` on unreadable JSON."""
        msg = _client_message.decode(message)
        response: dict[str, bytes] = {}
        if msg.action == "want" and msg.data is not None:
            for sub in WANTABLE:
                if sub in msg.data and sub not in self.subscriptions:
                    for key in _ANSWERS_TO_WANT.get(sub, ()):
                        if key in state.members:
                            response[key] = state.members[key]
                (self.subscriptions.add if sub in msg.data else self.subscriptions.discard)(sub)
        if msg.refresh_blocks and "blocks" in state.members:
            response["blocks"] = state.members["blocks"]
        for track, on in (("track-mempool", msg.track_mempool), ("track-mempool-txids", msg.track_mempool_txids)):
            if on is not None:
                (self.subscriptions.add if on else self.subscriptions.discard)(track)
        out = []
        if msg.action == "init" and "blocks" in state.members:
            out.append(serialize(state.members))
        if msg.action == "ping":
            response["pong"] = b"true"
        if response:
            out.append(serialize(response))
        return out

    def select(self, members: dict[str, bytes], payload: bytes) -> bytes | None:
        """What this client gets of a replayed message: the recorded bytes when it takes
        every member, else the members it takes; None when none."""
        taken = {key: value for key, value in members.items()
                 if key in MEMBER_SUBSCRIPTION and (MEMBER_SUBSCRIPTION[key] is None
                                                    or MEMBER_SUBSCRIPTION[key] in self.subscriptions)}
        if not taken:
            return None
        return payload if len(taken) == len(members) else serialize(taken)


class MempoolSpaceReplay:
    """The mempool.space half of a replay server: its clients and the replayed socket data.

    Parameters
    ----------
    start
        Starts the server's clock (called shortly after the first want or track).
    """

    def __init__(self, start: Callable[[], None]) -> None:
        self.state = SocketState()
        self._clients: ReplayClients[MempoolSpaceClient] = ReplayClients(start)
        self._not_replayed: set[str] = set()  # members logged once as answers to the recording client

    async def play(self, payload: bytes) -> None:
        """A message the recorded connection received, at its replay time."""
        members = self.state.play(payload)
        if members is None:
            return
        for key in members.keys() - MEMBER_SUBSCRIPTION.keys() - self._not_replayed:
            self._not_replayed.add(key)
            log.info("mempool.space: %r answered the recording client's own request; not replayed", key)
        # Each client's subscriptions as of its last answered message.
        await self._clients.broadcast(lambda client: client.select(members, payload))

    async def serve(self, ws: ServerConnection) -> None:
        """Answer one client's messages until it or the server closes the connection."""
        await self._clients.serve(ws, MempoolSpaceClient(), lambda c, m: c.answer(m, self.state),
                                  lambda c: bool(c.subscriptions))
