"""The asyncio shell against a local websockets server on 127.0.0.1, and retry.py.

The server replays the first frames of a real recording (data/binance/hftbacktest) and
answers the REST depth path from ``process_request``, as the replay server will.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable
from http import HTTPStatus
from itertools import islice
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus, InvalidURI
from websockets.frames import Close
from websockets.http11 import Request, Response

from connectors.errors import ReconnectsExhausted
from connectors.events import BookDelta, FeedStatus
from connectors.io.retry import backoff_delays, classify
from connectors.io.ws import END_OF_RECORDING, run_session
from connectors.record.detect import open_recording
from connectors.venues.binance.protocol import BinanceProtocol

RECORDING = Path(__file__).resolve().parents[2] / "data" / "binance" / "hftbacktest" / "spot" / "btcusdt_20240808.gz"
FRAMES = list(islice(open_recording(RECORDING), 1499))
WS = [f.payload for f in FRAMES if f.kind == "recv"]
SNAPSHOT = next(f.payload for f in FRAMES if f.kind == "rest")


def fast_backoff():
    return backoff_delays(initial=0.01, cap=0.02, jitter=0)


class Server:
    """Serves WS frames per connection plan and the depth snapshot over plain HTTP.

    ``plans[i]`` is how connection ``i`` ends: ``"end"`` (close 1000 "end of
    recording" after all frames), ``"drop"`` (close 1011 after ``drop_after``
    frames) or ``"hang"`` (send everything, then wait).
    """

    def __init__(self, plans: list[str], drop_after: int = 300, rest_statuses: list[int] | None = None):
        self.plans = plans
        self.drop_after = drop_after
        self.rest_statuses = rest_statuses or []
        self.connections = 0
        self.rest_served = asyncio.Event()
        self.rest_paths: list[str] = []
        self.port = 0

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not request.path.startswith("/api/v3/depth"):
            return None  # a websocket handshake
        self.rest_paths.append(request.path)
        status = self.rest_statuses.pop(0) if self.rest_statuses else 200
        if status != 200:
            return Response(status, HTTPStatus(status).phrase, Headers({"Retry-After": "0", "Content-Length": "0"}))
        self.rest_served.set()
        return Response(200, "OK", Headers({"Content-Type": "application/json",
                                             "Content-Length": str(len(SNAPSHOT))}), SNAPSHOT)

    async def handler(self, ws: ServerConnection) -> None:
        plan = self.plans[min(self.connections, len(self.plans) - 1)]
        self.connections += 1
        self.rest_served.clear()
        frames = WS[: self.drop_after] if plan == "drop" else WS
        for n, frame in enumerate(frames):
            await ws.send(frame.decode())
            if n == 10:  # let the client's snapshot GET land mid-stream, as live
                waits = [asyncio.ensure_future(self.rest_served.wait()),
                         asyncio.ensure_future(ws.wait_closed())]
                await asyncio.wait(waits, timeout=5, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
        if plan == "drop":
            await ws.close(1011, "test drop")
        elif plan == "end":
            await ws.close(1000, END_OF_RECORDING)
        else:
            await ws.wait_closed()

    async def __aenter__(self) -> Server:
        self._server = await serve(self.handler, "127.0.0.1", 0, process_request=self.process_request)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()


async def session(server: Server, on_events: Callable, **kw) -> BinanceProtocol:
    proto = BinanceProtocol("spot", ["BTCUSDT"])
    await asyncio.wait_for(
        run_session(proto, ws_url=proto.stream_url(f"ws://127.0.0.1:{server.port}"),
                    rest_base=f"http://127.0.0.1:{server.port}", on_events=on_events,
                    backoff=fast_backoff, **kw),
        timeout=30,
    )
    return proto


def test_session_syncs_records_and_ends_at_end_of_recording():
    events, frames = [], []

    async def main():
        async with Server(["end"]) as server:
            return await session(server, events.extend, on_frame=frames.append), server

    proto, server = asyncio.run(main())
    # Assert: one connection, synced, no gaps, every frame delivered.
    s = proto.stats()
    i = s.instruments["BTCUSDT"]
    assert (s.connections, i.syncs, i.gaps, s.frames, s.malformed) == (1, 1, 0, len(WS), 0)
    assert server.rest_paths == ["/api/v3/depth?symbol=BTCUSDT&limit=5000"]
    assert sum(isinstance(e, BookDelta) for e in events) > 50
    assert events[-1].state == "disconnected" and events[-1].reason == f"1000 {END_OF_RECORDING}"
    # The recorder hook saw everything, and replaying it gives the same events.
    assert [f.kind for f in frames].count("recv") == len(WS)
    assert frames[0].kind == "open" and frames[-1].kind == "close"
    assert [f.kind for f in frames].count("rest") == 1
    replay = BinanceProtocol("spot", ["BTCUSDT"])
    replayed = [e for f in frames for e in replay.feed_frame(f)]
    assert replayed == events


def test_reconnects_after_drop_with_one_log_line(caplog):
    events = []

    async def on_events(batch):  # a coroutine: awaited by the shell
        events.extend(batch)

    async def main():
        async with Server(["drop", "end"]) as server:
            return await session(server, on_events), server

    with caplog.at_level(logging.WARNING, logger="volcast.connectors"):
        proto, server = asyncio.run(main())
    assert server.connections == 2
    conn = [e for e in events if isinstance(e, FeedStatus) and e.scope == "connection"]
    assert [(e.state, e.reason) for e in conn] == [
        ("connected", ""), ("disconnected", "1011 test drop"),
        ("connected", ""), ("disconnected", f"1000 {END_OF_RECORDING}")]
    [record] = caplog.records
    assert record.exc_info is None
    assert record.getMessage().startswith(f"binance: lost connection to ws://127.0.0.1:{server.port}/stream?")
    assert ": server closed the connection: 1011 test drop; " in record.getMessage()
    assert record.getMessage().endswith("retry 1 in 0.0 s")
    assert proto.stats().instruments["BTCUSDT"].syncs == 2


def test_unreachable_port_logs_one_line_per_try_and_gives_up(caplog):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proto = BinanceProtocol("usdm", ["BTCUSDT"])

    async def main():
        await run_session(proto, ws_url=proto.stream_url(f"ws://127.0.0.1:{port}"),
                          rest_base=f"http://127.0.0.1:{port}", on_events=lambda e: None,
                          max_reconnects=2, backoff=fast_backoff)

    with caplog.at_level(logging.WARNING, logger="volcast.connectors"):
        with pytest.raises(ReconnectsExhausted, match="gave up after 2 reconnects"):
            asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all(r.exc_info is None for r in caplog.records)
    assert lines[0].startswith(f"binance_usdm: cannot reach ws://127.0.0.1:{port}/stream?streams=btcusdt@")
    assert "connection refused: " in lines[0]
    assert lines[1].endswith("retry 2 in 0.0 s")


def test_stop_ends_the_session_promptly():
    events = []

    async def main():
        async with Server(["hang"]) as server:
            stop = asyncio.Event()

            def on_events(batch):
                events.extend(batch)
                if any(isinstance(e, BookDelta) for e in batch):
                    stop.set()

            return await session(server, on_events, stop=stop)

    proto = asyncio.run(main())
    assert proto.stats().connections == 1
    assert events[-1].state == "disconnected"


def test_rate_limited_snapshot_is_retried(caplog):
    events = []

    async def main():
        async with Server(["end"], rest_statuses=[429]) as server:
            return await session(server, events.extend), server

    with caplog.at_level(logging.WARNING, logger="volcast.connectors"):
        proto, server = asyncio.run(main())
    assert len(server.rest_paths) == 2
    assert proto.stats().rest_failed == 1
    assert proto.stats().instruments["BTCUSDT"].syncs == 1
    assert "HTTP 429 (rate limited)" in caplog.records[0].getMessage()


def test_a_bug_in_on_events_is_raised_not_retried():
    async def main():
        async with Server(["end"]) as server:
            await session(server, lambda batch: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        asyncio.run(main())


def test_an_oserror_from_on_frame_is_the_callers_not_a_network_error():
    def on_frame(frame):
        if frame.kind == "recv":
            raise OSError(28, "No space left on device")  # e.g. the recorder's disk

    async def main():
        async with Server(["end"]) as server:
            await session(server, lambda batch: None, on_frame=on_frame)

    with pytest.raises(OSError, match="No space left"):
        asyncio.run(main())


def test_backoff_grows_across_consecutive_failures_after_a_good_connection(caplog):
    # A connection that delivered data resets the back-off once, not forever.
    delays = []

    def recording_backoff():
        for d in backoff_delays(initial=0.01, factor=2, cap=1, jitter=0):
            delays.append(d)
            yield d

    async def main():
        server = Server(["drop"], drop_after=20)
        async with server:
            port = server.port
            proto = BinanceProtocol("spot", ["BTCUSDT"])
            task = asyncio.create_task(run_session(
                proto, ws_url=proto.stream_url(f"ws://127.0.0.1:{port}"),
                rest_base=f"http://127.0.0.1:{port}", on_events=lambda e: None,
                max_reconnects=3, backoff=recording_backoff))
            while server.connections < 1:
                await asyncio.sleep(0.01)
        # The server is gone: every further attempt is refused.
        with pytest.raises(ReconnectsExhausted):
            await asyncio.wait_for(task, 10)

    with caplog.at_level(logging.WARNING, logger="volcast.connectors"):
        asyncio.run(main())
    # One drop after data (back-off starts over), then two refusals: it keeps growing.
    assert delays == [0.01, 0.02, 0.04]
    assert [r.getMessage().split(": ")[0] for r in caplog.records] == ["binance"] * 3


# -- retry.py ---------------------------------------------------------------------


def test_backoff_is_capped_jittered_exponential():
    delays = backoff_delays(initial=0.5, factor=2, cap=4, jitter=0.5, rng=random.Random(1))
    got = [next(delays) for _ in range(8)]
    ceilings = [0.5, 1, 2, 4, 4, 4, 4, 4]
    assert all(c / 2 <= d <= c for d, c in zip(got, ceilings))
    assert len(set(got)) == len(got)  # jittered


@pytest.mark.parametrize("kwargs", [dict(initial=0), dict(factor=0.5), dict(cap=0.1), dict(jitter=2)])
def test_backoff_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        next(backoff_delays(**kwargs))


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (socket.gaierror(-3, "Temporary failure in name resolution"),
         "DNS failure: [Errno -3] Temporary failure in name resolution"),
        (ConnectionRefusedError(111, "Connect call failed"), "connection refused: [Errno 111] Connect call failed"),
        (TimeoutError(), "timed out"),
        (InvalidStatus(Response(403, "Forbidden", Headers())), "handshake rejected: HTTP 403 Forbidden"),
        (ConnectionClosedError(None, None), "connection lost without a close frame"),
        (ConnectionClosedError(Close(1011, "oops"), None), "server closed the connection: 1011 oops"),
        (httpx.ConnectError("boom"), "HTTP transport error: boom"),
        (httpx.ReadTimeout("slow"), "timed out: slow"),
        (OSError(101, "Network is unreachable"), "[Errno 101] Network is unreachable"),
        (InvalidURI("x", "bad"), None),
        (ValueError("bug"), None),
    ],
)
def test_classify(exc, reason):
    assert classify(exc) == reason
