"""EthereumProtocol: eth_subscribe over JSON-RPC, sans I/O.

Frame provenance: the pending-tx notification ``BSC_NOTIFICATION`` is the real one
quoted from bnb-chain/bsc #1787 in /work/shared/research/protocols.md §4.1; that quote
elides the tails of the hashes, addresses and value with "…", and only those elided
tails are filled in here (marked SYNTHETIC). Every other frame is SYNTHETIC, built in
the shape geth/anvil send (protocols.md §4.1/§4.2).
"""

from __future__ import annotations

import json

from connectors.events import ChainHead, FeedStatus, MempoolTx
from connectors.venues.ethereum import EthereumProtocol
from connectors.venues.ethereum.parse import next_base_fee

GWEI = 10**9
PENDING_SUB = "0x239b0000000000000000000000000000"  # real prefix 0x239b, SYNTHETIC tail
HEADS_SUB = "0xcd0c0000000000000000000000000000"  # SYNTHETIC


def notif(sub: str, result) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": sub, "result": result}}
    ).encode()


# Real (bnb-chain/bsc #1787) except the elided tails of from/hash/to/value (SYNTHETIC).
BSC_TX = {
    "blockHash": None, "blockNumber": None,
    "from": "0xec55" + "00" * 18, "gas": "0x5208", "gasPrice": "0x4c142e1d4",
    "maxFeePerGas": "0x4c142e1d4", "maxPriorityFeePerGas": "0x3b9aca00",
    "hash": "0xd213" + "00" * 30, "input": "0x", "nonce": "0xcf", "to": "0x22ff" + "00" * 18,
    "transactionIndex": None, "value": "0x15af1d78b58c40000", "type": "0x2",
}
BSC_NOTIFICATION = notif(PENDING_SUB, BSC_TX)


def head(number: int, base_fee: int, gas_used: int, gas_limit: int = 30_000_000) -> bytes:
    """SYNTHETIC newHeads notification."""
    return notif(HEADS_SUB, {
        "number": hex(number), "hash": "0x" + f"{number:064x}", "parentHash": "0x" + f"{number - 1:064x}",
        "timestamp": hex(1_700_000_000 + number), "baseFeePerGas": hex(base_fee),
        "gasUsed": hex(gas_used), "gasLimit": hex(gas_limit), "miner": "0x" + "00" * 20,
    })


def connected(**kw) -> EthereumProtocol:
    p = EthereumProtocol(**kw)
    p.connection_opened(1)
    p.frames_to_send()
    p.receive_frame(b'{"jsonrpc":"2.0","id":1,"result":"%s"}' % PENDING_SUB.encode(), 2)
    p.receive_frame(b'{"jsonrpc":"2.0","id":2,"result":"%s"}' % HEADS_SUB.encode(), 3)
    return p


def test_subscribe_frames_byte_exact_and_ids_mapped():
    p = EthereumProtocol()
    (ev,) = p.connection_opened(10)
    assert isinstance(ev, FeedStatus) and ev.state == "connected"
    assert p.frames_to_send() == [
        '{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newPendingTransactions",true]}',
        '{"jsonrpc":"2.0","id":2,"method":"eth_subscribe","params":["newHeads"]}',
    ]
    assert p.frames_to_send() == []
    assert p.receive_frame(b'{"jsonrpc":"2.0","id":1,"result":"%s"}' % PENDING_SUB.encode(), 11) == []
    (st,) = p.receive_frame(b'{"jsonrpc":"2.0","id":2,"result":"%s"}' % HEADS_SUB.encode(), 12)
    assert st.state == "synced"
    assert p.subscriptions() == {PENDING_SUB: "newPendingTransactions", HEADS_SUB: "newHeads"}


def test_real_bsc_notification_field_by_field_before_any_head():
    p = connected()
    (tx,) = p.receive_frame(BSC_NOTIFICATION, 100)
    assert isinstance(tx, MempoolTx)
    assert (tx.venue, tx.symbol, tx.chain, tx.ts_exchange_ns, tx.ts_recv_ns) == ("ethereum", "ETH", "ethereum", None, 100)
    assert tx.txid == BSC_TX["hash"] and tx.sender == BSC_TX["from"] and tx.to == BSC_TX["to"]
    assert tx.value == 0x15AF1D78B58C40000 == 25_000_000_000_000_000_000
    assert tx.tx_type == 2 and tx.gas_limit == 21000 and tx.nonce == 0xCF
    assert tx.max_fee == tx.gas_price_reported == 20_422_255_060
    assert tx.max_priority_fee == 1 * GWEI
    assert tx.effective_tip is None  # no head yet: next base fee unknown
    assert tx.selector is None and tx.input_len == 0 and tx.dex_swap is False
    assert tx.swap_notional_wei is None


def test_effective_tip_eip1559_uses_next_base_fee_from_head():
    p = connected()
    (h,) = p.receive_frame(head(100, 10 * GWEI, 30_000_000), 50)  # full block: +12.5 %
    assert isinstance(h, ChainHead)
    assert (h.height, h.base_fee, h.gas_used_ratio, h.ts_exchange_ns) == (100, 10 * GWEI, 1.0, (1_700_000_100) * 10**9)
    assert h.block_hash == "0x" + f"{100:064x}" and h.parent_hash == "0x" + f"{99:064x}"
    assert p.base_fee_next == 11_250_000_000
    (tx,) = p.receive_frame(BSC_NOTIFICATION, 51)
    assert tx.effective_tip == 1 * GWEI  # priority fee binds: 20.42 - 11.25 gwei > 1 gwei
    p.receive_frame(head(101, 20 * GWEI, 15_000_000), 52)  # at target: unchanged
    assert p.base_fee_next == 20 * GWEI
    (tx,) = p.receive_frame(BSC_NOTIFICATION, 53)
    assert tx.effective_tip == 20_422_255_060 - 20 * GWEI  # fee cap binds
    p.receive_frame(head(102, 21 * GWEI, 15_000_000), 54)
    (tx,) = p.receive_frame(BSC_NOTIFICATION, 55)
    assert tx.effective_tip == 20_422_255_060 - 21 * GWEI < 0  # not includable next block


def test_next_base_fee_matches_eip1559_examples():
    assert next_base_fee(100, 20, 20) == 112  # +12.5 % (integer)
    assert next_base_fee(7, 11, 20) == 8  # rise of at least 1 wei
    assert next_base_fee(100, 0, 20) == 88


def test_legacy_tx_effective_tip_is_gas_price_minus_base_fee():
    # SYNTHETIC legacy (type 0) tx
    legacy = {"hash": "0x" + "ab" * 32, "from": "0x" + "11" * 20, "to": None, "gas": "0x7a120",
              "gasPrice": hex(15 * GWEI), "input": "0x6080604052", "nonce": "0x0", "value": "0x0", "type": "0x0"}
    p = connected()
    p.receive_frame(head(7, 12 * GWEI, 15_000_000), 1)
    (tx,) = p.receive_frame(notif(PENDING_SUB, legacy), 2)
    assert tx.tx_type == 0 and tx.to is None and tx.gas_limit == 500_000
    assert tx.max_fee is None and tx.max_priority_fee is None and tx.gas_price_reported == 15 * GWEI
    assert tx.effective_tip == 3 * GWEI
    assert tx.selector is None and tx.input_len == 5  # contract creation: initcode, no selector


def test_short_input_selector():
    tx = {"hash": "0x01", "to": "0x" + "33" * 20, "input": "0xa9059cbb", "value": "0x0", "type": "0x2",
          "maxFeePerGas": "0x1", "maxPriorityFeePerGas": "0x1"}  # SYNTHETIC
    p = connected()
    (ev,) = p.receive_frame(notif(PENDING_SUB, tx), 1)
    assert ev.selector == "0xa9059cbb" and ev.input_len == 4 and not ev.dex_swap


def _word(x: int | str) -> str:
    if isinstance(x, str):
        return x[2:].lower().rjust(64, "0")
    return f"{x:064x}"


def test_dex_swaps_flagged_with_honest_notional():
    weth = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    usdc = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
    p = connected()
    # SYNTHETIC V2 swapExactETHForTokens(amountOutMin, path, to, deadline) with 2 ETH
    v2 = {"hash": "0x02", "to": "0x7a250d5630B4cF539739dF2C5dAcb4c659F2488D", "input": "0x7ff36ab5" + _word(1) + _word(128) + _word(5) + _word(9) + _word(0),
          "value": hex(2 * 10**18), "type": "0x2", "maxFeePerGas": "0x1", "maxPriorityFeePerGas": "0x1"}
    (ev,) = p.receive_frame(notif(PENDING_SUB, v2), 1)
    assert ev.dex_swap and ev.swap_notional_wei == 2 * 10**18 and ev.swap_amount_in == 2 * 10**18
    assert ev.swap_token_in is None
    # SYNTHETIC V3 SwapRouter exactInputSingle: WETH in, 3 WETH
    params = [weth, usdc, 500, "0x" + "22" * 20, 1_800_000_000, 3 * 10**18, 0, 0]
    v3 = {"hash": "0x03", "to": "0xE592427A0AEce92De3Edee1F18E0157C05861564", "input": "0x414bf389" + "".join(_word(x) for x in params),
          "value": "0x0", "type": "0x2", "maxFeePerGas": "0x1", "maxPriorityFeePerGas": "0x1"}
    (ev,) = p.receive_frame(notif(PENDING_SUB, v3), 2)
    assert ev.dex_swap and ev.swap_token_in == weth.lower() and ev.swap_amount_in == 3 * 10**18
    assert ev.swap_notional_wei == 3 * 10**18 and ev.input_len == 4 + 8 * 32
    # SYNTHETIC SwapRouter02 exactInputSingle: USDC in -> token amount, no wei notional
    params = [usdc, weth, 500, "0x" + "22" * 20, 1_000 * 10**6, 0, 0]
    v3b = dict(v3, hash="0x04", input="0x04e45aaf" + "".join(_word(x) for x in params))
    (ev,) = p.receive_frame(notif(PENDING_SUB, v3b), 3)
    assert ev.dex_swap and ev.swap_token_in == usdc.lower() and ev.swap_amount_in == 1_000 * 10**6
    assert ev.swap_notional_wei is None
    # SYNTHETIC Universal Router execute with 0.5 ETH attached: notional = msg.value
    ur = dict(v2, hash="0x05", input="0x3593564c" + _word(96), value=hex(5 * 10**17))
    (ev,) = p.receive_frame(notif(PENDING_SUB, ur), 4)
    assert ev.dex_swap and ev.swap_notional_wei == 5 * 10**17 and ev.swap_token_in is None
    # truncated exactInputSingle calldata: still a swap, nothing invented
    cut = dict(v3, hash="0x06", input="0x414bf389" + _word(weth))
    (ev,) = p.receive_frame(notif(PENDING_SUB, cut), 5)
    assert ev.dex_swap and ev.swap_amount_in is None and ev.swap_notional_wei is None


def test_hash_only_fallback_batched_bounded_byte_exact():
    p = connected(lookup_batch=2, max_outstanding_lookups=4)
    hashes = ["0x" + f"{i:064x}" for i in range(1, 6)]
    for i, h in enumerate(hashes):  # SYNTHETIC hash-only notifications (geth without `true`)
        assert p.receive_frame(notif(PENDING_SUB, h), 10 + i) == []
    assert p.stats().ignored["lookup_dropped"] == 1  # the 5th exceeds the cap of 4
    frames = p.frames_to_send()
    req = '{"jsonrpc":"2.0","id":%d,"method":"eth_getTransactionByHash","params":["%s"]}'
    assert frames == [
        "[" + req % (3, hashes[0]) + "," + req % (4, hashes[1]) + "]",
        "[" + req % (5, hashes[2]) + "," + req % (6, hashes[3]) + "]",
    ]
    # cap still full (4 in flight): a new hash is dropped
    p.receive_frame(notif(PENDING_SUB, hashes[4]), 20)
    assert p.stats().ignored["lookup_dropped"] == 2
    # batch response: one found, one already mined (null)
    found = dict(BSC_TX, hash=hashes[0])
    resp = json.dumps([{"jsonrpc": "2.0", "id": 3, "result": found}, {"jsonrpc": "2.0", "id": 4, "result": None}])
    (tx,) = p.receive_frame(resp, 21)
    assert tx.txid == hashes[0] and tx.max_priority_fee == GWEI
    assert p.stats().ignored["lookup_not_found"] == 1
    p.receive_frame(notif(PENDING_SUB, hashes[4]), 22)  # room again
    assert p.frames_to_send() == ["[" + req % (7, hashes[4]) + "]"]


def test_resubscribe_after_reconnect_and_old_ids_unknown():
    p = connected()
    (ev,) = p.connection_lost(5, "1006")
    assert ev.state == "disconnected" and p.subscriptions() == {}
    p.connection_opened(6)
    assert p.frames_to_send() == [
        '{"jsonrpc":"2.0","id":3,"method":"eth_subscribe","params":["newPendingTransactions",true]}',
        '{"jsonrpc":"2.0","id":4,"method":"eth_subscribe","params":["newHeads"]}',
    ]
    assert p.receive_frame(BSC_NOTIFICATION, 7) == []  # old subscription id
    assert p.stats().ignored["unknown_subscription"] == 1
    p.receive_frame(b'{"jsonrpc":"2.0","id":3,"result":"0xnew1"}', 8)
    (tx,) = p.receive_frame(notif("0xnew1", BSC_TX), 9)
    assert tx.txid == BSC_TX["hash"]
    assert p.stats().connections == 2


def test_connection_opened_without_lost_also_resets():
    p = connected()
    p.connection_opened(5)
    assert len(p.frames_to_send()) == 2 and p.subscriptions() == {}


def test_malformed_error_and_unknown_frames_counted_never_raise():
    p = connected()
    bad = [b"not json", b"[1,2]", b'"str"', b'{"jsonrpc":"2.0","method":"eth_subscription"}',
           notif(HEADS_SUB, {"hash": "0x1"}),  # header without number
           notif(PENDING_SUB, {"nohash": 1}), notif(PENDING_SUB, dict(BSC_TX, gas="0xZZ")), b"\xff\xfe"]
    for frame in bad:
        assert p.receive_frame(frame, 1) == []
    assert p.stats().malformed == len(bad) + 1  # [1,2] holds two non-objects
    assert p.receive_frame(b'{"jsonrpc":"2.0","id":99,"result":"0x1"}', 2) == []
    assert p.stats().ignored["unknown_response_id"] == 1
    assert p.receive_frame(b'{"jsonrpc":"2.0","method":"eth_foo","params":{}}', 3) == []
    assert p.stats().ignored["unexpected_message"] == 1
    assert p.stats().frames == 2 + len(bad) + 2  # 2 subscription responses first
    assert p.stats().errors  # verbatim problems kept for a human


def test_error_response_to_full_tx_subscription_falls_back_to_hashes():
    p = EthereumProtocol()
    p.connection_opened(1)
    p.frames_to_send()
    # SYNTHETIC: anvil's wording for a rejected parameter (protocols.md §4.2)
    err = b'{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Expected boolean parameter for newPendingTransactions"}}'
    (st,) = p.receive_frame(err, 2)
    assert (st.state, st.reason) == ("error", "newPendingTransactions with full objects refused; asking for hashes")
    assert p.stats().ignored["rpc_errors"] == 1 and "Expected boolean" in p.stats().errors[0]
    assert p.frames_to_send() == [
        '{"jsonrpc":"2.0","id":3,"method":"eth_subscribe","params":["newPendingTransactions"]}'
    ]
    err2 = b'{"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"no heads"}}'
    (st,) = p.receive_frame(err2, 3)
    assert st.state == "error" and st.reason.startswith("newHeads refused") and p.frames_to_send() == []
    # The hash subscription refused too: no third try on this connection (no request loop).
    err3 = b'{"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"no pending"}}'
    (st,) = p.receive_frame(err3, 4)
    assert st.reason.startswith("newPendingTransactions refused") and p.frames_to_send() == []
    assert p.stats().ignored["rpc_errors"] == 3
    # A new connection asks for full objects again.
    p.connection_opened(5)
    assert '["newPendingTransactions",true]' in p.frames_to_send()[0]


def test_bookkeeping_is_the_shared_protocol_stats_bounded_and_logged_once(caplog):
    """Ignored reasons and kept errors live on ProtocolStats: capped, sampled, and a flood is not logged."""
    p = connected()
    with caplog.at_level("INFO", logger="volcast.connectors.ethereum"):
        for k in range(100):
            p.receive_frame(notif(f"0x{k:032x}", {"hash": "0x1"}), k)  # 100 unknown subscription ids
            p.receive_frame(b"{oops %d" % k, k)  # 100 undecodable frames
    st = p.stats()
    assert st.ignored == {"unknown_subscription": 100} and st.malformed == 100
    assert len(st.errors) == 20 and st.errors[0].endswith("b'{oops 0'")  # first 20, each with its input
    lines = [r.getMessage() for r in caplog.records]
    assert sum("unknown_subscription" in line for line in lines) == 1  # first of its kind only
    assert sum("malformed" in line for line in lines) == 20  # the kept ones only
    st.ignored["x"] = 1
    assert "x" not in p.stats().ignored  # stats() is a copy


def test_feed_frame_and_event_roundtrip():
    from connectors.events import decode_event, encode_event
    from connectors.record.frames import Frame

    p = EthereumProtocol()
    assert p.feed_frame(Frame(ts_recv_ns=1, conn_id="c", kind="open", payload=b""))[0].state == "connected"
    p.feed_frame(Frame(ts_recv_ns=2, conn_id="c", kind="recv", payload=b'{"jsonrpc":"2.0","id":1,"result":"%s"}' % PENDING_SUB.encode()))
    (tx,) = p.feed_frame(Frame(ts_recv_ns=3, conn_id="c", kind="recv", payload=BSC_NOTIFICATION))
    assert decode_event(encode_event(tx)) == tx
