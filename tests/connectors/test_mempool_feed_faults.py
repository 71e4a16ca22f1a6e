"""Misbehaving nodes on loopback: the mempool connectors count, log, reconnect, never crash.

Each server here is a real websockets program on a random 127.0.0.1 port that plays a
scripted node. Every frame it sends is SYNTHETIC (the shapes of protocols.md §4), except
the mempool.space message, which is the real ``mainnet_mempoolInfo.json`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve

from connectors.events import ChainHead, FeedStatus, MempoolStats, MempoolTx
from connectors.io.retry import backoff_delays
from connectors.io.ws import run_session
from connectors.venues.bitcoin import BitcoinMempoolProtocol
from connectors.venues.ethereum import EthereumProtocol

MEMPOOL_INFO = (Path(__file__).resolve().parents[1] / "data" / "mempool_space" / "mainnet_mempoolInfo.json").read_text()
GWEI = 10**9


def fast_backoff():
    return backoff_delays(initial=0.05, cap=0.05, jitter=0)


def note(sub: str, result) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": sub, "result": result}})


HEAD = {"number": "0x10", "hash": "0x" + "10" * 32, "parentHash": "0x" + "0f" * 32, "timestamp": "0x6553f100",
        "baseFeePerGas": hex(10 * GWEI), "gasUsed": hex(15_000_000), "gasLimit": hex(30_000_000)}
TX = {"hash": "0x" + "ab" * 32, "from": "0x" + "11" * 20, "to": "0x" + "22" * 20, "value": "0x1", "type": "0x2",
      "gas": "0x5208", "maxFeePerGas": hex(30 * GWEI), "maxPriorityFeePerGas": hex(2 * GWEI), "input": "0x",
      "nonce": "0x0"}


class BadNode:
    """Connection 1 refuses the pending subscriptions, sends garbage and an unknown
    subscription's notification, one good head, then vanishes (no close frame).
    Connection 2 behaves and sends one pending transaction."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[list[dict]] = []
        self.port = 0

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        conn = self.connections
        seen: list[dict] = []
        self.requests.append(seen)
        heads = f"0x{conn:032x}"
        async for message in ws:
            req = json.loads(message)
            seen.append(req)
            kind = req["params"][0]
            if conn == 1 and kind == "newPendingTransactions":
                await ws.send(json.dumps({"jsonrpc": "2.0", "id": req["id"],
                                          "error": {"code": -32000, "message": "pending transactions disabled"}}))
                if len(req["params"]) == 1:  # the hash fallback was refused too: misbehave, then vanish
                    for garbage in ("{not json", "[1,2]", '{"jsonrpc":"2.0","method":"eth_subscription"}',
                                    note("0x" + "ee" * 16, TX), note(heads, {"hash": "0x1"})):
                        await ws.send(garbage)
                    await ws.send(note(heads, HEAD))
                    await asyncio.sleep(0.05)
                    ws.transport.abort()  # the node disappears mid-stream
                    return
                continue
            sub = heads if kind == "newHeads" else f"0x{100 + conn:032x}"
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": req["id"], "result": sub}))
            if conn > 1 and kind == "newPendingTransactions":
                await ws.send(note(sub, TX))


def test_a_misbehaving_node_is_counted_logged_and_reconnected_to(caplog):
    node = BadNode()

    async def main():
        async with serve(node.handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            proto = EthereumProtocol(f"ws://127.0.0.1:{port}")
            events: list = []
            stop = asyncio.Event()

            def on_events(batch: list) -> None:
                events.extend(batch)
                if any(isinstance(e, MempoolTx) for e in batch):
                    stop.set()

            await asyncio.wait_for(run_session(proto, on_events=on_events, stop=stop, backoff=fast_backoff), 20)
            return proto, events

    with caplog.at_level(logging.INFO):
        proto, events = asyncio.run(main())
    statuses = [(e.state, e.reason) for e in events if isinstance(e, FeedStatus)]
    assert statuses[:4] == [
        ("connected", ""),
        ("error", "newPendingTransactions with full objects refused; asking for hashes"),
        ("error", "newPendingTransactions refused: {'code': -32000, 'message': 'pending transactions disabled'}"),
        ("disconnected", "no close frame"),
    ]
    assert statuses[4:] == [("connected", ""), ("synced", "subscribed newHeads"), ("disconnected", "1000")]
    (head,) = [e for e in events if isinstance(e, ChainHead)]  # the one good head between the garbage
    assert head.height == 16 and head.base_fee == 10 * GWEI
    (tx,) = [e for e in events if isinstance(e, MempoolTx)]
    assert tx.txid == TX["hash"] and tx.effective_tip == 2 * GWEI  # priced with the head of the old connection
    # Resubscribed from scratch on the new connection, full objects asked for again.
    assert [r["params"] for r in node.requests[1]] == [["newPendingTransactions", True], ["newHeads"]]
    st = proto.stats()
    assert st.connections == 2 and st.internal_errors == 0
    assert st.malformed == 5  # unreadable, two non-objects, a notification without params, a header without number
    assert st.ignored == {"rpc_errors": 2, "unknown_subscription": 1}
    logged = [r.getMessage() for r in caplog.records]
    assert sum(line.startswith("ethereum: malformed") for line in logged) == 5
    assert sum(line.startswith("ethereum: node refused subscribe") for line in logged) == 2
    assert any("ignoring unknown_subscription 0xeeee" in line for line in logged)
    assert any(line.startswith("ethereum: lost connection to ws://127.0.0.1:") and "retry 1" in line
               for line in logged)
    assert not any(r.exc_info for r in caplog.records)  # never a traceback


class VanishingMempoolSpace:
    """Answers a client's subscriptions with a real mempool.space message, then vanishes; every time."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def handler(self, ws: ServerConnection) -> None:
        async for message in ws:
            self.received.append(message)
            if '"track-mempool"' in message:  # the client's second message
                await ws.send(MEMPOOL_INFO)
                await asyncio.sleep(0.05)
                ws.transport.abort()
                return


def test_mempool_space_vanishing_mid_stream_is_reconnected_and_asked_again(caplog):
    server_side = VanishingMempoolSpace()

    async def main():
        async with serve(server_side.handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            proto = BitcoinMempoolProtocol(track_mempool=True)
            events: list = []
            stop = asyncio.Event()

            def on_events(batch: list) -> None:
                events.extend(batch)
                if sum(isinstance(e, MempoolStats) for e in events) == 2:
                    stop.set()

            await asyncio.wait_for(run_session(proto, ws_url=f"ws://127.0.0.1:{port}/api/v1/ws",
                                               on_events=on_events, stop=stop, backoff=fast_backoff), 20)
            return proto, events

    with caplog.at_level(logging.WARNING, logger="volcast.connectors"):
        proto, events = asyncio.run(main())
    want = '{"action":"want","data":["blocks","mempool-blocks","stats"]}'
    assert server_side.received[:4] == [want, '{"track-mempool":true}'] * 2  # subscribed again after the drop
    assert [e.size_tx for e in events if isinstance(e, MempoolStats)] == [112686, 112686]
    heights = [e.height for e in events if isinstance(e, ChainHead)]
    assert heights == list(range(837043, 837051))  # the re-sent blocks are not emitted twice
    assert proto.stats().ignored == {"old_block": 8} and proto.stats().connections == 2
    assert any("lost connection" in r.getMessage() for r in caplog.records)
