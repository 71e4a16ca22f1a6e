"""The JSON-RPC side of a Deribit connection: request ids, pacing, requests in flight.

Sans-I/O, like the protocol that owns it: :class:`RequestQueue` is told the time and
hands out the text frames that may go now. Pacing follows Deribit's credit limits
(research/protocols.md §1.5): ``public/subscribe`` and ``public/unsubscribe`` share a
token bucket (a burst, then a sustained rate), ``public/get_instruments`` has its own
(1 per second), heartbeat answers and ``set_heartbeat`` are not paced. Channels to
(un)subscribe are batched: every channel queued before the next call goes out in it,
up to ``max_channels`` a call.

>>> q = RequestQueue(max_channels=2, sub_burst=1, sub_period_ns=1_000, listing_period_ns=1_000)
>>> q.enqueue("public/set_heartbeat", {"interval": 30})
>>> for ch in ("a", "b", "c"):
...     q.want(ch)
>>> q.drain(now=0)
['{"jsonrpc":"2.0","id":1,"method":"public/set_heartbeat","params":{"interval":30}}', \
'{"jsonrpc":"2.0","id":2,"method":"public/subscribe","params":{"channels":["a","b"]}}']
>>> q.next_send_ns(now=0), q.drain(now=1_000)
(1001, ['{"jsonrpc":"2.0","id":3,"method":"public/subscribe","params":{"channels":["c"]}}'])
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import msgspec

from connectors.venues.deribit import parse

ChannelState = Literal["queued", "subscribing", "subscribed", "missing", "unsubscribing"]
OUTBOX = 4096  # unsent unpaced frames kept (only a recording-fed core lets them pile up)


class Call(msgspec.Struct):
    """A request on the wire, waiting for its reply."""

    method: str
    channels: tuple[str, ...] = ()  # subscribe / unsubscribe
    currency: str = ""  # get_instruments
    kind: str | None = None  # get_instruments


class Bucket:
    """A token bucket: ``capacity`` calls at once, then one per ``period_ns``.

    >>> b = Bucket(2, 100)
    >>> b.take(0), b.take(0), b.take(0), b.ready_at(0), b.take(100)
    (True, True, False, 101, True)
    """

    __slots__ = ("at_ns", "capacity", "period_ns", "tokens")

    def __init__(self, capacity: int, period_ns: int) -> None:
        self.capacity = float(capacity)
        self.period_ns = max(1, period_ns)
        self.tokens = float(capacity)
        self.at_ns: int | None = None

    def _refill(self, now: int) -> None:
        if self.at_ns is None or now < self.at_ns:
            self.at_ns = now
            return
        self.tokens = min(self.capacity, self.tokens + (now - self.at_ns) / self.period_ns)
        self.at_ns = now

    def take(self, now: int) -> bool:
        """Spend a token if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def ready_at(self, now: int) -> int:
        """The first time a token is available (``now`` if one is)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return now
        return now + int((1.0 - self.tokens) * self.period_ns) + 1


class RequestQueue:
    """One connection's requests: what to send, when, and what is awaiting a reply.

    Parameters
    ----------
    max_channels
        Channels per ``public/subscribe``/``unsubscribe`` call.
    sub_burst, sub_period_ns
        The subscribe bucket: ``sub_burst`` calls at once, then one per period.
    listing_period_ns
        One ``public/get_instruments`` per period.
    """

    def __init__(self, max_channels: int, sub_burst: int, sub_period_ns: int,
                 listing_period_ns: int) -> None:
        self.max_channels = max_channels
        self._sub_burst = sub_burst
        self._sub_period_ns = sub_period_ns
        self._listing_period_ns = listing_period_ns
        self._next_id = 1  # never reset: a late reply of an old connection cannot match
        self._ready: deque[tuple[str, int, Call]] = deque()  # unpaced, built, in order
        self.dropped = 0  # unpaced frames dropped because nobody drained them
        self.calls: dict[int | str, Call] = {}  # sent, awaiting a reply
        self.sub_pending: dict[str, None] = {}  # channels to subscribe, in order
        self.unsub_pending: dict[str, None] = {}
        self.chan_state: dict[str, ChannelState] = {}
        self.resync: set[str] = set()  # book channels to subscribe again once unsubscribed
        # (currency, kind) -> not before (ns): listings to ask for, in order
        self.listing_pending: dict[tuple[str, str | None], int] = {}
        self.listing_attempts = 0  # failed listings so far (their retry back-off)
        self._sub_bucket = Bucket(sub_burst, sub_period_ns)
        self._listing_bucket = Bucket(1, listing_period_ns)

    def clear(self, pace: float = 1.0) -> None:
        """A connection ended or began: forget everything but the id counter; pace the
        next one ``pace`` times more slowly than configured."""
        self._ready.clear()
        self.calls.clear()
        self.sub_pending.clear()
        self.unsub_pending.clear()
        self.chan_state.clear()
        self.resync.clear()
        self.listing_pending.clear()
        self.listing_attempts = 0
        self._sub_bucket = Bucket(self._sub_burst, int(self._sub_period_ns * pace))
        self._listing_bucket = Bucket(1, int(self._listing_period_ns * pace))

    def stop(self) -> None:
        """Send nothing more on this connection (it is being closed)."""
        self._ready.clear()
        self.sub_pending.clear()
        self.unsub_pending.clear()
        self.listing_pending.clear()

    # -- what to ask -------------------------------------------------------------------

    def enqueue(self, method: str, params: dict[str, Any]) -> None:
        """An unpaced request (``set_heartbeat``, ``public/test``), sent at the next drain."""
        if len(self._ready) >= OUTBOX:
            self._ready.popleft()
            self.dropped += 1
        id_ = self._take_id()
        self._ready.append((parse.request(id_, method, params), id_, Call(method)))

    def list_instruments(self, key: tuple[str, str | None], not_before: int = 0) -> None:
        """Ask for ``public/get_instruments`` of ``(currency, kind)`` (once, if already asked)."""
        self.listing_pending[key] = max(not_before, self.listing_pending.get(key, 0))

    def want(self, channel: str) -> None:
        """Subscribe ``channel`` (batched with the others queued before the next call)."""
        if self.chan_state.get(channel) in ("subscribing", "subscribed", "queued"):
            return
        self.chan_state[channel] = "queued"
        self.sub_pending[channel] = None

    def resubscribe(self, channel: str) -> None:
        """Unsubscribe, then (once acked) subscribe ``channel`` again: a fresh snapshot."""
        state = self.chan_state.get(channel)
        if state in ("subscribing", "subscribed"):
            self.unsub_pending[channel] = None
            self.resync.add(channel)
        elif state is None or state == "queued":
            self.want(channel)  # not subscribed by us (a recording's channel): just ask
        # "unsubscribing": the resync under way subscribes it again

    def cancel_resubscribe(self, channel: str) -> bool:
        """Drop a resync whose unsubscribe has not gone yet (a snapshot came first)."""
        if channel in self.resync and channel in self.unsub_pending:
            self.resync.discard(channel)
            del self.unsub_pending[channel]
            return True
        return False

    def forget(self, channel: str) -> None:
        """An instrument expired: cancel what is queued, unsubscribe what is live."""
        self.sub_pending.pop(channel, None)
        self.resync.discard(channel)
        if self.chan_state.pop(channel, None) in ("subscribing", "subscribed"):
            self.unsub_pending[channel] = None

    def unsubscribed(self, channels: tuple[str, ...]) -> None:
        """An unsubscribe was answered (or failed): resyncs subscribe again."""
        for ch in channels:
            if self.chan_state.get(ch) == "unsubscribing":
                del self.chan_state[ch]
            if ch in self.resync:
                self.resync.discard(ch)
                self.want(ch)

    def subscribing(self) -> bool:
        """Whether any channel is still queued or awaiting its ack."""
        return bool(self.sub_pending) or any(
            s in ("queued", "subscribing") for s in self.chan_state.values())

    # -- what to send ------------------------------------------------------------------

    def drain(self, now: int) -> list[str]:
        """The frames that may go at ``now``, in order; registered as in flight."""
        out: list[str] = []
        while self._ready:
            text, id_, call = self._ready.popleft()
            self.calls[id_] = call
            out.append(text)
        while self.unsub_pending and self._sub_bucket.take(now):
            out.append(self._channel_call("public/unsubscribe", self.unsub_pending, "unsubscribing"))
        while self.sub_pending and self._sub_bucket.take(now):
            out.append(self._channel_call("public/subscribe", self.sub_pending, "subscribing"))
        for key, not_before in list(self.listing_pending.items()):
            if not_before > now or not self._listing_bucket.take(now):
                continue
            del self.listing_pending[key]
            currency, kind = key
            params: dict[str, Any] = {"currency": currency}
            if kind is not None:
                params["kind"] = kind
            params["expired"] = False
            call = Call("public/get_instruments", currency=currency, kind=kind)
            out.append(self._send("public/get_instruments", params, call))
        return out

    def next_send_ns(self, now: int) -> int | None:
        """When the next paced request may go (None: nothing is waiting)."""
        times = []
        if self._ready:
            times.append(now)
        if self.sub_pending or self.unsub_pending:
            times.append(self._sub_bucket.ready_at(now))
        if self.listing_pending:
            ready = self._listing_bucket.ready_at(now)
            times.append(max(ready, min(self.listing_pending.values())))
        return min(times) if times else None

    def observe_sent(self, payload: bytes) -> None:
        """A request read from a recording: register it so its recorded reply is
        understood. Raises ``msgspec.DecodeError`` for a frame that is not one."""
        req = parse.REQUEST.decode(payload)
        if req.id is None:
            return
        if req.method in ("public/subscribe", "public/unsubscribe"):
            channels = tuple(parse.CHANNELS_PARAMS.decode(req.params).channels)
            call = Call(req.method, channels=channels)
            if req.method == "public/subscribe":
                for ch in channels:
                    self.sub_pending.pop(ch, None)
                    self.chan_state[ch] = "subscribing"
        elif req.method == "public/get_instruments":
            p = parse.INSTRUMENTS_PARAMS.decode(req.params)
            call = Call(req.method, currency=p.currency.upper(), kind=p.kind)
        else:
            call = Call(req.method)
        self.calls[req.id] = call

    def _take_id(self) -> int:
        id_ = self._next_id
        self._next_id += 1
        return id_

    def _send(self, method: str, params: dict[str, Any], call: Call) -> str:
        id_ = self._take_id()
        self.calls[id_] = call
        return parse.request(id_, method, params)

    def _channel_call(self, method: str, pending: dict[str, None], state: ChannelState) -> str:
        batch = []
        for ch in pending:
            batch.append(ch)
            if len(batch) == self.max_channels:
                break
        for ch in batch:
            del pending[ch]
            self.chan_state[ch] = state
        return self._send(method, {"channels": batch}, Call(method, channels=tuple(batch)))
