"""The replay server speaking mempool.space's websocket from a recording of real messages.

``tests/data/mempool_space/mempool-space-fixtures.vcr.gz`` holds real mempool.space
messages (upstream fixtures, byte for byte) with receive times assigned by hand; see
that folder's PROVENANCE.md. The unmodified Bitcoin connector runs against the replay.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import msgspec
import pytest
from websockets.asyncio.client import connect

from connectors.events import ChainHead, FeedStatus, MempoolStats, MempoolTx
from connectors.io.ws import run_session
from connectors.record.detect import open_recording
from connectors.record.frames import Frame
from connectors.record.volcast_format import RecordingHeader, encode_header, encode_line
from connectors.replay.server import ReplayServer
from connectors.venues.bitcoin import BitcoinMempoolProtocol

DATA = Path(__file__).resolve().parents[1] / "data" / "mempool_space"
RECORDING = DATA / "mempool-space-fixtures.vcr.gz"
FRAMES = list(open_recording(RECORDING))
WANT = '{"action":"want","data":["blocks","mempool-blocks","stats"]}'


def data_events(events: list) -> list:
    return [msgspec.structs.replace(e, ts_recv_ns=0)
            for e in events if isinstance(e, (ChainHead, MempoolStats, MempoolTx))]


def offline_events() -> list:
    """The recording's messages fed to one connection of the core, in order."""
    proto = BitcoinMempoolProtocol()
    proto.connection_opened(0)
    return data_events([ev for f in FRAMES if f.kind == "recv" for ev in proto.receive_frame(f.payload, 1)])


def test_the_recording_holds_the_fixture_files_byte_for_byte():
    recv = [f.payload for f in FRAMES if f.kind == "recv"]
    names = ["mainnet_mempoolInfo", "tx01_ws_blocks_01", "tx01_ws_mempool_blocks_01", "tx01_ws_tx_replaced",
             "tx02_ws_block", "tx02_ws_mempool_blocks_01", "tx02_ws_next_block", "tx02_ws_tx_position"]
    assert recv == [(DATA / f"{name}.json").read_bytes() for name in names]
    assert [f.payload.decode() for f in FRAMES if f.kind == "sent"] == [WANT, WANT]


def test_the_live_connector_on_the_replay_gives_the_recorded_events():
    async def main():
        async with ReplayServer([RECORDING], speed=0) as server:
            proto = BitcoinMempoolProtocol()
            events: list = []
            await asyncio.wait_for(run_session(proto, ws_url=server.ws_url() + "/api/v1/ws",
                                               on_events=events.extend, max_reconnects=0), 30)
        return events, proto

    events, proto = asyncio.run(main())
    got = data_events(events)
    assert got == offline_events()
    heights = [e.height for e in got if isinstance(e, ChainHead)]
    assert heights == list(range(837043, 837051)) + list(range(890440, 890449))
    stats = [e for e in got if isinstance(e, MempoolStats)]
    assert stats[0].size_tx == 112686 and stats[-1].projected_blocks[0].n_tx == 2558  # tx02_ws_next_block
    assert [e.state for e in events if isinstance(e, FeedStatus)] == ["connected", "disconnected"]
    # Answers to the recording client's own tracking were not replayed, so nothing was ignored.
    assert proto.stats().ignored == {} and proto.stats().malformed == 0


async def _next(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_wants_ping_init_and_late_clients_as_the_backend_answers():
    async def main():
        # 5x: the year between the sessions is cut to 10 s of recorded time, 2 s here.
        async with ReplayServer([RECORDING], speed=5) as server:
            url = server.ws_url() + "/api/v1/ws"
            async with connect(url) as blocks_only:
                await blocks_only.send('{"action":"ping"}')
                assert await blocks_only.recv() == '{"pong": true}'  # the backend's own serialization
                await blocks_only.send('{"action":"want","data":["blocks"]}')
                first = await _next(blocks_only)
                # Of the init-style message: what this client wants, and what goes to every client.
                assert list(first) == ["loadingIndicators", "blocks", "conversions"]
                assert [b["height"] for b in first["blocks"]][-1] == 837050
                # The next blocks message, whose mempool-blocks this client did not want.
                nxt = await _next(blocks_only)
                assert list(nxt) == ["blocks"] and nxt["blocks"][-1]["height"] == 890447
                async with connect(url) as late:
                    # A newly wanted stream is answered at once with the latest replayed value.
                    await late.send('{"action":"want","data":["stats","blocks"]}')
                    now = await _next(late)
                    assert set(now) == {"blocks", "mempoolInfo", "vBytesPerSecond", "fees", "da"}
                    assert now["blocks"][-1]["height"] == 890447 and now["mempoolInfo"]["size"] == 112686
                    await late.send('{"action":"init"}')
                    init = await _next(late)
                    assert {"blocks", "mempool-blocks", "mempoolInfo", "backendInfo", "conversions"} <= set(init)
                    await late.send("not json")
                    await late.wait_closed()
                    assert late.close_code == 1008
                block = await _next(blocks_only)
                assert list(block) == ["block"] and block["block"]["height"] == 890448

    asyncio.run(asyncio.wait_for(main(), 60))


def test_track_mempool_streams_only_to_the_clients_that_track_it(tmp_path: Path):
    # SYNTHETIC messages in the documented shape (protocols.md §4.3): no real capture of
    # mempool-transactions is available.
    added = {"txid": "ab" * 32, "fee": 1500, "vsize": 140.5, "value": 123456, "rate": 10.676}
    msgs = [{"mempool-transactions": {"sequence": k, "added": [dict(added, txid=f"{k:064x}")], "removed": [],
                                      "mined": [], "replaced": []}, "vBytesPerSecond": 1000 + k} for k in range(1, 4)]
    path = tmp_path / "synthetic.vcr.gz"
    with gzip.open(path, "wb") as gz:
        gz.write(encode_header(RecordingHeader(venue="bitcoin", market="all", symbols=["BTC"],
                                               created="2026-01-01T00:00:00.000Z", volcast_version="test")))
        gz.write(encode_line(Frame(1, "c0", "open", b"", "wss://mempool.space/api/v1/ws")))
        for k, msg in enumerate(msgs):
            gz.write(encode_line(Frame(10**9 * (k + 1), "c0", "recv", json.dumps(msg).encode())))

    async def main():
        async with ReplayServer([path], speed=0) as server:
            url = server.ws_url() + "/api/v1/ws"
            tracker = BitcoinMempoolProtocol(track_mempool=True)
            events: list = []
            session = asyncio.create_task(run_session(tracker, ws_url=url, on_events=events.extend, max_reconnects=0))
            async with connect(url) as stats_only:
                await stats_only.send('{"action":"want","data":["stats"]}')
                got = [json.loads(m) async for m in stats_only]
            await asyncio.wait_for(session, 30)
        return events, got

    events, got = asyncio.run(asyncio.wait_for(main(), 30))
    assert [sorted(m) for m in got] == [["vBytesPerSecond"]] * 3  # no transactions without track-mempool
    txs = [e for e in events if isinstance(e, MempoolTx)]
    assert [t.txid for t in txs] == [f"{k:064x}" for k in range(1, 4)] and txs[0].fee_rate_sat_vb == 10.676


@pytest.mark.parametrize("path", ["/api/v1/ws", "/"])
def test_a_server_without_that_recording_refuses_its_path(path: str):
    async def main():
        spot = Path(__file__).resolve().parents[1] / "data" / "cryptofeed" / "BINANCE.ws.1.0"
        async with ReplayServer([spot], speed=0) as server:
            with pytest.raises(Exception, match="404"):
                async with connect(server.ws_url() + path):
                    pass

    asyncio.run(main())
