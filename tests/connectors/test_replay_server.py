"""The replay server against raw websocket and HTTP clients, on real recordings.

Recordings: slices of hftbacktest's Binance BTCUSDT captures (data/binance/hftbacktest)
and cryptofeed's Binance samples (tests/data/cryptofeed), all real market data.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connectors.record import open_recording
from connectors.replay import END_OF_RECORDING, ReplayServer

REPO = Path(__file__).resolve().parents[2]
HFT = REPO / "data/binance/hftbacktest"
CRYPTOFEED = REPO / "tests/data/cryptofeed"
SPOT_DEPTH = "btcusdt@depth@100ms"


def run(main: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """Run one test's coroutine with a hard deadline, so a hang fails instead of stalling."""

    async def bounded() -> Any:
        async with asyncio.timeout(timeout):
            return await main()

    return asyncio.run(bounded())


def head(src: Path, dst: Path, lines: int) -> Path:
    """The first ``lines`` lines of an hftbacktest file, as an hftbacktest file."""
    with gzip.open(src, "rb") as fin, gzip.open(dst, "wb") as fout:
        for i, line in enumerate(fin):
            if i == lines:
                break
            fout.write(line)
    return dst


@pytest.fixture(scope="module")
def spot_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 2000 lines: about 16 s of BTCUSDT spot with the collector's REST snapshot at line 8.
    return head(HFT / "spot/btcusdt_20240808.gz", tmp_path_factory.mktemp("spot") / "s.gz", 2000)


def recorded(path: Path, stream: str) -> list[bytes]:
    """Payloads of ``stream`` in file order, read straight from the recording."""
    needle = b'{"stream":"' + stream.encode() + b'"'
    return [f.payload for f in open_recording(path) if f.payload.startswith(needle)]


def envelope_data(payload: bytes) -> bytes:
    """The ``data`` member of a combined-stream frame, byte for byte."""
    return bytes(msgspec.json.decode(payload, type=dict[str, msgspec.Raw])["data"])


async def read_all(ws: ClientConnection) -> list[str]:
    out: list[str] = []
    try:
        async for message in ws:
            out.append(message if isinstance(message, str) else message.decode())
    except ConnectionClosed:
        pass
    return out


class SpotBook:
    """Independent oracle: Binance's spot local-book steps with Decimal prices."""

    def __init__(self, snapshot: bytes) -> None:
        doc = msgspec.json.decode(snapshot)
        self.last = doc["lastUpdateId"]
        self.bids = {Decimal(p): Decimal(q) for p, q in doc["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in doc["asks"]}

    def apply(self, diff: dict[str, Any]) -> None:
        if diff["u"] <= self.last:
            return
        assert diff["U"] <= self.last + 1, f"gap: U={diff['U']} after {self.last}"
        for side, levels in ((self.bids, diff["b"]), (self.asks, diff["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        self.last = diff["u"]

    def levels(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


def book_levels(body: bytes) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    doc = msgspec.json.decode(body)
    return (
        [(Decimal(p), Decimal(q)) for p, q in doc["bids"]],
        [(Decimal(p), Decimal(q)) for p, q in doc["asks"]],
    )


def test_combined_stream_sends_recorded_frames_in_order_then_closes(spot_slice: Path) -> None:
    # Arrange
    streams = [SPOT_DEPTH, "btcusdt@trade"]
    expected = [
        f.payload.decode()
        for f in open_recording(spot_slice)
        if f.kind == "recv"
        and any(f.payload.startswith(b'{"stream":"' + s.encode()) for s in streams)
    ]

    # Act
    async def main() -> tuple[list[str], int | None, str | None]:
        async with ReplayServer([spot_slice], speed=0) as server:
            async with connect(f"{server.ws_url()}/stream?streams={'/'.join(streams)}") as ws:
                return await read_all(ws), ws.close_code, ws.close_reason

    got, code, reason = run(main)

    # Assert
    assert got == expected
    assert len(expected) > 400
    assert (code, reason) == (1000, END_OF_RECORDING)


def test_raw_path_sends_only_the_data_member(spot_slice: Path) -> None:
    expected = [envelope_data(p).decode() for p in recorded(spot_slice, "btcusdt@bookTicker")]

    async def main() -> list[str]:
        async with ReplayServer([spot_slice], speed=0) as server:
            async with connect(f"{server.ws_url('spot')}/ws/btcusdt@bookTicker") as ws:
                return await read_all(ws)

    assert run(main) == expected


def test_subscribe_message_is_acked_and_adds_the_stream(spot_slice: Path) -> None:
    expected = [p.decode() for p in recorded(spot_slice, "btcusdt@trade")]

    async def main() -> list[str]:
        async with ReplayServer([spot_slice], speed=0) as server:
            async with connect(f"{server.ws_url()}/stream") as ws:
                await ws.send('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
                return await read_all(ws)

    got = run(main)
    assert got[0] == '{"result":null,"id":1}'
    assert got[1:] == expected


def test_unknown_symbol_is_silent_on_the_stream_and_invalid_on_rest(spot_slice: Path) -> None:
    # Like Binance: the stream of an unlisted symbol sends nothing; its depth snapshot is -1121.
    async def main() -> tuple[int | None, str | None, int, int, bytes]:
        async with ReplayServer([spot_slice], speed=0) as server:
            async with connect(f"{server.ws_url()}/stream?streams=xyzusdt@trade") as ws:
                got = await read_all(ws)
            async with httpx.AsyncClient() as http:
                resp = await http.get(f"{server.rest_url()}/api/v3/depth?symbol=XYZUSDT&limit=10")
            return ws.close_code, ws.close_reason, len(got), resp.status_code, resp.content

    code, reason, n_frames, status, body = run(main)
    assert (code, reason, n_frames) == (1000, "end of recording", 0)
    assert status == 400 and b"-1121" in body


def test_speed_scales_the_recorded_pace(tmp_path: Path) -> None:
    # Arrange: 800 lines are about 3.5 s of recorded time.
    path = head(HFT / "spot/btcusdt_20240808.gz", tmp_path / "s.gz", 800)
    frames = list(open_recording(path))
    span_s = (frames[-1].ts_recv_ns - frames[0].ts_recv_ns) / 1e9

    async def elapsed(speed: float) -> float:
        async with ReplayServer([path], speed=speed) as server:
            async with connect(f"{server.ws_url()}/stream?streams=btcusdt@bookTicker") as ws:
                t0 = time.monotonic()
                await read_all(ws)
                return time.monotonic() - t0

    # Act
    fast = run(lambda: elapsed(0))
    paced = run(lambda: elapsed(10))

    # Assert: generous bounds, only the order of magnitude matters.
    assert span_s > 2.0
    assert span_s / 10 * 0.7 <= paced <= span_s / 10 + 5.0
    assert fast < paced


def test_rest_snapshot_waits_for_the_replay_and_equals_the_recorded_one(spot_slice: Path) -> None:
    # Arrange: the collector's snapshot is received 0.27 s into the recording.
    frames = list(open_recording(spot_slice))
    snapshot = next(f for f in frames if f.kind == "rest")
    offset_s = (snapshot.ts_recv_ns - frames[0].ts_recv_ns) / 1e9

    async def main() -> tuple[float, httpx.Response, httpx.Response]:
        async with ReplayServer([spot_slice], speed=1) as server:
            async with connect(f"{server.ws_url()}/stream?streams={SPOT_DEPTH}"):
                async with httpx.AsyncClient(base_url=server.rest_url()) as http:
                    t0 = time.monotonic()
                    full = await http.get(
                        "/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 1000}
                    )
                    waited = time.monotonic() - t0
                    top = await http.get("/api/v3/depth", params={"symbol": "btcusdt", "limit": 5})
        return waited, full, top

    # Act
    waited, full, top = run(main)

    # Assert
    assert offset_s > 0.2
    assert waited >= offset_s / 2  # it did wait for the replay to reach the snapshot
    assert full.status_code == 200
    assert full.headers["content-type"].startswith("application/json")
    assert full.content == snapshot.payload
    recorded_doc = msgspec.json.decode(snapshot.payload)
    top_doc = msgspec.json.decode(top.content)
    assert top_doc["lastUpdateId"] >= recorded_doc["lastUpdateId"]
    assert len(top_doc["bids"]) == len(top_doc["asks"]) == 5


def _diffs(path: Path) -> list[dict[str, Any]]:
    return [msgspec.json.decode(envelope_data(p)) for p in recorded(path, SPOT_DEPTH)]


def test_rest_after_the_end_is_the_book_rebuilt_to_the_last_diff(spot_slice: Path) -> None:
    # Arrange: the oracle book, from the recorded snapshot and every recorded diff.
    snapshot = next(f.payload for f in open_recording(spot_slice) if f.kind == "rest")
    diffs = _diffs(spot_slice)
    oracle = SpotBook(snapshot)
    for diff in diffs:
        oracle.apply(diff)

    async def main() -> httpx.Response:
        async with ReplayServer([spot_slice], speed=0) as server:
            async with connect(f"{server.ws_url()}/stream?streams={SPOT_DEPTH}") as ws:
                await read_all(ws)
            async with httpx.AsyncClient(base_url=server.rest_url()) as http:
                return await http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5000})

    # Act
    response = run(main)

    # Assert
    doc = msgspec.json.decode(response.content)
    assert doc["lastUpdateId"] == diffs[-1]["u"] == oracle.last
    assert book_levels(response.content) == oracle.levels()


def test_rest_mid_replay_bridges_the_diffs_the_client_gets_next(spot_slice: Path) -> None:
    # Arrange
    snapshot = next(f.payload for f in open_recording(spot_slice) if f.kind == "rest")
    recorded_id = msgspec.json.decode(snapshot)["lastUpdateId"]
    oracle = SpotBook(snapshot)
    for diff in _diffs(spot_slice):
        oracle.apply(diff)

    async def main() -> tuple[bytes, list[dict[str, Any]]]:
        async with ReplayServer([spot_slice], speed=0) as server:
            async with connect(f"{server.ws_url()}/stream?streams={SPOT_DEPTH}") as ws:
                seen = 0
                while seen < 30:  # well past the recorded snapshot
                    diff = msgspec.json.decode(envelope_data((await ws.recv()).encode()))
                    seen += diff["u"] > recorded_id
                async with httpx.AsyncClient(base_url=server.rest_url()) as http:
                    r = await http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5000})
                rest = [msgspec.json.decode(envelope_data(m.encode())) for m in await read_all(ws)]
                return r.content, rest

    # Act: sync a book the way a Binance client does, from the mid-replay snapshot.
    body, later = run(main)
    client = SpotBook(body)
    for diff in later:
        client.apply(diff)  # asserts no gap after the snapshot

    # Assert
    assert client.last == oracle.last
    assert client.levels() == oracle.levels()
    assert msgspec.json.decode(body)["lastUpdateId"] > recorded_id  # rebuilt, not recorded


def test_rest_errors_look_like_binance(spot_slice: Path) -> None:
    async def main() -> list[httpx.Response]:
        async with ReplayServer([spot_slice], speed=0) as server:
            async with httpx.AsyncClient(base_url=server.rest_url()) as http:
                return [
                    await http.get("/api/v3/depth", params={"symbol": "XYZUSDT"}),
                    await http.get("/api/v3/depth"),
                    await http.get("/fapi/v1/depth", params={"symbol": "BTCUSDT"}),
                    await http.get("/usdm/api/v3/depth", params={"symbol": "BTCUSDT"}),
                    await http.get("/nope"),
                ]

    unknown, missing, no_usdm, wrong_prefix, nope = run(main)
    assert (unknown.status_code, unknown.content) == (
        400,
        b'{"code":-1121,"msg":"Invalid symbol."}',
    )
    assert missing.status_code == 400 and missing.json()["code"] == -1102
    assert no_usdm.status_code == 404 and "no usdm recordings" in no_usdm.json()["msg"]
    assert wrong_prefix.status_code == 404
    assert nope.status_code == 404


def test_rest_without_a_recorded_snapshot_times_out_with_503(tmp_path: Path) -> None:
    # The 0809 file continues the 0808 connection: it holds no snapshot of its own.
    path = head(HFT / "spot/btcusdt_20240809.gz", tmp_path / "s.gz", 300)

    async def main() -> httpx.Response:
        async with ReplayServer([path], speed=1, snapshot_timeout_s=0.3) as server:
            async with connect(f"{server.ws_url()}/stream?streams={SPOT_DEPTH}"):
                async with httpx.AsyncClient(base_url=server.rest_url()) as http:
                    return await http.get("/api/v3/depth", params={"symbol": "BTCUSDT"})

    response = run(main)
    assert response.status_code == 503
    assert "no depth snapshot of BTCUSDT" in response.json()["msg"]


async def first_message(url: str) -> tuple[str | None, int | None, str | None]:
    """The first message of a connection (``None`` if closed first), and its close."""
    async with connect(url) as ws:
        got = await read_all(ws)
        return (got[0] if got else None), ws.close_code, ws.close_reason


def test_a_symbol_in_one_market_needs_no_prefix() -> None:
    # Arrange: spot (2021-10) and USD-M (2021-07) captures with different symbols.
    paths = [
        CRYPTOFEED / n
        for n in ("BINANCE.ws.1.0", "BINANCE_FUTURES.ws.1.0", "BINANCE_FUTURES.http.0.0")
    ]
    sushi = recorded(CRYPTOFEED / "BINANCE_FUTURES.ws.1.0", "sushiusdt@depth@100ms")
    sushi_rest = next(f.payload for f in open_recording(CRYPTOFEED / "BINANCE_FUTURES.http.0.0"))

    async def main() -> list[Any]:
        async with ReplayServer(paths, speed=0) as server:
            url = f"{server.ws_url()}/stream?streams="
            mixed = await first_message(url + "nknusdt@trade/sushiusdt@trade")
            inferred = await first_message(url + "sushiusdt@depth@100ms")
            async with httpx.AsyncClient(base_url=server.rest_url()) as http:
                params = {"symbol": "SUSHIUSDT", "limit": 1000}
                rest = await http.get("/usdm/fapi/v1/depth", params=params)
                wrong = await http.get("/spot/fapi/v1/depth", params=params)
            return [server.markets, mixed, inferred, rest, wrong]

    # Act
    markets, mixed, inferred, rest, wrong = run(main)

    # Assert
    assert markets == {
        "spot": ("BLZETH", "LRCBTC", "NKNUSDT", "RUNEEUR"),
        "usdm": ("AKROUSDT", "CTKUSDT", "KEEPUSDT", "SUSHIUSDT"),
    }
    assert mixed == (None, 1008, "NKNUSDT, SUSHIUSDT are not all in one market's recordings")
    assert inferred == (sushi[0].decode(), 1000, END_OF_RECORDING)
    assert rest.status_code == 200
    rebuilt, original = msgspec.json.decode(rest.content), msgspec.json.decode(sushi_rest)
    assert rebuilt["lastUpdateId"] > original["lastUpdateId"]
    assert {"E", "T"} <= rebuilt.keys()  # the futures body shape
    assert wrong.status_code == 404


def test_a_symbol_in_two_markets_is_told_apart_by_prefix_or_stream(tmp_path: Path) -> None:
    # Arrange: BTCUSDT on spot and on USD-M.
    spot = head(HFT / "spot/btcusdt_20240808.gz", tmp_path / "spot.gz", 200)
    usdm = head(HFT / "usdm/btcusdt_20240808.gz", tmp_path / "usdm.gz", 200)
    futures_depth = recorded(usdm, "btcusdt@depth@0ms")[0].decode()
    futures_ticker = recorded(usdm, "btcusdt@bookTicker")[0].decode()

    async def main(path: str) -> tuple[str | None, int | None, str | None]:
        async with ReplayServer([spot, usdm], speed=0) as server:
            return await first_message(f"{server.ws_url()}{path}")

    # Act
    ambiguous = run(lambda: main("/stream?streams=btcusdt@bookTicker"))
    prefixed = run(lambda: main("/usdm/stream?streams=btcusdt@bookTicker"))
    by_stream = run(lambda: main("/stream?streams=btcusdt@depth@0ms"))

    # Assert
    assert ambiguous[0] is None and ambiguous[1] == 1008
    assert "use /spot or /usdm" in (ambiguous[2] or "")
    assert prefixed[0] == futures_ticker
    assert by_stream[0] == futures_depth


def test_recordings_days_apart_play_without_the_silence() -> None:
    # The spot and USD-M captures are 81 days apart; at recorded pace the gap is cut.
    paths = [CRYPTOFEED / "BINANCE.ws.1.0", CRYPTOFEED / "BINANCE_FUTURES.ws.1.0"]

    async def main() -> str | None:
        async with ReplayServer(paths, speed=1000, max_gap_s=0.5) as server:
            return (await first_message(f"{server.ws_url()}/stream?streams=nknusdt@bookTicker"))[0]

    assert run(main, timeout=10) == recorded(paths[0], "nknusdt@bookTicker")[0].decode()


def test_a_connection_after_the_end_is_closed_at_once(spot_slice: Path) -> None:
    async def main() -> tuple[int | None, str | None]:
        async with ReplayServer([spot_slice], speed=0) as server:
            async with connect(f"{server.ws_url()}/stream?streams={SPOT_DEPTH}") as ws:
                await read_all(ws)
            async with connect(f"{server.ws_url()}/stream?streams={SPOT_DEPTH}") as ws:
                assert await read_all(ws) == []
                return ws.close_code, ws.close_reason

    assert run(main) == (1000, END_OF_RECORDING)


def test_a_busy_port_is_named_in_the_error(spot_slice: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        async def main() -> None:
            await ReplayServer([spot_slice], port=port).start()

        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            run(main)


def test_missing_recording_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.gz"):
        ReplayServer([tmp_path / "nope.gz"])
