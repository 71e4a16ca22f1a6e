"""The shape every venue's sans-I/O core has, and the records it hands out.

A core is fed what arrived (websocket frames, REST bodies, connection open/close)
with the local receive time, and returns normalized events. It never does I/O and
never reads a clock; instead it says what the caller must do next:

* ``rest_requests()``: GETs to perform (relative to ``rest_base``), each not before
  ``not_before_ns``; hand each response back to ``receive_rest``, a failed one too
  (status 0 for a transport error), so the core can re-request.
* ``frames_to_send()``: text frames to send on the websocket (subscriptions,
  heartbeats), in order.

The asyncio shell (``connectors.io.ws.run_session``) drives any object of this
shape, and so do the recording readers, through ``feed_frame``.

A core whose venue needs timers (request pacing, heartbeat liveness: Deribit) also
has the three methods of :class:`TimedVenueProtocol`; the shell looks for them and
a core without them (Binance) never gets a timer call:

* ``deadline_ns()``: the wall-clock time at which to call ``on_timer`` if no frame
  arrived before it (None: no timer wanted);
* ``on_timer(ts_recv_ns)``: that time has come; returns events, and may leave frames
  to send and a close request;
* ``close_requested()``: a :class:`CloseRequest` when the core wants the connection
  closed and reopened (a dead connection, a venue that ends the session); the
  shell closes it, then reconnects no sooner than ``retry_after_s``.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from connectors.events import Event
from connectors.record.frames import Frame


class RestRequest(msgspec.Struct, frozen=True):
    """A GET the core needs; ``path`` holds the path and query, relative to ``rest_base``."""

    path: str  # e.g. /api/v3/depth?symbol=BTCUSDT&limit=5000
    symbol: str  # the instrument it is for
    not_before_ns: int  # do not send before this wall-clock time (retry back-off)


class CloseRequest(msgspec.Struct, frozen=True):
    """The core wants this connection closed; the shell then reconnects with back-off."""

    reason: str  # for the log line and the close frame
    retry_after_s: float = 0.0  # reconnect no sooner than this (on top of the back-off)


class InstrumentStats(msgspec.Struct, kw_only=True):
    """Integrity counters of one instrument's feed, for ``volcast inspect``."""

    symbol: str
    state: str  # the book's FeedState: disconnected, buffering, synced, resyncing
    messages: int = 0  # websocket messages routed to this instrument
    events: dict[str, int] = {}  # events emitted, by kind
    syncs: int = 0  # times the book reached SYNCED
    gaps: int = 0  # sequence gaps detected
    resyncs: int = 0  # times the book was dropped and re-bridged (gaps + crossed + ...)
    crossed: int = 0  # books found crossed after applying a diff
    checksum_ok: int = 0  # venues with book checksums only
    checksum_failed: int = 0
    malformed: int = 0  # frames or REST bodies for this instrument that did not decode
    skipped: int = 0  # diffs already contained in the book (ids at or below it)
    buffer_dropped: int = 0  # buffered diffs dropped because the buffer was full
    snapshots_requested: int = 0
    snapshots_stale: int = 0  # snapshots older than the first buffered diff
    seq: int | None = None  # update id the book is at
    best_bid: float | None = None
    best_ask: float | None = None
    levels: int = 0  # live price levels in the book


class ProtocolStats(msgspec.Struct, kw_only=True):
    """Connection-wide counters plus per-instrument :class:`InstrumentStats`."""

    venue: str
    connections: int = 0  # connection_opened calls
    frames: int = 0  # websocket frames received
    malformed: int = 0  # frames and REST bodies that did not decode (all instruments)
    ignored: dict[str, int] = {}  # frames deliberately skipped, by reason
    internal_errors: int = 0  # bugs caught so one bad frame cannot stop the feed
    rest_ok: int = 0
    rest_failed: int = 0
    errors: list[str] = []  # the first few problems, verbatim, for a human
    instruments: dict[str, InstrumentStats] = {}

    def count_ignored(self, reason: str, max_keys: int = 64) -> None:
        """Count a deliberately skipped frame; past ``max_keys`` reasons they share "other"."""
        if reason not in self.ignored and len(self.ignored) >= max_keys:
            reason = "other"
        self.ignored[reason] = self.ignored.get(reason, 0) + 1

    def note_error(self, text: str, data: bytes | str = b"", max_errors: int = 20) -> bool:
        """Keep the first ``max_errors`` problems, each with a short sample of its input;
        True when this one was kept (a core logs those, so a flood stays out of the log)."""
        if len(self.errors) >= max_errors:
            return False
        sample = data[:160]
        self.errors.append(f"{text} {sample!r}" if sample else text)
        return True


class VenueProtocol(Protocol):
    """A venue's sans-I/O core, as the shell and the recording readers see it.

    A core may also expose ``fatal_error: str | None``: set when the venue refused
    something no reconnect can fix (Binance: an unknown symbol); the shell then stops
    with :class:`connectors.errors.FeedConfigError`.
    """

    venue: str
    rest_base: str

    def stream_url(self, ws_base: str | None = None) -> str:
        """The websocket URL to connect to."""
        ...

    def connection_opened(self, ts_recv_ns: int) -> list[Event]:
        """A new connection is up; every book starts over."""
        ...

    def connection_lost(self, ts_recv_ns: int, reason: str) -> list[Event]:
        """The connection is gone; every book is out of sync."""
        ...

    def receive_frame(self, data: bytes | str, ts_recv_ns: int) -> list[Event]:
        """One websocket frame; never raises."""
        ...

    def receive_rest(self, url: str, status: int, body: bytes, ts_recv_ns: int) -> list[Event]:
        """The response to one of :meth:`rest_requests`; never raises."""
        ...

    def rest_requests(self) -> list[RestRequest]:
        """GETs to perform now (each returned once)."""
        ...

    def frames_to_send(self) -> list[str]:
        """Frames to send now (each returned once)."""
        ...

    def feed_frame(self, frame: Frame) -> list[Event]:
        """Dispatch a recorded :class:`Frame` to the methods above."""
        ...

    def stats(self) -> ProtocolStats:
        """Counters for ``volcast inspect`` and metrics."""
        ...

class TimedVenueProtocol(VenueProtocol, Protocol):
    """A core that also wants timer calls and may ask for its connection to be closed."""

    def deadline_ns(self) -> int | None:
        """Wall-clock ns at which to call :meth:`on_timer` if no frame came first."""
        ...

    def on_timer(self, ts_recv_ns: int) -> list[Event]:
        """The deadline passed; afterwards send :meth:`frames_to_send` as usual."""
        ...

    def close_requested(self) -> CloseRequest | None:
        """Set when the core wants the connection closed and reopened."""
        ...
