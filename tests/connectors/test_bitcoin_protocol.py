"""BitcoinMempoolProtocol on real mempool.space websocket messages.

Fixtures in tests/data/mempool_space/ are real mainnet messages from mempool/mempool
(commit 3b6ed8bd…, AGPL-3.0, used only as test data; see PROVENANCE.md there).
Frames built inline here are SYNTHETIC and marked so.
"""

from __future__ import annotations

import json
import pathlib

from connectors.events import ChainHead, FeedStatus, MempoolStats, MempoolTx, decode_event, encode_event
from connectors.venues.bitcoin import BitcoinMempoolProtocol

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "mempool_space"
NS = 1_000_000_000


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def opened(**kw) -> BitcoinMempoolProtocol:
    p = BitcoinMempoolProtocol(**kw)
    p.connection_opened(0)
    p.frames_to_send()
    return p


def test_connect_sends_want_and_optional_track():
    p = BitcoinMempoolProtocol()
    (ev,) = p.connection_opened(5)
    assert isinstance(ev, FeedStatus) and ev.state == "connected" and ev.venue == "bitcoin"
    assert p.frames_to_send() == ['{"action":"want","data":["blocks","mempool-blocks","stats"]}']
    p = BitcoinMempoolProtocol(track_mempool=True)
    p.connection_opened(5)
    assert p.frames_to_send()[1] == '{"track-mempool":true}'


def test_init_message_real_mainnet():
    p = opened()
    events = p.receive_frame(fixture("mainnet_mempoolInfo.json"), 7)
    heads = [e for e in events if isinstance(e, ChainHead)]
    (stats,) = [e for e in events if isinstance(e, MempoolStats)]
    assert [h.height for h in heads] == list(range(837043, 837051))
    last = heads[-1]
    assert last.block_hash == "00000000000000000000e7d533924ecd9e2096bdf261ae3daf3f04861150c5a8"
    assert last.parent_hash == "000000000000000000012a9794fcc2fd81bd0f54df00f7589ea96ff9f3f2ef49"
    assert last.tx_count == 2659 and last.ts_exchange_ns == 1711854927 * NS and last.base_fee is None
    assert (stats.chain, stats.symbol, stats.size_tx, stats.vbytes, stats.vbytes_per_s) == ("bitcoin", "BTC", 112686, 175691391, 2364.0)
    assert stats.min_fee == 1.305  # mempoolminfee 0.00001305 BTC/kvB in sat/vB
    assert stats.fee_buckets == {"fastest": 8.0, "half_hour": 8.0, "hour": 8.0, "economy": 4.0, "minimum": 2.0}
    assert len(stats.projected_blocks) == 8
    b0 = stats.projected_blocks[0]
    assert (b0.n_tx, b0.vsize, b0.total_fees) == (4888, 997944, 9079705)
    assert b0.median_fee == 7.036906854130053 and b0.fee_range[-1] == 236.07305936073058
    assert decode_event(encode_event(stats)) == stats
    # keys we do not use (rbfSummary, conversions, da, ...) are no error
    assert p.stats().malformed == 0 and p.stats().internal_errors == 0


def test_blocks_then_block_chain_links_and_mempool_blocks_update():
    p = opened()
    events = p.receive_frame(fixture("tx01_ws_blocks_01.json"), 1)
    heads = [e for e in events if isinstance(e, ChainHead)]
    assert [h.height for h in heads] == list(range(890440, 890448))
    # mempool-blocks arrived before any mempoolInfo: no size, no MempoolStats yet
    assert not [e for e in events if isinstance(e, MempoolStats)]
    assert p.stats().ignored["stats_before_mempool_info"] == 1
    events = p.receive_frame(fixture("tx02_ws_block.json"), 2)
    (h,) = [e for e in events if isinstance(e, ChainHead)]
    assert h.height == 890448 and h.tx_count == 2229 and h.ts_exchange_ns == 1743541850 * NS
    assert h.block_hash == "000000000000000000019bfe551da67e0d93dda4b355d16f1fdb4031ba7e5d61"
    assert h.parent_hash == heads[-1].block_hash  # links to 890447
    # once mempoolInfo is known, every mempool-blocks push is a fresh MempoolStats
    p.receive_frame(fixture("mainnet_mempoolInfo.json"), 3)  # older blocks in it: skipped
    assert p.stats().ignored["old_block"] == 8
    (stats,) = p.receive_frame(fixture("tx02_ws_next_block.json"), 4)
    assert isinstance(stats, MempoolStats) and stats.size_tx == 112686
    nb = json.loads(fixture("tx02_ws_next_block.json"))["mempool-blocks"]
    assert [b.n_tx for b in stats.projected_blocks] == [b["nTx"] for b in nb]
    assert stats.projected_blocks[0].vsize == 997952.25


def test_replayed_blocks_after_reconnect_not_duplicated():
    p = opened()
    p.receive_frame(fixture("tx01_ws_blocks_01.json"), 1)
    p.connection_lost(2, "1006")
    p.connection_opened(3)
    events = p.receive_frame(fixture("tx01_ws_blocks_01.json"), 4)
    assert not [e for e in events if isinstance(e, ChainHead)]


def test_stats_start_over_on_a_new_connection():
    """A new connection's blocks never join the mempool size a previous connection reported."""
    p = opened()
    (stats,) = [e for e in p.receive_frame(fixture("mainnet_mempoolInfo.json"), 1) if isinstance(e, MempoolStats)]
    assert stats.size_tx == 112686
    p.connection_lost(2, "1006")
    p.connection_opened(3)
    assert p.receive_frame(fixture("tx02_ws_next_block.json"), 4) == []  # no mempoolInfo yet on this one
    assert p.stats().ignored["stats_before_mempool_info"] == 1


def test_unrequested_messages_counted_not_errors():
    p = opened()
    for name in ("tx01_ws_tx_replaced.json", "tx02_ws_tx_position.json", "mainnet_live2hchart.json"):
        assert p.receive_frame(fixture(name), 1) == []
    ignored = p.stats().ignored
    assert ignored["unhandled_keys:txReplaced"] == 1 and ignored["unhandled_keys:txPosition"] == 1
    assert ignored["unhandled_keys:live-2h-chart"] == 1 and p.stats().malformed == 0


def test_malformed_frames_counted_never_raise():
    p = opened()
    bad = [b"nope", b"[1]", b'{"block":{"id":"x"}}', b'{"mempoolInfo":{"size":"many"}}',
           b'{"mempool-blocks":[{"nTx":1}]}', b'{"mempool-transactions":{"added":[{"fee":1}]}}']
    for frame in bad:  # SYNTHETIC
        assert p.receive_frame(frame, 1) == []
    assert p.stats().malformed == len(bad) and p.stats().frames == len(bad)


def test_bookkeeping_is_the_shared_protocol_stats_bounded_and_logged_once(caplog):
    p = opened()
    with caplog.at_level("INFO", logger="volcast.connectors.bitcoin"):
        for k in range(70):  # SYNTHETIC: 70 distinct unrequested keys, then 30 broken frames
            p.receive_frame(b'{"k%d":1}' % k, k)
        for k in range(30):
            p.receive_frame(b"[%d]" % k, k)
    st = p.stats()
    assert len(st.ignored) == 65 and st.ignored["other"] == 6  # past 64 reasons they share "other"
    assert st.malformed == 30 and len(st.errors) == 20 and st.errors[0].endswith("b'[0]'")
    lines = [r.getMessage() for r in caplog.records]
    assert sum("malformed" in line for line in lines) == 20
    assert sum("ignoring" in line for line in lines) == 64


def test_ping_on_timer_pong_and_dead_connection():
    p = BitcoinMempoolProtocol(ping_interval_s=30, pong_timeout_s=5)
    assert p.deadline_ns() is None
    p.connection_opened(100 * NS)
    p.frames_to_send()
    assert p.deadline_ns() == 130 * NS
    p.receive_frame(fixture("tx02_ws_next_block.json"), 110 * NS)  # any frame restarts the wait
    assert p.deadline_ns() == 140 * NS
    assert p.on_timer(139 * NS) == [] and p.frames_to_send() == []  # early call: nothing
    assert p.on_timer(140 * NS) == []
    assert p.frames_to_send() == ['{"action":"ping"}']
    assert p.deadline_ns() == 145 * NS and p.close_requested() is None
    assert p.receive_frame(b'{"pong":true}', 141 * NS) == []  # real reply shape (protocols.md §4.3)
    assert p.deadline_ns() == 171 * NS and "unhandled_keys:pong" not in p.stats().ignored
    p.on_timer(171 * NS)
    assert p.frames_to_send() == ['{"action":"ping"}']
    (ev,) = p.on_timer(176 * NS)
    assert ev.state == "stale"
    req = p.close_requested()
    assert req is not None and "pong" in req.reason
    assert p.close_requested() is None and p.deadline_ns() is None
    p.connection_lost(177 * NS, "closed")
    p.connection_opened(180 * NS)
    assert p.deadline_ns() == 210 * NS


def _mt(seq: int, added=()) -> bytes:
    """SYNTHETIC mempool-transactions frame (shape from protocols.md §4.3)."""
    return json.dumps({"mempool-transactions": {"sequence": seq, "added": list(added), "removed": [], "mined": [], "replaced": []}}).encode()


def test_track_mempool_sequence_gap_and_stripped_txs():
    p = opened(track_mempool=True)
    tx = {"txid": "b6a53d8a8025c0c5b194345925a99741b645cae0b1f180f0613273029f2bf698",
          "fee": 1500, "vsize": 140.5, "value": 123456, "rate": 10.676, "flags": 1}
    (ev,) = p.receive_frame(_mt(7, [tx]), 1)
    assert isinstance(ev, MempoolTx)
    assert (ev.chain, ev.txid, ev.value, ev.fee_rate_sat_vb, ev.vsize) == ("bitcoin", tx["txid"], 123456, 10.676, 140)
    assert p.receive_frame(_mt(8), 2) == [] and p.frames_to_send() == []
    (gap,) = p.receive_frame(_mt(11), 3)
    assert (gap.state, gap.expected_seq, gap.got_seq) == ("gap", 9, 11)
    assert p.frames_to_send() == ['{"track-mempool":true}']
    assert p.receive_frame(_mt(12), 4) == []  # continues from the new sequence
    assert p.stats().ignored["sequence_gaps"] == 1
    p.connection_lost(5, "x")
    p.connection_opened(6)
    assert p.frames_to_send()[-1] == '{"track-mempool":true}'
    assert p.receive_frame(_mt(1), 7) == []  # fresh connection: no gap against old sequence
