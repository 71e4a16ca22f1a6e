"""An Ethereum node's JSON-RPC websocket served from recordings (geth's path: the root, ``/``).

:class:`~connectors.replay.server.ReplayServer` routes websocket upgrades on ``/`` here
and hands every frame of a recorded node connection to :meth:`EthereumReplay.play` at
its replay time (the server's one clock). The recordings are what ``volcast record
--venue ethereum`` captured: the requests it sent (``sent`` frames) tell which recorded
subscription id was which subscription, and the node's answers and notifications
(``recv`` frames) are replayed. Per client, as geth answers (protocols.md §4.1):

* ``eth_subscribe ["newPendingTransactions"]`` / ``["newPendingTransactions", true]``
  / ``["newHeads"]`` -> a subscription id of this client (``0x`` + 32 hex digits, fresh
  per subscription as on geth), then an ``eth_subscription`` notification with that id
  for every recorded one of the kind from the replay position on. The first
  subscription starts the server's clock a moment later
  (:data:`~connectors.replay.clients.START_GRACE_S`), so that the subscriptions a
  client sends together (one request each) all see the first frame.
  Pending transactions go out as recorded:
  the full object when the recording holds it and the client asked with ``true``,
  else the hash (a hash-only recording stays hashes: the client looks them up).
  A kind the recordings never notified is accepted and stays silent (logged); any
  other name gets error -32601 ``no "x" subscription in eth namespace``.
* ``eth_unsubscribe [id]`` -> ``true``; an id this client does not hold -> error
  -32000 ``subscription not found``.
* ``eth_getTransactionByHash [hash]`` -> the recorded transaction object (from a full
  notification or from an answer to a recorded lookup, anywhere in the recordings),
  ``null`` when none was recorded.
* a JSON array is a batch: one answer per request, in one array.
* any other method -> error -32601 ``the method X does not exist/is not available``;
  unreadable JSON -> -32700; an element that is no request -> -32600.

Recorded results (transaction objects, headers, hashes) go out byte for byte inside the
rewritten envelope. The server holds every recorded transaction object in memory for
the lookups (about 1 KB each). When the recordings' last node frame has played, every
client is closed with 1000 ``end of recording``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator

import msgspec
from websockets.asyncio.server import ServerConnection

from connectors.record.frames import Frame
from connectors.replay.clients import ReplayClients

log = logging.getLogger(__name__)

PATH = "/"
PENDING = "newPendingTransactions"
HEADS = "newHeads"
KINDS = (PENDING, HEADS)


class _Rpc(msgspec.Struct):
    """A JSON-RPC request, response or notification: the members the replay reads."""

    jsonrpc: str = ""
    id: msgspec.Raw = msgspec.Raw(b"null")
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw()
    result: msgspec.Raw = msgspec.Raw()
    error: msgspec.Raw = msgspec.Raw()


class _Notification(msgspec.Struct):
    subscription: str
    result: msgspec.Raw


class _TxHash(msgspec.Struct):
    hash: str


_rpc = msgspec.json.Decoder(_Rpc)
_batch = msgspec.json.Decoder(list[msgspec.Raw])
_params = msgspec.json.Decoder(list[msgspec.Raw])
_notification = msgspec.json.Decoder(_Notification)
_tx_hash = msgspec.json.Decoder(_TxHash)
_string = msgspec.json.Decoder(str)
_bool = msgspec.json.Decoder(bool)


class Recorded(msgspec.Struct, frozen=True):
    """One recorded node answer worth replaying.

    ``kind``: ``newPendingTransactions`` or ``newHeads`` (a notification), or ``lookup``
    (the answer to a recorded ``eth_getTransactionByHash``). ``tx_hash`` is set for
    transactions; ``full`` says whether ``result`` is a whole transaction object (not
    just its hash).
    """

    kind: str
    result: bytes
    tx_hash: str | None = None
    full: bool = False


def _requests(payload: bytes) -> Iterator[_Rpc]:
    """The JSON-RPC objects of a frame (one, or a batch); nothing for garbage."""
    try:
        items = _batch.decode(payload) if payload.lstrip()[:1] == b"[" else [msgspec.Raw(payload)]
    except msgspec.DecodeError:
        return
    for item in items:
        try:
            yield _rpc.decode(item)
        except msgspec.DecodeError:
            continue


class RecordedSessions:
    """Follows recorded node connections (sans I/O): which subscription id was which kind.

    Fed every frame of the node's connections in recorded order, :meth:`route` returns
    the recorded notifications and lookup answers each ``recv`` frame holds.

    >>> r = RecordedSessions()
    >>> sub = b'{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}'
    >>> r.route(Frame(0, "c0", "sent", sub)) + r.route(Frame(1, "c0", "recv", b'{"id":1,"result":"0xab"}'))
    []
    >>> note = b'{"method":"eth_subscription","params":{"subscription":"0xab","result":{"number":"0x1"}}}'
    >>> r.route(Frame(2, "c0", "recv", note))
    [Recorded(kind='newHeads', result=b'{"number":"0x1"}', tx_hash=None, full=False)]
    """

    def __init__(self) -> None:
        self._asked: dict[tuple[str, bytes], tuple[str, str]] = {}  # (conn, id) -> (method, kind or hash)
        self._subs: dict[tuple[str, str], str] = {}  # (conn, subscription id) -> kind

    def route(self, frame: Frame) -> list[Recorded]:
        if frame.kind == "sent":
            for req in _requests(frame.payload):
                self._learn_request(frame.conn_id, req)
            return []
        if frame.kind != "recv":
            return []
        out: list[Recorded] = []
        for msg in _requests(frame.payload):
            if msg.method == "eth_subscription":
                found = self._notification(frame.conn_id, msg)
            else:
                found = self._answer(frame.conn_id, msg)
            if found is not None:
                out.append(found)
        return out

    def _learn_request(self, conn: str, req: _Rpc) -> None:
        try:
            params = _params.decode(req.params) if req.params else []
            if req.method == "eth_subscribe" and params:
                self._asked[(conn, bytes(req.id))] = ("eth_subscribe", _string.decode(params[0]))
            elif req.method == "eth_getTransactionByHash" and params:
                self._asked[(conn, bytes(req.id))] = ("lookup", _string.decode(params[0]))
        except msgspec.DecodeError:
            return

    def _answer(self, conn: str, msg: _Rpc) -> Recorded | None:
        asked = self._asked.pop((conn, bytes(msg.id)), None)
        if asked is None or msg.error or not msg.result:
            return None
        method, what = asked
        if method == "eth_subscribe":
            try:
                self._subs[(conn, _string.decode(msg.result))] = what
            except msgspec.DecodeError:
                pass
            return None
        result = bytes(msg.result)
        return Recorded("lookup", result, what, True) if result != b"null" else None

    def _notification(self, conn: str, msg: _Rpc) -> Recorded | None:
        try:
            note = _notification.decode(msg.params)
        except msgspec.DecodeError:
            return None
        kind = self._subs.get((conn, note.subscription))
        if kind not in KINDS:
            return None
        result = bytes(note.result)
        if kind == HEADS:
            return Recorded(HEADS, result)
        try:
            if result[:1] == b'"':
                return Recorded(PENDING, result, _string.decode(result), False)
            return Recorded(PENDING, result, _tx_hash.decode(result).hash, True)
        except msgspec.DecodeError:
            return None


class EthereumRecordings:
    """What the recordings hold of an Ethereum node: the kinds notified, and every
    recorded transaction object by hash (for ``eth_getTransactionByHash``)."""

    def __init__(self) -> None:
        self.kinds: set[str] = set()
        self.tx_objects: dict[str, bytes] = {}
        self.full_pending = False  # some pending transactions were recorded as whole objects
        self._sessions = RecordedSessions()

    def learn(self, frame: Frame) -> None:
        """Take one frame of a recorded node connection into account."""
        for rec in self._sessions.route(frame):
            if rec.kind in KINDS:
                self.kinds.add(rec.kind)
            if rec.full and rec.tx_hash is not None:
                self.tx_objects[rec.tx_hash.lower()] = rec.result
                self.full_pending |= rec.kind == PENDING


def _reply(id_: bytes, result: bytes) -> bytes:
    return b'{"jsonrpc":"2.0","id":' + id_ + b',"result":' + result + b"}"


def _error(id_: bytes, code: int, message: str) -> bytes:
    err = msgspec.json.encode({"code": code, "message": message})
    return b'{"jsonrpc":"2.0","id":' + id_ + b',"error":' + err + b"}"


class EthereumClient:
    """One client's JSON-RPC session (sans I/O): its subscriptions and its answers.

    >>> c = EthereumClient(EthereumRecordings(), new_id=lambda: "0x01")
    >>> c.answer(b'{"jsonrpc":"2.0","id":7,"method":"eth_subscribe","params":["newHeads"]}')
    b'{"jsonrpc":"2.0","id":7,"result":"0x01"}'
    >>> c.notify(Recorded("newHeads", b'{"number":"0x5"}'))
    b'{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x01","result":{"number":"0x5"}}}'
    >>> c.answer(b'{"jsonrpc":"2.0","id":8,"method":"eth_chainId","params":[]}')
    b'{"jsonrpc":"2.0","id":8,"error":{"code":-32601,"message":"the method eth_chainId does not exist/is not available"}}'
    """

    def __init__(self, recordings: EthereumRecordings,
                 new_id: Callable[[], str] = lambda: "0x" + secrets.token_hex(16)) -> None:
        self._recordings = recordings
        self._new_id = new_id
        self.subscriptions: dict[str, tuple[str, bool]] = {}  # id -> (kind, full objects)

    def answer(self, message: bytes | str) -> bytes:
        """The answer to one message: a request, or a batch of them."""
        data = message.encode() if isinstance(message, str) else message
        if data.lstrip()[:1] == b"[":
            try:
                items = _batch.decode(data)
            except msgspec.DecodeError as exc:
                return _error(b"null", -32700, f"parse error: {exc}")
            if not items:
                return _error(b"null", -32600, "empty batch")
            return b"[" + b",".join(self._one(bytes(item)) for item in items) + b"]"
        return self._one(data)

    def notify(self, rec: Recorded) -> bytes | None:
        """The notification this client gets for a recorded one (None: not subscribed)."""
        for sub, (kind, full) in self.subscriptions.items():
            if kind == rec.kind:
                result = rec.result
                if rec.kind == PENDING and rec.full and not full:
                    result = msgspec.json.encode(rec.tx_hash)
                return (b'{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"'
                        + sub.encode() + b'","result":' + result + b"}}")
        return None

    def _one(self, data: bytes) -> bytes:
        try:
            req = _rpc.decode(data)
        except msgspec.DecodeError as exc:
            if data.lstrip()[:1] == b"{":
                return _error(b"null", -32700, f"parse error: {exc}")
            return _error(b"null", -32600, "invalid request")
        id_ = bytes(req.id)
        if req.method is None:
            return _error(id_, -32600, "invalid request")
        try:
            params = _params.decode(req.params) if req.params else []
        except msgspec.DecodeError:
            return _error(id_, -32602, "invalid params: expected an array")
        try:
            if req.method == "eth_subscribe":
                return self._subscribe(id_, params)
            if req.method == "eth_unsubscribe":
                sub = _string.decode(params[0]) if params else ""
                if self.subscriptions.pop(sub, None) is None:
                    return _error(id_, -32000, "subscription not found")
                return _reply(id_, b"true")
            if req.method == "eth_getTransactionByHash":
                tx_hash = _string.decode(params[0]) if params else ""
                return _reply(id_, self._recordings.tx_objects.get(tx_hash.lower(), b"null"))
        except msgspec.DecodeError as exc:
            return _error(id_, -32602, f"invalid params: {exc}")
        return _error(id_, -32601, f"the method {req.method} does not exist/is not available")

    def _subscribe(self, id_: bytes, params: list[msgspec.Raw]) -> bytes:
        if not params:
            return _error(id_, -32602, "invalid params: expected a subscription name")
        kind = _string.decode(params[0])
        if kind not in KINDS:
            return _error(id_, -32601, f'no "{kind}" subscription in eth namespace')
        full = kind == PENDING and len(params) > 1 and _bool.decode(params[1])
        if kind not in self._recordings.kinds:
            log.info("ethereum: %s is not in the recordings; the subscription stays silent", kind)
        sub = self._new_id()
        self.subscriptions[sub] = (kind, full)
        return _reply(id_, msgspec.json.encode(sub))


class EthereumReplay:
    """The Ethereum half of a replay server: its clients and the recorded node sessions.

    Parameters
    ----------
    recordings
        What the scan found of an Ethereum node in the recordings.
    start
        Starts the server's clock (called shortly after the first subscription).
    """

    def __init__(self, recordings: EthereumRecordings, start: Callable[[], None]) -> None:
        self.recordings = recordings
        self._sessions = RecordedSessions()  # followed anew at replay time
        self._clients: ReplayClients[EthereumClient] = ReplayClients(start)

    async def play(self, frame: Frame) -> None:
        """A frame of a recorded node connection at its replay time."""
        for rec in self._sessions.route(frame):
            if rec.kind == "lookup":
                continue  # answers to the recording client only
            # Nothing goes out for a subscription once its eth_unsubscribe has been answered.
            await self._clients.broadcast(lambda client, rec=rec: client.notify(rec))

    async def serve(self, ws: ServerConnection) -> None:
        """Answer one client's requests until it or the server closes the connection."""
        await self._clients.serve(ws, EthereumClient(self.recordings), lambda c, m: [c.answer(m)],
                                  lambda c: bool(c.subscriptions))
