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


def test_a_contract_call_and_a_legacy_transaction_field_by_field(anvil, anvil_rpc):
    # Calldata with Uniswap V2's swapExactETHForTokens selector to the V2 router address
    # (no code there on a dev chain: the node still takes the transaction into its pool).
    router = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
    calldata = "0x7ff36ab5" + "00" * 128

    async def scenario():
        proto = EthereumProtocol(f"ws://127.0.0.1:{anvil}")
        events: list = []
        stop = asyncio.Event()
        task = asyncio.create_task(run_session(proto, on_events=events.extend, stop=stop, max_reconnects=0))
        try:
            await _wait_for(events, lambda e: isinstance(e, FeedStatus) and e.state == "synced")
            call = await asyncio.to_thread(anvil_rpc, anvil, "eth_sendTransaction", [{
                "from": DEV0, "to": router, "value": hex(3 * 10**17), "gas": hex(200_000), "data": calldata,
                "maxFeePerGas": hex(40 * GWEI), "maxPriorityFeePerGas": hex(1 * GWEI)}])
            legacy = await asyncio.to_thread(anvil_rpc, anvil, "eth_sendTransaction", [{
                "from": DEV1, "to": DEV0, "value": hex(7), "gas": hex(21000), "gasPrice": hex(5 * GWEI)}])
            got_call = await _wait_for(events, lambda e: isinstance(e, MempoolTx) and e.txid == call)
            got_legacy = await _wait_for(events, lambda e: isinstance(e, MempoolTx) and e.txid == legacy)
            return got_call, got_legacy
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    call, legacy = asyncio.run(scenario())
    assert call.to.lower() == router and call.selector == "0x7ff36ab5" and call.input_len == 4 + 128
    assert call.tx_type == 2 and call.gas_limit == 200_000 and call.value == 3 * 10**17
    assert call.dex_swap and call.swap_notional_wei == 3 * 10**17  # ETH in: its value is the notional
    assert legacy.tx_type == 0 and legacy.gas_price_reported == 5 * GWEI and legacy.max_fee is None
    assert legacy.sender.lower() == DEV1.lower() and legacy.value == 7 and legacy.nonce == 0


def test_the_connector_reconnects_and_resubscribes_after_the_node_restarts(anvil_node, anvil_rpc):
    port = anvil_node.port

    async def scenario():
        proto = EthereumProtocol(f"ws://127.0.0.1:{port}")
        events: list = []
        stop = asyncio.Event()
        fast = lambda: iter([0.1] * 1000)  # noqa: E731  retry every 0.1 s while the node is down
        task = asyncio.create_task(run_session(proto, on_events=events.extend, stop=stop, backoff=fast))
        try:
            await _wait_for(events, lambda e: isinstance(e, FeedStatus) and e.state == "synced")
            await asyncio.to_thread(anvil_node.stop)
            await _wait_for(events, lambda e: isinstance(e, FeedStatus) and e.state == "disconnected")
            await asyncio.to_thread(anvil_node.start)
            synced = [e for e in events if isinstance(e, FeedStatus) and e.state == "synced"]
            await _wait_for(events, lambda e: isinstance(e, FeedStatus) and e.state == "synced" and e not in synced,
                            timeout=30)
            sent = await asyncio.to_thread(anvil_rpc, port, "eth_sendTransaction", [{
                "from": DEV0, "to": DEV1, "value": hex(1), "gas": hex(21000), "gasPrice": hex(2 * GWEI)}])
            await _wait_for(events, lambda e: isinstance(e, MempoolTx) and e.txid == sent)
            return proto.stats()
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    stats = asyncio.run(scenario())
    assert stats.connections >= 2 and stats.internal_errors == 0
