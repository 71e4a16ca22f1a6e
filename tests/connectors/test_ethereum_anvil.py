"""End to end: EthereumProtocol driven by connectors.io.ws.run_session against a real
anvil node on 127.0.0.1 (no other traffic; the ``anvil`` fixture is in tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import functools

import msgspec
import pytest

from connectors.events import ChainHead, FeedStatus, MempoolTx
from connectors.io.ws import run_session
from connectors.record.writer import RecordingWriter
from connectors.replay.server import ReplayServer
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
            # Before the restart: the connector may resubscribe before start() returns.
            synced = [e for e in events if isinstance(e, FeedStatus) and e.state == "synced"]
            await asyncio.to_thread(anvil_node.start)
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


DEV2 = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
WETH = "c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"  # mainnet WETH: a V3 call with it as tokenIn prices in ETH
SINK_INITCODE = "0x6001600c60003960016000f300"  # raw bytecode deploying the 1-byte runtime 00 (STOP)


def _word(value: int | str) -> str:
    return f"{value:064x}" if isinstance(value, int) else value.lower().removeprefix("0x").rjust(64, "0")


def _next_base_fee(port: int, anvil_rpc) -> int:
    """The node's own next base fee (eth_feeHistory's last entry is the pending block's)."""
    return int(anvil_rpc(port, "eth_feeHistory", ["0x1", "latest", []])["baseFeePerGas"][-1], 16)


async def _session(port: int, full_tx: bool = True, on_frame=None):
    proto = EthereumProtocol(f"ws://127.0.0.1:{port}", full_tx=full_tx)
    events: list = []
    stop = asyncio.Event()
    task = asyncio.create_task(run_session(proto, on_events=events.extend, on_frame=on_frame, stop=stop,
                                           max_reconnects=0))
    await _wait_for(events, lambda e: isinstance(e, FeedStatus) and e.state == "synced")
    return proto, events, stop, task


def test_eip1559_a_raw_bytecode_deployment_and_calls_to_it_match_the_node_field_by_field(anvil, anvil_rpc):
    """Every pending transaction matches the node's own ``eth_getTransactionByHash`` object, and
    the effective tip is min(maxPriorityFee, maxFee - next base fee) with the node's next base fee."""
    rpc = functools.partial(anvil_rpc, anvil)

    async def scenario():
        proto, events, stop, task = await _session(anvil)
        try:
            await asyncio.to_thread(rpc, "evm_mine", [])  # a head: the next base fee is known from here on
            await _wait_for(events, lambda e: isinstance(e, ChainHead) and e.height == 1)
            base_next = await asyncio.to_thread(_next_base_fee, anvil, anvil_rpc)
            send = lambda **tx: asyncio.to_thread(rpc, "eth_sendTransaction", [tx])  # noqa: E731
            sent = {
                # The fee cap binds: maxFee - base_next = 1.5 gwei < the priority fee, base_next + 1 gwei.
                "cap_binds": await send(**{"from": DEV0, "to": DEV1, "value": hex(5), "gas": hex(21000), "nonce": "0x0",
                                          "maxFeePerGas": hex(base_next + 3 * GWEI // 2),
                                          "maxPriorityFeePerGas": hex(base_next + GWEI)}),
                "tip_binds": await send(**{"from": DEV1, "to": DEV0, "value": hex(6), "gas": hex(21000), "nonce": "0x0",
                                          "maxFeePerGas": hex(30 * GWEI), "maxPriorityFeePerGas": hex(3 * GWEI)}),
                "deploy": await send(**{"from": DEV2, "data": SINK_INITCODE, "gas": hex(100_000), "nonce": "0x0",
                                       "maxFeePerGas": hex(30 * GWEI), "maxPriorityFeePerGas": hex(1 * GWEI)}),
            }
            for name in sent:
                await _wait_for(events, lambda e, h=sent[name]: isinstance(e, MempoolTx) and e.txid == h)
            await asyncio.to_thread(rpc, "evm_mine", [])
            sink = (await asyncio.to_thread(rpc, "eth_getTransactionReceipt", [sent["deploy"]]))["contractAddress"]
            assert (await asyncio.to_thread(rpc, "eth_getCode", [sink, "latest"])) == "0x00"
            await _wait_for(events, lambda e: isinstance(e, ChainHead) and e.height == 2)
            base_next = await asyncio.to_thread(_next_base_fee, anvil, anvil_rpc)
            v3 = ("0x414bf389" + _word(WETH) + _word(DEV1) + _word(3000) + _word(DEV0) + _word(2_000_000_000)
                  + _word(7 * 10**17) + _word(1) + _word(0))  # exactInputSingle, WETH in, amountIn 0.7 ETH
            v2_tokens = "0x38ed1739" + _word(5 * 10**18) + _word(1) + _word(0xA0) + _word(DEV0) + _word(1) + _word(0)
            sent["v3_weth_in"] = await send(**{"from": DEV0, "to": sink, "data": v3, "gas": hex(90_000),
                                               "nonce": "0x1", "maxFeePerGas": hex(30 * GWEI),
                                               "maxPriorityFeePerGas": hex(2 * GWEI)})
            sent["v2_token_in"] = await send(**{"from": DEV1, "to": sink, "data": v2_tokens, "gas": hex(90_000),
                                                "nonce": "0x1", "gasPrice": hex(4 * GWEI)})
            got = {}
            for name, tx_hash in sent.items():
                got[name] = await _wait_for(events, lambda e, h=tx_hash: isinstance(e, MempoolTx) and e.txid == h)
            node = {name: await asyncio.to_thread(rpc, "eth_getTransactionByHash", [h]) for name, h in sent.items()}
            return proto, got, node, base_next, sink
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    proto, got, node, base_next, sink = asyncio.run(scenario())
    h = lambda v: int(v, 16) if v is not None else None  # noqa: E731
    for name, ev in got.items():
        tx = node[name]
        assert ev.txid == tx["hash"] and ev.sender == tx["from"] and ev.to == tx["to"], name
        assert (ev.value, ev.tx_type, ev.gas_limit, ev.nonce) == (h(tx["value"]), h(tx["type"]), h(tx["gas"]),
                                                                 h(tx["nonce"])), name
        assert (ev.max_fee, ev.max_priority_fee) == (h(tx.get("maxFeePerGas")), h(tx.get("maxPriorityFeePerGas"))), name
        assert ev.input_len == (len(tx["input"]) - 2) // 2, name
        assert ev.selector == (tx["input"][:10] if tx["to"] and len(tx["input"]) >= 10 else None), name
    # Effective tips, against the node's own next base fee at each arrival.
    first_base = got["cap_binds"].max_fee - 3 * GWEI // 2
    assert got["cap_binds"].effective_tip == 3 * GWEI // 2 < got["cap_binds"].max_priority_fee
    assert got["tip_binds"].effective_tip == 3 * GWEI and got["deploy"].effective_tip == 1 * GWEI
    assert got["v3_weth_in"].effective_tip == min(2 * GWEI, 30 * GWEI - base_next)
    assert got["v2_token_in"].effective_tip == 4 * GWEI - base_next  # legacy: gasPrice - next base fee
    assert proto.base_fee_next == base_next and first_base > base_next  # an empty block lowers the base fee
    assert got["v2_token_in"].tx_type == 0 and got["v2_token_in"].gas_price_reported == 4 * GWEI
    # The deployment: no recipient, so no selector, however its initcode starts.
    deploy = got["deploy"]
    assert deploy.to is None and deploy.selector is None and deploy.input_len == 13 and not deploy.dex_swap
    # The calls to the deployed contract: router selectors, decoded as far as the calldata tells.
    v3 = got["v3_weth_in"]
    assert v3.to == sink and v3.selector == "0x414bf389" and v3.input_len == 4 + 8 * 32 and v3.dex_swap
    assert v3.swap_token_in == "0x" + WETH and v3.swap_amount_in == v3.swap_notional_wei == 7 * 10**17
    v2 = got["v2_token_in"]
    assert v2.selector == "0x38ed1739" and v2.dex_swap and v2.swap_amount_in == 5 * 10**18
    assert v2.swap_notional_wei is None  # a token in: no ETH notional is made up
    for ev in (got["cap_binds"], got["tip_binds"]):
        assert ev.selector is None and ev.input_len == 0 and not ev.dex_swap


def test_mined_heads_carry_the_nodes_base_fee_and_the_next_one_is_predicted(anvil, anvil_rpc):
    """Heads from evm_mine/anvil_mine match the node's blocks; the core's EIP-1559 next base fee
    equals the node's, for an empty block (fee falls) and a block above its gas target (fee rises)."""
    rpc = functools.partial(anvil_rpc, anvil)
    burner = "0x6004600c60003960046000f35b600056"  # deploys JUMPDEST PUSH1 0 JUMP: loops until out of gas

    async def scenario():
        proto, events, stop, task = await _session(anvil)
        predicted = []
        try:
            await asyncio.to_thread(rpc, "evm_mine", [])
            await _wait_for(events, lambda e: isinstance(e, ChainHead) and e.height == 1)
            predicted.append((2, proto.base_fee_next))
            deploy = await asyncio.to_thread(rpc, "eth_sendTransaction", [{
                "from": DEV0, "data": burner, "gas": hex(100_000), "gasPrice": hex(3 * GWEI), "nonce": "0x0"}])
            await asyncio.to_thread(rpc, "evm_mine", [])
            await _wait_for(events, lambda e: isinstance(e, ChainHead) and e.height == 2)
            predicted.append((3, proto.base_fee_next))
            loop = (await asyncio.to_thread(rpc, "eth_getTransactionReceipt", [deploy]))["contractAddress"]
            await asyncio.to_thread(rpc, "eth_sendTransaction", [{  # burns 16M of the 30M gas limit
                "from": DEV1, "to": loop, "gas": hex(16_000_000), "gasPrice": hex(3 * GWEI), "nonce": "0x0"}])
            await asyncio.to_thread(rpc, "anvil_mine", ["0x3"])  # three blocks in one call
            await _wait_for(events, lambda e: isinstance(e, ChainHead) and e.height == 5)
            return [e for e in events if isinstance(e, ChainHead)], predicted, proto.base_fee_next
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    heads, predicted, last_prediction = asyncio.run(scenario())
    assert [hd.height for hd in heads] == [1, 2, 3, 4, 5]
    blocks = {n: anvil_rpc(anvil, "eth_getBlockByNumber", [hex(n), False]) for n in range(0, 6)}
    for hd in heads:
        b = blocks[hd.height]
        assert hd.block_hash == b["hash"] and hd.parent_hash == blocks[hd.height - 1]["hash"]
        assert hd.base_fee == int(b["baseFeePerGas"], 16)
        assert hd.gas_used_ratio == int(b["gasUsed"], 16) / int(b["gasLimit"], 16)
        assert hd.ts_exchange_ns == int(b["timestamp"], 16) * 10**9
    for height, fee in predicted:
        assert fee == int(blocks[height]["baseFeePerGas"], 16)
    assert heads[2].gas_used_ratio > 0.5 and heads[3].base_fee > heads[2].base_fee  # above target: the fee rose
    assert heads[1].base_fee < heads[0].base_fee  # a nearly empty block: it fell
    assert last_prediction == _next_base_fee(anvil, anvil_rpc)


@pytest.mark.parametrize("full_tx, speed", [(True, 0), (False, 5)], ids=["full_objects", "hashes_then_lookups"])
def test_recorded_from_anvil_then_replayed_the_connector_gives_the_same_events(anvil, anvil_rpc, tmp_path,
                                                                                full_tx, speed):
    """Record a live session (what ``volcast record --venue ethereum`` does), replay it, compare."""
    rpc = functools.partial(anvil_rpc, anvil)

    async def live():
        with RecordingWriter(tmp_path, venue="ethereum", market="all", symbols=["ETH"]) as writer:
            proto, events, stop, task = await _session(anvil, full_tx, on_frame=writer.write)
            try:
                sent = []
                for n in range(3):
                    await asyncio.to_thread(rpc, "evm_mine", [])
                    for acct, to in ((DEV0, DEV1), (DEV1, DEV0)):
                        sent.append(await asyncio.to_thread(rpc, "eth_sendTransaction", [{
                            "from": acct, "to": to, "value": hex(n + 1), "gas": hex(21000), "nonce": hex(n),
                            "maxFeePerGas": hex(20 * GWEI), "maxPriorityFeePerGas": hex((n + 1) * GWEI)}]))
                        await _wait_for(events, lambda e, h=sent[-1]: isinstance(e, MempoolTx) and e.txid == h)
                        await asyncio.sleep(0.1)
                await asyncio.to_thread(rpc, "evm_mine", [])
                await _wait_for(events, lambda e: isinstance(e, ChainHead) and e.height == 4)
            finally:
                stop.set()
                await asyncio.wait_for(task, 10)
        return events, writer.completed

    async def replay(files):
        async with ReplayServer(files, speed=speed) as server:
            proto = EthereumProtocol(full_tx=full_tx)
            events: list = []
            await asyncio.wait_for(run_session(proto, ws_url=server.ws_url(), on_events=events.extend,
                                               max_reconnects=0), 60)
        return events

    live_events, files = asyncio.run(live())
    replayed = asyncio.run(replay(files))

    def data(evs):  # receive times are each session's own
        return [msgspec.structs.replace(e, ts_recv_ns=0) for e in evs if isinstance(e, (MempoolTx, ChainHead))]

    assert len([e for e in data(live_events) if isinstance(e, MempoolTx)]) == 6
    assert data(replayed) == data(live_events)
