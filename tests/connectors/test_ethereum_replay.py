"""The replay server speaking an Ethereum node's JSON-RPC from a real anvil recording.

``tests/data/ethereum/anvil-mempool.vcr.gz`` is what ``volcast record --venue ethereum``
captured from a local anvil (see its PROVENANCE.md); the unmodified connector runs
against the replay and must give the events the recording gives offline.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest
from websockets.asyncio.client import connect

from connectors.events import ChainHead, FeedStatus, MempoolTx
from connectors.io.ws import run_session
from connectors.record.detect import open_recording
from connectors.replay.server import ReplayServer
from connectors.venues.ethereum import EthereumProtocol

RECORDING = Path(__file__).resolve().parents[1] / "data" / "ethereum" / "anvil-mempool.vcr.gz"
FRAMES = list(open_recording(RECORDING))


def data_events(events: list) -> list:
    """Transactions and heads without their receive times (those are the replay's own)."""
    return [msgspec.structs.replace(e, ts_recv_ns=0) for e in events if isinstance(e, (MempoolTx, ChainHead))]


def offline_events(full_tx: bool = True) -> list:
    proto = EthereumProtocol(full_tx=full_tx)
    return data_events([ev for frame in FRAMES for ev in proto.feed_frame(frame)])


async def replayed(full_tx: bool, speed: float) -> tuple[list, EthereumProtocol]:
    async with ReplayServer([RECORDING], speed=speed) as server:
        proto = EthereumProtocol(full_tx=full_tx)
        events: list = []
        await asyncio.wait_for(run_session(proto, ws_url=server.ws_url(), on_events=events.extend,
                                           max_reconnects=0), 30)
    return events, proto


def test_recording_holds_what_its_provenance_says():
    recv = [f for f in FRAMES if f.kind == "recv"]
    events = offline_events()
    assert [f.kind for f in FRAMES[:3]] == ["open", "sent", "sent"] and len(recv) == 66
    assert sum(isinstance(e, MempoolTx) for e in events) == 54
    assert [e.height for e in events if isinstance(e, ChainHead)] == list(range(1, 11))
    assert {e.tx_type for e in events if isinstance(e, MempoolTx)} == {0, 1, 2}


# Lookups need the recorded pace (5x here): at speed 0 the recording ends, and the server
# closes, before the answers to the last lookups are back.
@pytest.mark.parametrize("full_tx, speed", [(True, 0), (False, 5)], ids=["full_objects", "hashes_then_lookups"])
def test_the_live_connector_on_the_replay_gives_the_recorded_events(full_tx, speed):
    events, proto = asyncio.run(replayed(full_tx, speed))
    if full_tx:
        assert data_events(events) == offline_events()
    else:
        # A lookup's answer comes a round trip later, maybe after a head the replay sent
        # meanwhile: the same transactions, each priced against the head it met.
        def txs(evs):
            return sorted((msgspec.structs.replace(e, effective_tip=None) for e in evs if isinstance(e, MempoolTx)),
                          key=lambda e: e.txid)

        def heads(evs):
            return [e for e in evs if isinstance(e, ChainHead)]

        assert txs(data_events(events)) == txs(offline_events())
        assert heads(data_events(events)) == heads(offline_events())
    states = [e.state for e in events if isinstance(e, FeedStatus)]
    assert states == ["connected", "synced", "disconnected"]
    assert events[-1].reason == "1000 end of recording"
    st = proto.stats()
    assert st.malformed == 0 and st.internal_errors == 0 and st.ignored == {}


async def _rpc(ws, request: dict | list | None, notes: list | None = None):
    """Send a request (None: it was sent); its answer (notifications before it go to ``notes``)."""
    if request is not None:
        await ws.send(json.dumps(request))
    while True:
        msg = json.loads(await ws.recv())
        if isinstance(msg, list) or msg.get("method") != "eth_subscription":
            return msg
        if notes is not None:
            notes.append(msg)


def _req(rid: int, method: str, params: list) -> dict:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


def test_json_rpc_answers_as_a_node_does():
    recorded = {e.txid: e for e in offline_events() if isinstance(e, MempoolTx)}
    first_tx = next(iter(recorded))

    async def main():
        # At 3x the recorded pace: b's requests are answered long before the recording ends.
        async with ReplayServer([RECORDING], speed=3) as server:
            async with connect(server.ws_url()) as a, connect(server.ws_url()) as b:
                sub_a = (await _rpc(a, _req(1, "eth_subscribe", ["newPendingTransactions", True])))["result"]
                heads_a = (await _rpc(a, _req(2, "eth_subscribe", ["newHeads"])))["result"]
                sub_b = (await _rpc(b, _req("x", "eth_subscribe", ["newPendingTransactions"])))["result"]
                assert len({sub_a, heads_a, sub_b}) == 3 and all(len(s) == 34 for s in (sub_a, heads_a, sub_b))
                # Per client: its own ids; full objects for a, hashes for b (as each asked).
                note_a = json.loads(await a.recv())
                while note_a["params"]["subscription"] != sub_a:
                    assert note_a["params"]["subscription"] == heads_a
                    note_a = json.loads(await a.recv())
                note_b = json.loads(await b.recv())
                assert note_b == {"jsonrpc": "2.0", "method": "eth_subscription",
                                  "params": {"subscription": sub_b, "result": note_a["params"]["result"]["hash"]}}
                assert note_a["params"]["result"]["hash"] == first_tx
                # Lookups of recorded objects, a batch, the unknowns, the errors.
                notes_b: list = []
                found = await _rpc(b, _req(3, "eth_getTransactionByHash", [first_tx.upper().replace("0X", "0x")]),
                                   notes_b)
                assert found["id"] == 3 and found["result"]["hash"] == first_tx
                batch = await _rpc(b, [_req(4, "eth_getTransactionByHash", ["0x" + "00" * 32]),
                                       _req(5, "eth_chainId", [])], notes_b)
                assert batch == [{"jsonrpc": "2.0", "id": 4, "result": None},
                                 {"jsonrpc": "2.0", "id": 5, "error": {
                                     "code": -32601, "message": "the method eth_chainId does not exist/is not available"}}]
                bogus = await _rpc(b, _req(6, "eth_subscribe", ["logs"]), notes_b)
                assert bogus["error"] == {"code": -32601, "message": 'no "logs" subscription in eth namespace'}
                await b.send("{not json")
                assert (await _rpc(b, None, notes_b))["error"]["code"] == -32700
                assert (await _rpc(b, _req(7, "eth_unsubscribe", [sub_b]), notes_b))["result"] is True
                assert all(n["params"]["subscription"] == sub_b and n["params"]["result"] in recorded
                           for n in notes_b)  # hashes of recorded transactions, with b's id
                gone = await _rpc(b, _req(8, "eth_unsubscribe", [sub_b]))
                assert gone["error"] == {"code": -32000, "message": "subscription not found"}
                assert (await _rpc(b, _req(9, "eth_unsubscribe", [sub_a])))["error"]["code"] == -32000  # a's, not b's
                # Unsubscribed: b hears nothing more; a goes on to the end of the recording.
                while True:
                    msg = await a.recv()
                    assert json.loads(msg)["params"]["subscription"] in (sub_a, heads_a)
                    if '"number":"0xa"' in msg:
                        break
                await a.wait_closed()
                assert (a.close_code, a.close_reason) == (1000, "end of recording")
                await b.wait_closed()
                assert not [m async for m in b]  # nothing was left for b after its unsubscribe

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_client_after_the_end_is_closed_at_once():
    async def main():
        async with ReplayServer([RECORDING], speed=0) as server:
            async with connect(server.ws_url()) as ws:
                await _rpc(ws, _req(1, "eth_subscribe", ["newHeads"]))
                await ws.wait_closed()  # the replay played to its end
            async with connect(server.ws_url()) as late:
                await late.wait_closed()
                assert (late.close_code, late.close_reason) == (1000, "end of recording")

    asyncio.run(asyncio.wait_for(main(), 30))
