"""End to end: EthereumProtocol driven by connectors.io.ws.run_session against a real
anvil node on 127.0.0.1 (no other traffic; the ``anvil`` fixture is in tests/conftest.py).
"""

from __future__ import annotations

import asyncio

import pytest

from connectors.events import ChainHead, FeedStatus, MempoolTx
from connectors.io.ws import run_session
from connectors.venues.ethereum import EthereumProtocol

DEV0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil default mnemonic, account 0
DEV1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
GWEI = 10**9


async def _wait_for(events: list, pred, timeout: float = 10.0):
    end = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < end:
        for e in events:
            if pred(e):
                return e
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out; got {events!r:.2000}")


async def _scenario(port: int, full_tx: bool, _rpc):
    proto = EthereumProtocol(f"ws://127.0.0.1:{port}", full_tx=full_tx)
    events: list = []
    stop = asyncio.Event()
    task = asyncio.create_task(run_session(proto, on_events=events.extend, stop=stop, max_reconnects=0))
    try:
        await _wait_for(events, lambda e: isinstance(e, FeedStatus) and e.state == "synced")
        send = lambda **kw: asyncio.to_thread(_rpc, port, "eth_sendTransaction", [{  # noqa: E731
            "from": DEV0, "to": DEV1, "value": hex(10**18), "gas": hex(21000),
            "maxFeePerGas": hex(50 * GWEI), "maxPriorityFeePerGas": hex(2 * GWEI), **kw}])
        h1 = await send()
        tx1 = await _wait_for(events, lambda e: isinstance(e, MempoolTx) and e.txid == h1)
        await asyncio.to_thread(_rpc, port, "evm_mine", [])
        head = await _wait_for(events, lambda e: isinstance(e, ChainHead))
        h2 = await send(nonce=hex(1))
        tx2 = await _wait_for(events, lambda e: isinstance(e, MempoolTx) and e.txid == h2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    return proto, tx1, head, tx2


@pytest.mark.parametrize("full_tx", [True, False], ids=["full_tx", "hash_only_lookups"])
def test_pending_txs_and_heads_from_anvil(anvil, anvil_rpc, full_tx):
    proto, tx1, head, tx2 = asyncio.run(_scenario(anvil, full_tx, anvil_rpc))
    assert tx1.sender.lower() == DEV0.lower() and tx1.to.lower() == DEV1.lower()
    assert tx1.value == 10**18 and tx1.tx_type == 2 and tx1.gas_limit == 21000 and tx1.nonce == 0
    assert tx1.max_fee == 50 * GWEI and tx1.max_priority_fee == 2 * GWEI
    assert tx1.effective_tip is None  # no head seen yet
    assert head.height == 1 and head.base_fee is not None and head.gas_used_ratio is not None
    assert proto.base_fee_next is not None
    assert tx2.nonce == 1
    assert tx2.effective_tip == min(2 * GWEI, 50 * GWEI - proto.base_fee_next)
    st = proto.stats()
    assert st.malformed == 0 and st.internal_errors == 0 and "rpc_errors" not in st.ignored
