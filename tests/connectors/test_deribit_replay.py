"""Deribit over a real websocket on loopback: the replay server and the asyncio shell.

Recordings: cryptofeed's ``DERIBIT.ws.1.0`` and ``DERIBIT.0`` (real, tests/data/cryptofeed).
The small servers in the shell tests send only protocol frames (no market data).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from connectors.events import (
    BookDelta,
    BookSnapshot,
    Event,
    FeedStatus,
    Instrument,
    OptionTicker,
)
from connectors.io.retry import backoff_delays
from connectors.io.ws import END_OF_RECORDING, run_session
from connectors.record.detect import merge_recordings
from connectors.record.frames import Frame
from connectors.replay import ReplayServer
from connectors.venues.deribit.protocol import DeribitProtocol

DATA = Path(__file__).resolve().parents[1] / "data" / "cryptofeed"
WS, LISTING = DATA / "DERIBIT.ws.1.0", DATA / "DERIBIT.0"
NAMES = ["BTC-24SEP21-8000-P", "BTC-30JUL21-24000-P", "ETH-30JUL21-2800-C", "BTC-31DEC21-34000-P",
         "BTC-24SEP21-34000-P", "BTC-24JUN22-15000-C", "BTC-31DEC21-300000-C", "ETH-27AUG21-4000-P",
         "BTC-25MAR22-30000-C", "ETH-23JUL21-2300-C"]
BOOK = "book.BTC-24SEP21-8000-P.raw"


def run(main: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """Run one test's coroutine with a hard deadline, so a hang fails instead of stalling."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await main()

    return asyncio.run(bounded())


def new_protocol(**kw: Any) -> DeribitProtocol:
    """What the recording subscribed: book, trades and ticker (raw) of its 10 options."""
    options: dict[str, Any] = {"currencies": ["BTC", "ETH"], "kinds": ["option"], "instruments": NAMES,
                               "option_channels": ["book", "trades", "ticker"], "interval": "raw",
                               "dvol": False, "price_index": False}
    options.update(kw)
    return DeribitProtocol(**options)


def market(events: list[Event]) -> list[bytes]:
    """Tickers and book events, without the local receive time (which differs by run)."""
    out = []
    for e in events:
        if isinstance(e, (OptionTicker, BookDelta, BookSnapshot)):
            doc = json.loads(json.dumps(e, default=lambda s: {f: getattr(s, f) for f in s.__struct_fields__}))
            doc.pop("ts_recv_ns")
            out.append(json.dumps([type(e).__name__, doc]).encode())
    return out


def fast_backoff():
    return backoff_delays(initial=0.01, cap=0.02, jitter=0)


def recorded(channels: set[str]) -> list[str]:
    """Notifications of ``channels`` in recording order, as text."""
    out = []
    for f in merge_recordings([WS]):
        if f.kind == "recv" and b'"method":"subscription"' in f.payload:
            if json.loads(f.payload)["params"]["channel"] in channels:
                out.append(f.payload.decode())
    return out


async def rpc(ws: ClientConnection, id_: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Send a request; the next message must be its answer."""
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}))
    answer = json.loads(await ws.recv())
    assert answer["id"] == id_
    return answer


async def read_all(ws: ClientConnection) -> list[str]:
    out: list[str] = []
    try:
        async for message in ws:
            out.append(message if isinstance(message, str) else message.decode())
    except ConnectionClosed:
        pass
    return out


# -- the unmodified core on the replay server ------------------------------------------------------


@pytest.mark.slow
def test_live_core_on_replay_equals_the_offline_run_and_its_recording_replays():
    # Arrange: the offline run, feeding the files to the core
    offline = new_protocol()
    offline_events: list[Event] = []
    for frame in merge_recordings([WS, LISTING]):
        offline_events += offline.feed_frame(frame)

    # Act: the same core class over a websocket, recording every frame
    live = new_protocol()
    events: list[Event] = []
    frames: list[Frame] = []

    async def main() -> None:
        async with ReplayServer([WS, LISTING], speed=0) as server:
            await run_session(live, ws_url=live.stream_url(server.ws_url()), on_events=events.extend,
                              on_frame=frames.append, backoff=fast_backoff)

    run(main)

    # Assert 1: the same tickers and books, event for event
    assert len(market(offline_events)) == 89 + 36 + 10
    assert market(events) == market(offline_events)
    books = {n: s for n, s in live.stats().instruments.items() if s.syncs}
    assert len(books) == 10 and all(s.gaps == 0 for s in books.values())
    # The listing came from DERIBIT.0 over JSON-RPC: the 10 options with their metadata.
    assert sorted(e.symbol for e in events if isinstance(e, Instrument)) == sorted(NAMES)
    # The only errors: instrument.state channels, which the recording does not hold,
    # left out of the ack as Deribit does with unknown channels.
    errors = [e.reason for e in events if isinstance(e, FeedStatus) and e.state == "error"]
    assert errors == [f"public/subscribe ack lacks instrument.state.option.{c}: not subscribed"
                      for c in ("BTC", "ETH")]
    assert [e.reason for e in events if isinstance(e, FeedStatus)][-11] == f"1000 {END_OF_RECORDING}"

    # Assert 2: the recording holds the requests sent, so it replays to the same events.
    sent = [json.loads(f.payload)["method"] for f in frames if f.kind == "sent"]
    assert sent == ["public/set_heartbeat", "public/subscribe", "public/get_instruments",
                    "public/get_instruments", "public/subscribe"]
    again = new_protocol()
    replayed: list[Event] = []
    for frame in frames:
        replayed += again.feed_frame(frame)
    assert market(replayed) == market(events)
    assert [e.reason for e in replayed if isinstance(e, FeedStatus) and e.state == "error"] == errors


# -- the replay server's JSON-RPC ----------------------------------------------------------------


def test_replay_server_answers_json_rpc_as_deribit_does():
    channels = {"ticker.BTC-24SEP21-8000-P.raw", BOOK}

    async def main() -> tuple[dict[str, dict[str, Any]], list[str], tuple[Any, Any]]:
        async with ReplayServer([WS, LISTING], speed=0) as server:
            assert server.markets["deribit"] == tuple(sorted(NAMES))
            async with connect(f"{server.ws_url()}/ws/api/v2") as ws:
                answers = {
                    "low_heartbeat": await rpc(ws, 1, "public/set_heartbeat", {"interval": 5}),
                    "heartbeat": await rpc(ws, 2, "public/set_heartbeat", {"interval": 60}),
                    "test": await rpc(ws, 3, "public/test", {}),
                    "listing": await rpc(ws, 4, "public/get_instruments",
                                         {"currency": "BTC", "kind": "option", "expired": False}),
                    "unknown": await rpc(ws, 5, "public/hello_world", {}),
                    "unsubscribe_none": await rpc(ws, 7, "public/unsubscribe", {"channels": [BOOK]}),
                    "subscribe": await rpc(ws, 6, "public/subscribe", {"channels": [
                        "ticker.BTC-24SEP21-8000-P.raw", "deribit_volatility_index.btc_usd", BOOK,
                        "trades.BTC-24SEP21-8000-P.raw"]}),
                }
                got = await read_all(ws)
                return answers, got, (ws.close_code, ws.close_reason)

    answers, got, close = run(main)
    assert answers["low_heartbeat"]["error"]["code"] == -32602
    assert answers["heartbeat"]["result"] == "ok"
    assert answers["test"]["result"] == {"version": "volcast-replay"}
    listing = answers["listing"]
    assert len(listing["result"]) == 390 and {i["kind"] for i in listing["result"]} == {"option"}
    assert listing["usOut"] == 1626993723162185  # the recorded answer's own time
    assert answers["unknown"]["error"]["code"] == -32601
    assert answers["unsubscribe_none"]["result"] == []  # only channels actually unsubscribed
    # DVOL is not in the recording: left out. trades was acked in the recording: kept.
    assert answers["subscribe"]["result"] == ["ticker.BTC-24SEP21-8000-P.raw", BOOK, "trades.BTC-24SEP21-8000-P.raw"]
    assert got == recorded(channels) and len(got) == 62
    assert close == (1000, END_OF_RECORDING)


def test_the_listing_is_also_served_over_http():
    async def main() -> tuple[int, dict[str, Any], int]:
        async with ReplayServer([WS, LISTING], speed=0) as server:
            async with httpx.AsyncClient() as http:
                ok = await http.get(f"{server.rest_url()}/api/v2/public/get_instruments?currency=ETH&kind=future")
                bad = await http.get(f"{server.rest_url()}/api/v2/public/get_instruments")
        return ok.status_code, ok.json(), bad.status_code

    status, body, bad = run(main)
    names = sorted(i["instrument_name"] for i in body["result"])
    assert status == 200 and len(names) == 8 and "ETH-PERPETUAL" in names and bad == 400


def test_listing_is_built_from_the_channels_without_a_recorded_one():
    async def main() -> dict[str, Any]:
        async with ReplayServer([WS], speed=0) as server:
            async with connect(f"{server.ws_url()}/ws/api/v2") as ws:
                return await rpc(ws, 1, "public/get_instruments", {"currency": "ETH", "kind": "option"})

    result = run(main)["result"]
    assert [(i["instrument_name"], i["strike"], i["option_type"], i["expiration_timestamp"]) for i in result] == [
        ("ETH-23JUL21-2300-C", 2300.0, "call", 1627027200000),
        ("ETH-27AUG21-4000-P", 4000.0, "put", 1630051200000),
        ("ETH-30JUL21-2800-C", 2800.0, "call", 1627632000000)]


def test_a_late_book_subscription_gets_a_snapshot_of_the_recorded_book_then_its_changes():
    # Arrange: the offline book at the end of the recording
    offline = new_protocol()
    for frame in merge_recordings([WS, LISTING]):
        offline.feed_frame(frame)
    final = offline.stats().instruments["BTC-24SEP21-8000-P"]

    async def main() -> tuple[list[dict[str, Any]], list[str]]:
        async with ReplayServer([WS], speed=10) as server:
            async with connect(f"{server.ws_url()}/ws/api/v2") as ws:
                await rpc(ws, 1, "public/subscribe", {"channels": ["ticker.BTC-24SEP21-8000-P.raw"]})
                for _ in range(12):  # a few seconds of recorded time
                    await ws.recv()
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "public/subscribe",
                                          "params": {"channels": [BOOK]}}))
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "public/unsubscribe",
                                          "params": {"channels": ["ticker.BTC-24SEP21-8000-P.raw"]}}))
                got = await read_all(ws)
        msgs = [json.loads(m) for m in got]
        books = [m["params"]["data"] for m in msgs if m.get("params", {}).get("channel") == BOOK]
        return books, got

    # Act
    books, got = run(main)
    msgs = [json.loads(m) for m in got]
    unsub = next(i for i, m in enumerate(msgs) if m.get("id") == 3)

    # Assert: a snapshot (not the recorded one: changes were played before it), then
    # changes chained to it; the client's book ends as the offline one.
    first = books[0]
    assert first["type"] == "snapshot" and first["change_id"] > 33195894164
    assert all(b["type"] == "change" for b in books[1:]) and len(books) > 1
    ids = [first["change_id"]] + [b["change_id"] for b in books[1:]]
    assert [b["prev_change_id"] for b in books[1:]] == ids[:-1]
    assert msgs[unsub]["result"] == ["ticker.BTC-24SEP21-8000-P.raw"]
    assert not any(m.get("params", {}).get("channel", "").startswith("ticker.") for m in msgs[unsub:])
    client = DeribitProtocol(option_channels=["book"], interval="raw")
    for m in got:
        client.receive_frame(m.encode(), 0)
    mine = client.stats().instruments["BTC-24SEP21-8000-P"]
    assert (mine.seq, mine.best_bid, mine.best_ask, mine.levels, mine.gaps) == (
        final.seq, final.best_bid, final.best_ask, final.levels, 0)


def test_an_unanswered_test_request_closes_the_connection():
    async def main() -> tuple[list[str], Any, float]:
        async with ReplayServer([WS], speed=0, deribit_min_heartbeat_s=0.2) as server:
            async with connect(f"{server.ws_url()}/ws/api/v2") as ws:
                await rpc(ws, 1, "public/set_heartbeat", {"interval": 0.2})
                t0 = time.monotonic()
                got = await read_all(ws)
                return got, (ws.close_code, ws.close_reason), time.monotonic() - t0

    got, close, elapsed = run(main)
    assert got == ['{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}']
    assert close == (1008, "heartbeat test_request not answered")
    assert 0.3 < elapsed < 5


@pytest.mark.slow
def test_the_core_answers_heartbeats_over_the_wire():
    # Arrange: the recording at 10x (about 3 s), a heartbeat every 0.5 s
    proto = new_protocol(heartbeat_s=1)

    async def main() -> int:
        async with ReplayServer([WS, LISTING], speed=10, deribit_min_heartbeat_s=1) as server:
            await run_session(proto, ws_url=proto.stream_url(server.ws_url()), on_events=lambda ev: None,
                              backoff=fast_backoff, max_reconnects=0)
            assert server.deribit is not None
            return server.deribit.tests_answered

    # Act / Assert: answered every test_request; the session ended with the recording.
    assert run(main) >= 2
    assert proto.stats().connections == 1


# -- the shell: timers and close requests ----------------------------------------------------------


class Silent:
    """A websocket server that answers JSON-RPC ``plan[n]`` on connection ``n``:
    ``"silent"`` (never a word), ``"10028"`` (the first request gets too_many_requests),
    ``"end"`` (close 1000 "end of recording" at once)."""

    def __init__(self, plan: list[str]) -> None:
        self.plan = plan
        self.opened: list[float] = []
        self.port = 0

    async def handler(self, ws: ServerConnection) -> None:
        what = self.plan[min(len(self.opened), len(self.plan) - 1)]
        self.opened.append(time.monotonic())
        if what == "end":
            await ws.close(1000, END_OF_RECORDING)
            return
        async for message in ws:
            if what == "10028":
                id_ = json.loads(message)["id"]
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": id_, "error": {
                    "code": 10028, "message": "too_many_requests", "data": None}}))
                await ws.close(1000, "too many requests")  # Deribit ends the session
                return

    async def __aenter__(self) -> Silent:
        self._server = await serve(self.handler, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()


def session(plan: list[str], proto: DeribitProtocol) -> tuple[list[Event], list[Frame], list[float]]:
    events: list[Event] = []
    frames: list[Frame] = []

    async def main() -> list[float]:
        async with Silent(plan) as server:
            await run_session(proto, ws_url=f"ws://127.0.0.1:{server.port}/ws/api/v2", on_events=events.extend,
                              on_frame=frames.append, backoff=fast_backoff)
            return server.opened

    return events, frames, run(main)


def test_a_silent_connection_is_closed_by_the_core_and_reopened():
    # Act: heartbeat 1 s, so 2 s without a frame is a dead connection
    events, frames, opened = session(["silent", "end"], new_protocol(heartbeat_s=1))

    # Assert
    stale = [e for e in events if isinstance(e, FeedStatus) and e.state == "stale"]
    assert len(stale) == 1 and len(opened) == 2
    assert 1.9 < opened[1] - opened[0] < 8
    closes = [f.payload.decode() for f in frames if f.kind == "close"]
    assert closes[0].startswith("no frame for ") and closes[1] == f"1000 {END_OF_RECORDING}"
    sent = [json.loads(f.payload)["method"] for f in frames if f.kind == "sent"]
    assert sent[:2] == ["public/set_heartbeat", "public/subscribe"]  # recorded as they went


def test_too_many_requests_reconnects_no_sooner_than_the_core_asks():
    proto = new_protocol(rate_limit_backoff_s=0.5)
    events, frames, opened = session(["10028", "end"], proto)
    errors = [e for e in events if isinstance(e, FeedStatus) and e.state == "error"]
    assert len(errors) == 1 and "10028" in errors[0].reason
    assert len(opened) == 2 and opened[1] - opened[0] >= 0.5
    assert [f.payload.decode() for f in frames if f.kind == "close"][0] == "too_many_requests (10028)"
