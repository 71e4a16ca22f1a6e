"""Sans-I/O Ethereum core: ``eth_subscribe`` newPendingTransactions (full) + newHeads.

On every ``connection_opened`` the subscriptions start over (geth: they die with the
connection) and two requests are queued::

    {"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newPendingTransactions",true]}
    {"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["newHeads"]}

Subscription ids come from the responses (matched by request id). A node that sends
only hashes (a string ``result``) gets batched ``eth_getTransactionByHash`` lookups
(one JSON-RPC batch array per frame, at most ``lookup_batch`` per frame and at most
``max_outstanding_lookups`` queued + in flight; the rest are dropped and counted).
A node refusing the ``true`` parameter gets a plain ``["newPendingTransactions"]``.

>>> p = EthereumProtocol()
>>> _ = p.connection_opened(1)
>>> p.frames_to_send()[1]
'{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["newHeads"]}'
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import msgspec

from connectors.events import ChainHead, Event, FeedStatus, MempoolTx
from connectors.record.frames import Frame
from connectors.venues.base import ProtocolStats, RestRequest
from connectors.venues.ethereum import parse, schemas

log = logging.getLogger("volcast.connectors.ethereum")

PENDING = "newPendingTransactions"
HEADS = "newHeads"


class EthereumProtocol:
    venue = "ethereum"
    symbol = "ETH"
    rest_base = ""

    def __init__(
        self,
        ws_url: str = "ws://127.0.0.1:8545",
        *,
        full_tx: bool = True,
        lookup_batch: int = 50,
        max_outstanding_lookups: int = 1000,
    ) -> None:
        self.ws_url = ws_url
        self.full_tx = full_tx
        self.lookup_batch = lookup_batch
        self.max_outstanding_lookups = max_outstanding_lookups
        self.fatal_error: str | None = None
        self._next_id = 1
        self._out: list[str] = []
        self._requests: dict[int, tuple[str, Any]] = {}  # id -> ("subscribe", kind) | ("lookup", hash)
        self._subs: dict[str, str] = {}  # subscription id -> kind
        self._full_pending = full_tx  # this connection still asks for full objects
        self._lookups: deque[str] = deque()
        self._in_flight = 0
        self.base_fee_next: int | None = None
        self.head_height: int | None = None
        self._stats = ProtocolStats(venue=self.venue)
        self._enc = msgspec.json.Encoder()

    # -- shell interface ------------------------------------------------------------
    def stream_url(self, ws_base: str | None = None) -> str:
        return ws_base or self.ws_url

    def rest_requests(self) -> list[RestRequest]:
        return []

    def receive_rest(self, url: str, status: int, body: bytes, ts_recv_ns: int) -> list[Event]:
        return []

    def frames_to_send(self) -> list[str]:
        self._flush_lookups()
        out, self._out = self._out, []
        return out

    def feed_frame(self, frame: Frame) -> list[Event]:
        if frame.kind == "recv":
            return self.receive_frame(frame.payload, frame.ts_recv_ns)
        if frame.kind == "open":
            return self.connection_opened(frame.ts_recv_ns)
        if frame.kind == "close":
            return self.connection_lost(frame.ts_recv_ns, frame.payload.decode("utf-8", "replace"))
        return []

    def stats(self) -> ProtocolStats:
        """A copy of the counters."""
        s = self._stats
        return msgspec.structs.replace(s, ignored=dict(s.ignored), errors=list(s.errors))

    def subscriptions(self) -> dict[str, str]:
        """Live subscription id -> kind (``newPendingTransactions`` / ``newHeads``)."""
        return dict(self._subs)

    # -- connection -----------------------------------------------------------------
    def connection_opened(self, ts_recv_ns: int) -> list[Event]:
        self._stats.connections += 1
        self._reset()
        self._full_pending = self.full_tx
        self._subscribe(PENDING, [PENDING, True] if self.full_tx else [PENDING])
        self._subscribe(HEADS, [HEADS])
        return [self._status("connected", ts_recv_ns)]

    def connection_lost(self, ts_recv_ns: int, reason: str) -> list[Event]:
        self._reset()
        return [self._status("disconnected", ts_recv_ns, reason)]

    def _reset(self) -> None:
        self._subs.clear()
        self._requests.clear()
        self._lookups.clear()
        self._in_flight = 0
        self._out = []

    # -- frames ---------------------------------------------------------------------
    def receive_frame(self, data: bytes | str, ts_recv_ns: int) -> list[Event]:
        self._stats.frames += 1
        try:
            msg = msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeError) as exc:
            return self._malformed(f"undecodable frame: {exc}", data)
        out: list[Event] = []
        for item in msg if isinstance(msg, list) else [msg]:
            try:
                out.extend(self._message(item, ts_recv_ns))
            except (ValueError, TypeError, KeyError, AttributeError, msgspec.ValidationError) as exc:
                self._malformed(f"bad message: {exc!r}", data)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the feed
                self._stats.internal_errors += 1
                self._stats.note_error(f"internal: {exc!r}", data)
                log.exception("ethereum: internal error on a frame")
        return out

    def _message(self, msg: Any, ts: int) -> list[Event]:
        if not isinstance(msg, dict):
            return self._malformed(f"not an object: {msg!r:.80}")
        if msg.get("method") == "eth_subscription":
            params = msg["params"]
            kind = self._subs.get(params["subscription"])
            if kind is None:
                # A subscription this connection never made, or one given up on.
                self._ignore("unknown_subscription", str(params["subscription"]))
                return []
            result = params["result"]
            if kind == HEADS:
                return [self._head(msgspec.convert(result, schemas.RpcHeader), ts)]
            if isinstance(result, str):
                self._queue_lookup(result)
                return []
            return [self._tx(msgspec.convert(result, schemas.RpcTx), ts)]
        if "id" in msg:
            return self._response(msg, ts)
        self._ignore("unexpected_message")
        return []

    def _response(self, msg: dict, ts: int) -> list[Event]:
        req = self._requests.pop(msg["id"], None) if isinstance(msg["id"], int) else None
        if req is None:
            self._ignore("unknown_response_id", repr(msg["id"]))
            return []
        what, arg = req
        if what == "lookup":
            self._in_flight -= 1
        if "error" in msg:
            self._stats.count_ignored("rpc_errors")
            text = f"node refused {what} {arg!r}: {msg['error']!r:.200}"
            if self._stats.note_error(text):
                log.warning("ethereum: %s", text)
            if what != "subscribe":
                return []  # a lookup: that transaction is lost, counted above
            if arg == PENDING and self._full_pending:
                # The node does not take the full-tx flag: fall back to hashes.
                self._full_pending = False
                self._subscribe(PENDING, [PENDING])
                return [self._status("error", ts, f"{PENDING} with full objects refused; asking for hashes")]
            return [self._status("error", ts, f"{arg} refused: {msg['error']!r:.120}")]
        result = msg.get("result")
        if what == "subscribe":
            if not isinstance(result, str):
                return self._malformed(f"subscription id not a string: {result!r:.80}")
            self._subs[result] = arg
            return [self._status("synced", ts, f"subscribed {arg}")] if len(self._subs) == 2 else []
        if result is None:
            self._ignore("lookup_not_found")  # mined or dropped before we asked
            return []
        return [self._tx(msgspec.convert(result, schemas.RpcTx), ts)]

    # -- normalization --------------------------------------------------------------
    def _tx(self, tx: schemas.RpcTx, ts: int) -> MempoolTx:
        h = parse.hex_int
        tx_type = h(tx.type)
        max_fee, prio, gas_price = h(tx.maxFeePerGas), h(tx.maxPriorityFeePerGas), h(tx.gasPrice)
        value = h(tx.value) or 0
        inp = tx.input or "0x"
        # first 4 calldata bytes; none for a contract creation (to is null: initcode)
        selector = inp[:10].lower() if len(inp) >= 10 and tx.to is not None else None
        dex, token_in, amount_in, notional = parse.decode_swap(selector, inp, value)
        return MempoolTx(
            venue=self.venue, symbol=self.symbol, ts_exchange_ns=None, ts_recv_ns=ts,
            chain="ethereum", txid=tx.hash, sender=tx.sender, to=tx.to, value=value,
            tx_type=tx_type, gas_limit=h(tx.gas), max_fee=max_fee, max_priority_fee=prio,
            gas_price_reported=gas_price,
            effective_tip=parse.effective_tip(
                tx_type, max_fee=max_fee, max_priority_fee=prio, gas_price=gas_price,
                base_fee_next=self.base_fee_next,
            ),
            selector=selector, input_len=max(len(inp) - 2, 0) // 2, nonce=h(tx.nonce),
            dex_swap=dex, swap_token_in=token_in, swap_amount_in=amount_in,
            swap_notional_wei=notional,
        )

    def _head(self, hd: schemas.RpcHeader, ts: int) -> ChainHead:
        h = parse.hex_int
        base, used, limit = h(hd.baseFeePerGas), h(hd.gasUsed), h(hd.gasLimit)
        if base is not None and used is not None and limit:
            self.base_fee_next = parse.next_base_fee(base, used, limit)
        height = h(hd.number)
        assert height is not None
        self.head_height = height
        stamp = h(hd.timestamp)
        return ChainHead(
            venue=self.venue, symbol=self.symbol,
            ts_exchange_ns=stamp * 1_000_000_000 if stamp is not None else None, ts_recv_ns=ts,
            chain="ethereum", height=height, block_hash=hd.hash, parent_hash=hd.parentHash,
            base_fee=base, gas_used_ratio=(used / limit) if used is not None and limit else None,
        )

    # -- requests -------------------------------------------------------------------
    def _request(self, what: str, arg: Any, method: str, params: list) -> dict:
        rid = self._next_id
        self._next_id += 1
        self._requests[rid] = (what, arg)
        return schemas.rpc_request(rid, method, params)

    def _subscribe(self, kind: str, params: list) -> None:
        self._out.append(self._enc.encode(self._request("subscribe", kind, "eth_subscribe", params)).decode())

    def _queue_lookup(self, tx_hash: str) -> None:
        if len(self._lookups) + self._in_flight >= self.max_outstanding_lookups:
            self._ignore("lookup_dropped")
            return
        self._lookups.append(tx_hash)

    def _flush_lookups(self) -> None:
        while self._lookups:
            batch = []
            while self._lookups and len(batch) < self.lookup_batch:
                tx_hash = self._lookups.popleft()
                batch.append(self._request("lookup", tx_hash, "eth_getTransactionByHash", [tx_hash]))
            self._in_flight += len(batch)
            self._out.append(self._enc.encode(batch).decode())

    # -- bookkeeping ----------------------------------------------------------------
    def _status(self, state, ts: int, reason: str = "") -> FeedStatus:
        return FeedStatus(venue=self.venue, symbol="*", ts_exchange_ns=None, ts_recv_ns=ts,
                          state=state, scope="connection", reason=reason)

    def _ignore(self, reason: str, detail: str = "") -> None:
        """Count a skipped message; the first of each reason is logged."""
        self._stats.count_ignored(reason)
        if self._stats.ignored.get(reason) == 1:  # not for reasons past the cap (counted as "other")
            log.info("ethereum: ignoring %s %s(first of its kind; counted from now on)", reason,
                     f"{detail:.80} " if detail else "")

    def _malformed(self, text: str, data: bytes | str = b"") -> list[Event]:
        self._stats.malformed += 1
        if self._stats.note_error(text, data):
            log.warning("ethereum: malformed: %s", text)
        return []
