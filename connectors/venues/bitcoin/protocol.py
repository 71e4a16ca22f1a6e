"""Sans-I/O mempool.space websocket core (protocols.md §4.3).

On every ``connection_opened`` it queues ``{"action":"want","data":["blocks",
"mempool-blocks","stats"]}`` and, with ``track_mempool=True``, ``{"track-mempool":true}``.
Liveness as the mempool.space frontend does it: after ``ping_interval_s`` without a
frame it sends ``{"action":"ping"}``; with no frame (``{"pong":true}`` or any other)
within ``pong_timeout_s`` it asks the shell to close and reconnect.

Outputs: :class:`MempoolStats` (the latest ``mempoolInfo``/``vBytesPerSecond``/
``fees``/``mempool-blocks`` merged; first emitted once ``mempoolInfo`` gave the size),
:class:`ChainHead` per new ``block``/``blocks`` entry, :class:`MempoolTx` per
``mempool-transactions.added`` entry. A ``sequence`` that is not the previous + 1 is
a gap: a ``FeedStatus`` gap and the track request sent again.

>>> p = BitcoinMempoolProtocol(track_mempool=True)
>>> [e.state for e in p.connection_opened(0)], p.frames_to_send()
(['connected'], ['{"action":"want","data":["blocks","mempool-blocks","stats"]}', '{"track-mempool":true}'])
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from connectors.events import ChainHead, Event, FeedStatus, MempoolStats, MempoolTx, ProjectedBlock
from connectors.record.frames import Frame
from connectors.venues.base import CloseRequest, ProtocolStats, RestRequest
from connectors.venues.bitcoin import parse, schemas

log = logging.getLogger("volcast.connectors.bitcoin")

NS = 1_000_000_000


class BitcoinMempoolProtocol:
    venue = "bitcoin"
    symbol = "BTC"
    rest_base = ""

    def __init__(
        self,
        ws_url: str = "ws://127.0.0.1:8999/api/v1/ws",
        *,
        track_mempool: bool = False,
        ping_interval_s: float = 30.0,
        pong_timeout_s: float = 5.0,
    ) -> None:
        self.ws_url = ws_url
        self.track_mempool = track_mempool
        self.ping_interval_ns = int(ping_interval_s * NS)
        self.pong_timeout_ns = int(pong_timeout_s * NS)
        self._out: list[str] = []
        self._stats = ProtocolStats(venue=self.venue)
        self._connected = False
        self._last_frame_ns: int | None = None
        self._ping_sent_ns: int | None = None
        self._close: CloseRequest | None = None
        self._seq: int | None = None
        self._last_height: int | None = None
        self._info: schemas.MempoolInfo | None = None
        self._vbps: float | None = None
        self._fees: dict[str, float] = {}
        self._projected: list[ProjectedBlock] = []

    # -- shell interface ------------------------------------------------------------
    def stream_url(self, ws_base: str | None = None) -> str:
        return ws_base or self.ws_url

    def rest_requests(self) -> list[RestRequest]:
        return []

    def receive_rest(self, url: str, status: int, body: bytes, ts_recv_ns: int) -> list[Event]:
        return []

    def frames_to_send(self) -> list[str]:
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

    # -- timers ---------------------------------------------------------------------
    def deadline_ns(self) -> int | None:
        if not self._connected or self._last_frame_ns is None:
            return None
        if self._ping_sent_ns is not None:
            return self._ping_sent_ns + self.pong_timeout_ns
        return self._last_frame_ns + self.ping_interval_ns

    def on_timer(self, ts_recv_ns: int) -> list[Event]:
        deadline = self.deadline_ns()
        if deadline is None or ts_recv_ns < deadline:
            return []
        if self._ping_sent_ns is None:
            self._ping_sent_ns = ts_recv_ns
            self._out.append(schemas.PING)
            return []
        self._close = CloseRequest(reason="no pong from mempool.space")
        self._connected = False
        return [self._status("stale", ts_recv_ns, "no pong")]

    def close_requested(self) -> CloseRequest | None:
        req, self._close = self._close, None
        return req

    # -- connection -----------------------------------------------------------------
    def connection_opened(self, ts_recv_ns: int) -> list[Event]:
        self._stats.connections += 1
        self._connected = True
        self._last_frame_ns = ts_recv_ns
        self._ping_sent_ns = None
        self._seq = None
        # Stats start over: the want is answered with fresh ones, and a MempoolStats
        # must not join a previous connection's mempool size to this one's blocks.
        self._info, self._vbps, self._fees, self._projected = None, None, {}, []
        self._out = [schemas.WANT] + ([schemas.TRACK_MEMPOOL] if self.track_mempool else [])
        return [self._status("connected", ts_recv_ns)]

    def connection_lost(self, ts_recv_ns: int, reason: str) -> list[Event]:
        self._connected = False
        self._ping_sent_ns = None
        self._seq = None
        self._out = []
        return [self._status("disconnected", ts_recv_ns, reason)]

    # -- frames ---------------------------------------------------------------------
    def receive_frame(self, data: bytes | str, ts_recv_ns: int) -> list[Event]:
        self._stats.frames += 1
        self._last_frame_ns = ts_recv_ns
        self._ping_sent_ns = None  # any frame proves the connection alive
        try:
            msg = msgspec.json.decode(data)
        except (msgspec.DecodeError, UnicodeError) as exc:
            return self._malformed(f"undecodable frame: {exc}", data)
        if not isinstance(msg, dict):
            return self._malformed(f"not an object: {msg!r:.80}", data)
        try:
            return self._message(msg, ts_recv_ns)
        except (ValueError, TypeError, KeyError, msgspec.ValidationError) as exc:
            return self._malformed(f"bad message: {exc!r:.200}", data)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the feed
            self._stats.internal_errors += 1
            self._stats.note_error(f"internal: {exc!r:.200}", data)
            log.exception("bitcoin: internal error on a frame")
            return []

    def _message(self, msg: dict[str, Any], ts: int) -> list[Event]:
        out: list[Event] = []
        handled = False
        if "pong" in msg:
            handled = True
        stats_changed = False
        if "mempoolInfo" in msg:
            self._info = msgspec.convert(msg["mempoolInfo"], schemas.MempoolInfo)
            stats_changed = True
        if "vBytesPerSecond" in msg:
            self._vbps = float(msg["vBytesPerSecond"])
            stats_changed = True
        if "fees" in msg:
            self._fees = parse.fee_buckets(msgspec.convert(msg["fees"], schemas.Fees))
            stats_changed = True
        if "mempool-blocks" in msg:
            blocks = msgspec.convert(msg["mempool-blocks"], list[schemas.MempoolBlock])
            self._projected = parse.projected_blocks(blocks)
            stats_changed = True
        if "blocks" in msg:
            handled = True
            blocks = msgspec.convert(msg["blocks"], list[schemas.Block])
            for b in sorted(blocks, key=lambda b: b.height):
                out.extend(self._head(b, ts))
        if "block" in msg:
            handled = True
            out.extend(self._head(msgspec.convert(msg["block"], schemas.Block), ts))
        if "mempool-transactions" in msg:
            handled = True
            out.extend(self._mempool_txs(
                msgspec.convert(msg["mempool-transactions"], schemas.MempoolTransactions), ts))
        if stats_changed:
            handled = True
            if self._info is None:
                self._ignore("stats_before_mempool_info")
            else:
                out.append(self._mempool_stats(ts))
        if not handled:
            self._ignore("unhandled_keys:" + ",".join(sorted(msg))[:60])
        return out

    def _mempool_stats(self, ts: int) -> MempoolStats:
        info = self._info
        assert info is not None
        if info.mempoolminfee is not None:
            min_fee = parse.btc_per_kvb_to_sat_per_vb(info.mempoolminfee)
        else:
            min_fee = self._fees.get("minimum")
        return MempoolStats(
            venue=self.venue, symbol=self.symbol, ts_exchange_ns=None, ts_recv_ns=ts,
            chain="bitcoin", size_tx=info.size, vbytes=info.bytes, vbytes_per_s=self._vbps,
            min_fee=min_fee, fee_buckets=dict(self._fees), projected_blocks=list(self._projected),
        )

    def _head(self, b: schemas.Block, ts: int) -> list[Event]:
        if self._last_height is not None and b.height <= self._last_height:
            # already emitted (``blocks`` re-sends recent blocks after a reconnect);
            # a reorg at the same height is not detected here
            self._ignore("old_block")
            return []
        self._last_height = b.height
        return [ChainHead(
            venue=self.venue, symbol=self.symbol,
            ts_exchange_ns=b.timestamp * NS if b.timestamp is not None else None, ts_recv_ns=ts,
            chain="bitcoin", height=b.height, block_hash=b.id, parent_hash=b.previousblockhash,
            tx_count=b.tx_count,
        )]

    def _mempool_txs(self, mt: schemas.MempoolTransactions, ts: int) -> list[Event]:
        out: list[Event] = []
        if mt.sequence is not None:
            if self._seq is not None and mt.sequence != self._seq + 1:
                out.append(FeedStatus(
                    venue=self.venue, symbol="*", ts_exchange_ns=None, ts_recv_ns=ts, state="gap",
                    scope="connection", reason="mempool-transactions sequence",
                    expected_seq=self._seq + 1, got_seq=mt.sequence,
                ))
                self._ignore("sequence_gaps")
                self._out.append(schemas.TRACK_MEMPOOL)
            self._seq = mt.sequence
        for tx in mt.added:
            out.append(MempoolTx(
                venue=self.venue, symbol=self.symbol, ts_exchange_ns=None, ts_recv_ns=ts,
                chain="bitcoin", txid=tx.txid, value=tx.value, fee_rate_sat_vb=tx.rate,
                vsize=round(tx.vsize) if tx.vsize is not None else None,
            ))
        return out

    # -- bookkeeping ----------------------------------------------------------------
    def _status(self, state, ts: int, reason: str = "") -> FeedStatus:
        return FeedStatus(venue=self.venue, symbol="*", ts_exchange_ns=None, ts_recv_ns=ts,
                          state=state, scope="connection", reason=reason)

    def _ignore(self, reason: str) -> None:
        """Count a skipped message; the first of each reason is logged."""
        self._stats.count_ignored(reason)
        if self._stats.ignored.get(reason) == 1:  # not for reasons past the cap (counted as "other")
            log.info("bitcoin: ignoring %s (first of its kind; counted from now on)", reason)

    def _malformed(self, text: str, data: bytes | str) -> list[Event]:
        self._stats.malformed += 1
        if self._stats.note_error(text, data):
            log.warning("bitcoin: malformed: %s", text)
        return []
