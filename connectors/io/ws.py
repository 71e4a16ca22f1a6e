"""The asyncio shell: owns the websocket, the HTTP client and the clock; nothing else.

``run_session`` drives any sans-I/O venue core (``connectors.venues.base``): it
feeds every received frame to the core with its receive time, performs the REST
GETs the core asks for, sends the frames it asks to send, and hands the resulting
events to ``on_events``. It reconnects forever with jittered back-off, logging one
line per failure and no traceback for network errors; anything ``classify`` does not
recognise is a bug and is raised.

A core with timers (``connectors.venues.base.TimedVenueProtocol``: Deribit's request
pacing and heartbeat liveness) gets ``on_timer`` calls at its ``deadline_ns()`` when
no frame arrives first, and may ask for its connection to be closed
(``close_requested()``); the shell then closes it and reconnects, no sooner than the
request's ``retry_after_s``. Every frame sent is handed to ``on_frame`` as a ``sent``
frame, so a JSON-RPC session can be recorded and replayed.

A replay server ends a recording by closing with code 1000 and reason
``"end of recording"``; the session then returns instead of reconnecting.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from email.utils import parsedate_to_datetime

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connectors.errors import FeedConfigError, ReconnectsExhausted
from connectors.events import Event
from connectors.io.retry import backoff_delays, classify
from connectors.record.frames import Frame
from connectors.venues.base import CloseRequest, RestRequest, VenueProtocol

logger = logging.getLogger("volcast.connectors")

END_OF_RECORDING = "end of recording"  # close reason (with code 1000) of the replay server
MAX_FRAME = 64 * 2**20  # websocket message size limit; depth frames are far smaller
_MAX_REASON_BYTES = 123  # RFC 6455 limit of a close reason

OnEvents = Callable[[list[Event]], Awaitable[None] | None]
OnFrame = Callable[[Frame], None]


async def run_session(
    protocol: VenueProtocol,
    *,
    ws_url: str | None = None,
    rest_base: str | None = None,
    on_events: OnEvents,
    on_frame: OnFrame | None = None,
    stop: asyncio.Event | None = None,
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
    max_reconnects: int | None = None,
    backoff: Callable[[], Iterator[float]] = backoff_delays,
    open_timeout: float = 10.0,
    rest_timeout: float = 10.0,
) -> None:
    """Connect, pump frames through ``protocol`` and reconnect until stopped.

    Parameters
    ----------
    protocol
        A venue core; it is told about every open, frame, REST response and close.
    ws_url, rest_base
        Where to connect; default ``protocol.stream_url()`` and ``protocol.rest_base``
        (point both at a replay server to run on a recording).
    on_events
        Called with each non-empty batch of events, in order; may be a coroutine
        function, which is awaited (backpressure reaches the socket).
    on_frame
        Called with every raw :class:`Frame` (open, recv, sent, rest, close) before
        the core sees it (``sent``: as it goes out): the recorder's hook.
    stop
        Set it to end the session; the connection is closed and the call returns.
    max_reconnects
        Give up after this many consecutive failed or dropped connections and raise
        :class:`ReconnectsExhausted`; None (default) retries forever.
    backoff
        A factory of delay iterators, called anew after each successful connection.

    Returns when ``stop`` is set or the server ends the stream with close code 1000
    and reason ``"end of recording"``.
    """
    url = ws_url or protocol.stream_url()
    session = _Session(protocol, rest_base or protocol.rest_base, on_events, on_frame, log)
    stop = stop or asyncio.Event()
    delays = backoff()
    failures = 0
    async with httpx.AsyncClient(timeout=rest_timeout) as http:
        session.http = http
        while not stop.is_set():
            session.got_data = False
            try:
                async with connect(url, max_size=MAX_FRAME, open_timeout=open_timeout) as ws:
                    await session.pump(ws, url, stop)
                return  # stopped, or the end of a recording
            except Exception as exc:
                # An exception out of on_events/on_frame is the caller's, never the network's.
                reason = None if session.callback_failed else classify(exc)
                if reason is None:
                    raise
                verb = "lost connection to" if session.opened else "cannot reach"
                asked = session.close_request
                if asked is not None:  # the core closed it (dead connection, rate limit)
                    reason, verb = asked.reason, "closed the connection to"
            finally:
                await session.closed()
            if session.got_data:  # it worked for a while: start the back-off over
                failures = 0
                delays = backoff()
            failures += 1
            if max_reconnects is not None and failures > max_reconnects:
                gave_up = f"gave up after {max_reconnects} reconnects" if max_reconnects else "not retried"
                raise ReconnectsExhausted(f"{protocol.venue}: {verb} {_short(url)}: {reason}; {gave_up}")
            delay = next(delays)
            if session.close_request is not None:
                delay = max(delay, session.close_request.retry_after_s)
            log.warning("%s: %s %s: %s; retry %d in %.1f s",
                        protocol.venue, verb, _short(url), reason, failures, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass


class _Session:
    """State of the connection in progress: its id, REST tasks and the REST gate."""

    def __init__(self, protocol: VenueProtocol, rest_base: str, on_events: OnEvents,
                 on_frame: OnFrame | None,
                 log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
        self.protocol = protocol
        self.rest_base = rest_base.rstrip("/")
        self.on_events = on_events
        self.on_frame = on_frame
        self.log = log
        self.http: httpx.AsyncClient | None = None
        self.conn_id = ""
        self.count = 0  # connections opened so far
        self.opened = False  # the current attempt got past the handshake
        self.got_data = False  # the current connection delivered a frame
        self.error: BaseException | None = None  # a bug in a REST task, re-raised by pump
        self.callback_failed = False  # on_events or on_frame raised
        self.ws: ClientConnection | None = None
        self.rest_tasks: set[asyncio.Task[None]] = set()
        self.rest_gate_ns = 0  # no REST before this time (a 429/418 Retry-After)
        self.close_request: CloseRequest | None = None  # the core asked to close this connection
        # Optional timer hooks of a TimedVenueProtocol (None for a core without timers).
        self.deadline_ns: Callable[[], int | None] | None = getattr(protocol, "deadline_ns", None)
        self.on_timer: Callable[[int], list[Event]] | None = getattr(protocol, "on_timer", None)
        self.close_requested: Callable[[], CloseRequest | None] | None = getattr(
            protocol, "close_requested", None)

    async def pump(self, ws: ClientConnection, url: str, stop: asyncio.Event) -> None:
        """Run one open connection until it closes.

        Returns if ``stop`` was set or the server ended the recording; raises
        ``ConnectionClosed`` for any other close.
        """
        self.opened, self.got_data, self.ws = True, False, ws
        self.close_request = None
        self.count += 1
        self.conn_id = f"{self.protocol.venue}-{self.count}"
        proto, on_frame, conn_id = self.protocol, self.on_frame, self.conn_id  # hot locals
        ts = time.time_ns()
        if on_frame:
            self.record(Frame(ts, conn_id, "open", b"", url))
        await self.deliver(proto.connection_opened(ts))
        # Closing the socket is how a stop interrupts a pending recv().
        watcher = asyncio.create_task(_close_on(stop, ws))
        deadline_ns, on_timer = self.deadline_ns, self.on_timer
        loop = asyncio.get_running_loop()
        try:
            # The first frames (a JSON-RPC core's subscriptions) may meet a server that
            # already closed: that close is handled like any other, below.
            await self.service()
            while True:
                deadline = deadline_ns() if deadline_ns is not None else None
                if deadline is None:
                    data = await ws.recv(decode=False)
                else:
                    assert on_timer is not None
                    try:
                        # recv() is cancellation-safe: a timeout loses no message.
                        async with asyncio.timeout_at(loop.time() + (deadline - time.time_ns()) / 1e9):
                            data = await ws.recv(decode=False)
                    except TimeoutError:
                        events = on_timer(time.time_ns())
                        if events:
                            await self.deliver(events)
                        await self.service()
                        continue
                ts = time.time_ns()
                self.got_data = True
                if on_frame:
                    self.record(Frame(ts, conn_id, "recv", data))
                events = proto.receive_frame(data, ts)
                if events:
                    await self.deliver(events)
                await self.service()
        except ConnectionClosed as exc:
            if self.error is not None:
                raise self.error from None
            ts = time.time_ns()
            close = exc.rcvd
            reason = f"{close.code} {close.reason}".strip() if close else "no close frame"
            if self.close_request is not None:
                reason = self.close_request.reason
            if on_frame:
                self.record(Frame(ts, conn_id, "close", reason.encode()))
            await self.deliver(proto.connection_lost(ts, reason))
            ended = close is not None and close.code == 1000 and close.reason == END_OF_RECORDING
            if not (ended or stop.is_set()):
                raise
        finally:
            watcher.cancel()

    async def closed(self) -> None:
        """After a connection ends: drop its REST work (the core has reset its books)."""
        self.opened, self.ws = False, None
        for task in self.rest_tasks:
            task.cancel()
        if self.rest_tasks:
            await asyncio.gather(*self.rest_tasks, return_exceptions=True)
        self.rest_tasks.clear()

    async def service(self) -> None:
        """Send what the core wants sent, start the GETs it wants made, and close the
        connection if the core asks for that."""
        assert self.ws is not None
        ws = self.ws
        for frame in self.protocol.frames_to_send():
            if self.on_frame:
                self.record(Frame(time.time_ns(), self.conn_id, "sent", frame.encode()))
            await ws.send(frame)
        for req in self.protocol.rest_requests():
            task = asyncio.create_task(self.fetch(req))
            self.rest_tasks.add(task)
            task.add_done_callback(self._fetch_done)
        if self.close_requested is not None and self.close_request is None:
            request = self.close_requested()
            if request is not None:
                self.close_request = request
                # The next recv() raises ConnectionClosed; pump() reports this reason.
                reason = request.reason.encode()[:_MAX_REASON_BYTES].decode("utf-8", "ignore")
                await ws.close(1000, reason)

    def _fetch_done(self, task: asyncio.Task[None]) -> None:
        self.rest_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.error is None:
            # A bug, not the network: stop the connection so pump() re-raises it.
            self.error = task.exception()
            if self.ws is not None:
                self.rest_tasks.add(asyncio.create_task(self.ws.close()))

    async def fetch(self, req: RestRequest) -> None:
        """GET one request (after its not_before and any Retry-After) and feed the answer."""
        assert self.http is not None
        url = self.rest_base + req.path
        wait_ns = max(req.not_before_ns, self.rest_gate_ns) - time.time_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        try:
            resp = await self.http.get(url)
            status, body = resp.status_code, resp.content
        except Exception as exc:
            reason = classify(exc)
            if reason is None:
                raise
            self.log.warning("%s: GET %s failed: %s", self.protocol.venue, url, reason)
            status, body = 0, b""
        else:
            if status in (418, 429):
                delay = _retry_after(resp.headers.get("Retry-After"))
                self.rest_gate_ns = time.time_ns() + int(delay * 1e9)
                self.log.warning("%s: GET %s -> HTTP %d (rate limited); no REST for %.0f s",
                                 self.protocol.venue, url, status, delay)
        ts = time.time_ns()
        if status == 200 and self.on_frame:
            self.record(Frame(ts, self.conn_id, "rest", body, url))
        events = self.protocol.receive_rest(url, status, body, ts)
        if events:
            await self.deliver(events)
        fatal = getattr(self.protocol, "fatal_error", None)
        if fatal:
            raise FeedConfigError(fatal)
        try:
            await self.service()
        except ConnectionClosed:
            pass  # the pump sees the close and reconnects

    async def deliver(self, events: list[Event]) -> None:
        """Hand a batch to ``on_events``, awaiting it if it returned an awaitable."""
        try:
            result = self.on_events(events)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.callback_failed = True
            raise

    def record(self, frame: Frame) -> None:
        """Hand a raw frame to ``on_frame`` (only called when there is one)."""
        assert self.on_frame is not None
        try:
            self.on_frame(frame)
        except Exception:
            self.callback_failed = True
            raise


async def _close_on(stop: asyncio.Event, ws: ClientConnection) -> None:
    await stop.wait()
    await ws.close()


def _retry_after(value: str | None, default: float = 60.0) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return default


def _short(url: str, limit: int = 80) -> str:
    """A URL cut for a log line (combined-stream URLs can be kilobytes long)."""
    return url if len(url) <= limit else url[: limit - 3] + "..."
