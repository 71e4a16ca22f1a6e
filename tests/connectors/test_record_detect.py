"""Format detection, merging and venue detection, on the bundled real recordings."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from connectors.record import (
    Frame,
    RecordingFormatError,
    RecordingWriter,
    detect_venue,
    merge_recordings,
    open_recording,
    sniff_format,
)

REPO = Path(__file__).resolve().parents[2]
CRYPTOFEED = REPO / "tests/data/cryptofeed"
HFT = REPO / "data/binance/hftbacktest"
MEMPOOL_SPACE = REPO / "tests/data/mempool_space"


def test_each_format_is_told_from_its_content(tmp_path: Path) -> None:
    # Arrange: a volcast file, and an hftbacktest file under a misleading name.
    with RecordingWriter(tmp_path, venue="binance", market="spot", symbols=["NKNUSDT"]) as w:
        w.write(next(open_recording(CRYPTOFEED / "BINANCE.ws.1.0")))
    disguised = tmp_path / "capture.txt"
    disguised.write_bytes((HFT / "usdm/ethusdt_20240808.gz").read_bytes())

    # Act / Assert
    assert sniff_format(CRYPTOFEED / "BINANCE.ws.1.0") == "cryptofeed"
    assert sniff_format(CRYPTOFEED / "BINANCE_FUTURES.http.0.0") == "cryptofeed"
    assert sniff_format(HFT / "spot/btcusdt_20240809.gz") == "hftbacktest"
    assert sniff_format(disguised) == "hftbacktest"
    assert sniff_format(w.completed[0]) == "volcast"
    assert next(open_recording(disguised)).conn_id == "hftbacktest:usdm:ETHUSDT"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.vcr.gz"):
        open_recording(tmp_path / "nope.vcr.gz")


@pytest.mark.parametrize(
    ("content", "first_line"),
    [
        (None, "b'Copyright (C) 2017-2025 Bryant Moscon"),  # the LICENSE file itself
        (b"", "b'')"),
        (gzip.compress(b"hello\n"), "b'hello\\n')"),
    ],
)
def test_unknown_content_is_refused_at_once_with_its_first_line(
    tmp_path: Path, content: bytes | None, first_line: str
) -> None:
    path = CRYPTOFEED / "LICENSE" if content is None else tmp_path / "x"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RecordingFormatError) as err:
        open_recording(path)
    assert str(err.value).startswith(
        f"{path}: not a recording volcast can read (first line: {first_line}"
    )


def test_merge_orders_by_receive_time_and_keeps_path_order_for_ties(tmp_path: Path) -> None:
    # Arrange: the same frames written twice under different connection ids.
    frames = list(open_recording(CRYPTOFEED / "BINANCE.http.0.0"))
    files = []
    for name in ("a", "b"):
        with RecordingWriter(tmp_path / name, venue="binance", market="spot", symbols=[]) as w:
            for f in frames:
                w.write(Frame(f.ts_recv_ns, name, f.kind, f.payload, f.url))
        files += w.completed

    # Act
    merged = list(merge_recordings(files))

    # Assert
    assert [f.conn_id for f in merged] == ["a", "b"] * len(frames)
    assert [f.ts_recv_ns for f in merged] == sorted(f.ts_recv_ns for f in merged)


def test_merge_interleaves_websocket_and_rest_captures() -> None:
    merged = list(
        merge_recordings([CRYPTOFEED / "BINANCE.ws.1.0", CRYPTOFEED / "BINANCE.http.0.0"])
    )
    kinds = [f.kind for f in merged]
    assert kinds.count("rest") == 4 and kinds.count("recv") == 265
    assert kinds.index("rest") < len(kinds) // 2  # snapshots arrive while the stream runs
    assert [f.ts_recv_ns for f in merged] == sorted(f.ts_recv_ns for f in merged)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("wss://stream.binance.com:9443/stream?streams=btcusdt@trade", ("binance", "spot")),
        ("wss://data-stream.binance.vision/ws/btcusdt@trade", ("binance", "spot")),
        ("https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000", ("binance", "spot")),
        ("wss://fstream.binance.com/stream?streams=x", ("binance", "usdm")),
        ("https://fapi.binance.com/fapi/v1/depth?symbol=SUSHIUSDT", ("binance", "usdm")),
        ("wss://dstream.binance.com/ws", ("binance", "coinm")),
        ("https://dapi.binance.com/dapi/v1/depth?symbol=BTCUSD_PERP", ("binance", "coinm")),
        ("wss://www.deribit.com/ws/api/v2", ("deribit", "all")),
        ("wss://test.deribit.com/ws/api/v2", ("deribit", "all")),
        ("ws://127.0.0.1:8765/usdm/stream?streams=x", ("binance", "usdm")),
        ("http://127.0.0.1:8765/api/v3/depth?symbol=X", ("binance", "spot")),
        ("wss://ws.okx.com:8443/ws/v5/public", None),
        ("https://example.com/api/v3/depth", None),  # Binance paths count only on loopback
    ],
)
def test_detect_venue_from_urls(url: str, expected: tuple[str, str] | None) -> None:
    assert detect_venue(Frame(0, "c", "open", b"", url)) == expected


def test_detect_venue_from_real_payloads() -> None:
    def venues(path: Path) -> set[tuple[str, str] | None]:
        return {
            detect_venue(Frame(0, "c", "recv", f.payload))
            for f in open_recording(path)
            if f.kind == "recv"
        }

    # Klines and subscription results look the same on every market: None.
    assert venues(CRYPTOFEED / "BINANCE.ws.1.0") == {("binance", "spot"), None}
    assert venues(CRYPTOFEED / "BINANCE_FUTURES.ws.1.0") == {("binance", "usdm"), None}
    assert venues(HFT / "spot/ethusdt_20240809.gz") == {("binance", "spot")}
    # JSON-RPC shapes (placeholders, not market data): Deribit's, and an Ethereum node's.
    deribit = b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERP.raw"}}'
    assert detect_venue(Frame(0, "c", "recv", deribit)) == ("deribit", "all")
    eth = b'{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0x1"}}'
    assert detect_venue(Frame(0, "c", "recv", eth)) == ("ethereum", "all")
    subscribe = b'{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newPendingTransactions",true]}'
    assert detect_venue(Frame(0, "c", "sent", subscribe)) == ("ethereum", "all")
    assert detect_venue(Frame(0, "c", "recv", b'{"jsonrpc":"2.0","id":1,"result":"0x1"}')) is None
    assert detect_venue(Frame(0, "c", "open", b"", "ws://127.0.0.1:8545")) is None  # a node's socket
    # Real mempool.space messages (tests/data/mempool_space); per-transaction answers tell nothing.
    mempool = {name.name: detect_venue(Frame(0, "c", "recv", name.read_bytes()))
               for name in sorted(MEMPOOL_SPACE.glob("*.json"))}
    assert mempool.pop("tx01_ws_tx_replaced.json") is None and mempool.pop("tx02_ws_tx_position.json") is None
    assert set(mempool.values()) == {("bitcoin", "all")}
    assert detect_venue(Frame(0, "c", "sent", b'{"action":"want","data":["blocks"]}')) == ("bitcoin", "all")
    assert detect_venue(Frame(0, "c", "open", b"", "wss://mempool.space/api/v1/ws")) == ("bitcoin", "all")
    assert detect_venue(Frame(0, "c", "open", b"", "ws://127.0.0.1:9/api/v1/ws")) == ("bitcoin", "all")
