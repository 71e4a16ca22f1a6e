"""hftbacktest collector reader, on hftbacktest's real Binance files (data/binance/hftbacktest)."""

from __future__ import annotations

import gzip
from itertools import islice, pairwise
from pathlib import Path

import msgspec
import pytest

from connectors.record import RecordingFormatError, merge_recordings, read_hftbacktest
from connectors.record.hftbacktest import classify_binance

HFT = Path(__file__).resolve().parents[2] / "data/binance/hftbacktest"
CRYPTOFEED = Path(__file__).resolve().parents[2] / "tests/data/cryptofeed"


def raw_lines(path: Path, n: int | None = None) -> list[bytes]:
    with gzip.open(path, "rb") as f:
        return list(islice(f, n))


def write_lines(path: Path, lines: list[bytes]) -> Path:
    with gzip.open(path, "wb") as f:
        f.writelines(lines)
    return path


def test_spot_file_yields_every_line_byte_exact_with_the_snapshot_as_rest() -> None:
    # Arrange
    path = HFT / "spot/btcusdt_20240808.gz"
    lines = raw_lines(path)

    # Act
    frames = list(read_hftbacktest(path))

    # Assert
    assert len(frames) == len(lines) == 41249
    for frame, line in zip(frames, lines, strict=True):
        ts, payload = line.rstrip(b"\n").split(b" ", 1)
        assert (frame.ts_recv_ns, frame.payload) == (int(ts), payload)
    rest = [i for i, f in enumerate(frames) if f.kind == "rest"]
    assert rest == [7]
    assert frames[7].url == "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000"
    assert {f.conn_id for f in frames} == {"hftbacktest:spot:BTCUSDT"}
    assert {f.kind for f in frames if f.kind != "rest"} == {"recv"}


def test_usdm_snapshot_gets_the_futures_url() -> None:
    snap = next(f for f in read_hftbacktest(HFT / "usdm/ethusdt_20240808.gz") if f.kind == "rest")
    assert snap.url == "https://fapi.binance.com/fapi/v1/depth?symbol=ETHUSDT&limit=1000"
    assert snap.conn_id == "hftbacktest:usdm:ETHUSDT"


def test_next_day_file_continues_the_same_connection_without_a_gap() -> None:
    # Arrange
    paths = [HFT / "spot/ethusdt_20240808.gz", HFT / "spot/ethusdt_20240809.gz"]

    # Act
    frames = list(merge_recordings(paths))

    # Assert: one connection, in time order, and the depth ids run on across midnight.
    assert {f.conn_id for f in frames} == {"hftbacktest:spot:ETHUSDT"}
    times = [f.ts_recv_ns for f in frames]
    assert times == sorted(times)
    snapshot_id = msgspec.json.decode(next(f.payload for f in frames if f.kind == "rest"))[
        "lastUpdateId"
    ]
    ids = [
        (d["data"]["U"], d["data"]["u"])
        for d in (
            msgspec.json.decode(f.payload) for f in frames if b"@depth@100ms" in f.payload[:40]
        )
    ]
    synced = [(first, last) for first, last in ids if last > snapshot_id]
    assert all(b[0] == a[1] + 1 for a, b in pairwise(synced))
    midnight = 1723161600_000_000_000
    assert times[0] < midnight < times[-1]


def test_lines_before_the_symbol_is_known_are_held_back(tmp_path: Path) -> None:
    # Arrange: the real snapshot line moved ahead of the stream lines that name the symbol.
    lines = raw_lines(HFT / "usdm/btcusdt_20240808.gz", 60)
    snapshot = next(line for line in lines if b'{"lastUpdateId"' in line)
    path = write_lines(tmp_path / "x.gz", [snapshot] + [line for line in lines if line != snapshot])

    # Act
    frames = list(read_hftbacktest(path))

    # Assert
    assert frames[0].kind == "rest"
    assert frames[0].url == "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
    assert len(frames) == 60


def test_truncated_file_yields_what_it_has_then_fails(tmp_path: Path) -> None:
    data = (HFT / "spot/btcusdt_20240809.gz").read_bytes()
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 10])
    frames = read_hftbacktest(path)
    got = []
    with pytest.raises(RecordingFormatError, match=r"cut\.gz: truncated or corrupt after line \d+"):
        for frame in frames:
            got.append(frame)
    assert len(got) > 1000


def test_file_without_any_symbol_is_refused(tmp_path: Path) -> None:
    lines = raw_lines(HFT / "spot/btcusdt_20240808.gz", 10)
    path = write_lines(tmp_path / "x.gz", [line for line in lines if b"lastUpdateId" in line])
    with pytest.raises(RecordingFormatError, match="cannot tell the Binance symbol"):
        list(read_hftbacktest(path))


def test_a_line_without_a_time_names_the_line(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "x.gz", raw_lines(HFT / "spot/btcusdt_20240808.gz", 2) + [b"oops\n"]
    )
    with pytest.raises(RecordingFormatError, match=r"x\.gz:3: not an hftbacktest line"):
        list(read_hftbacktest(path))


def _first(path: Path, needle: bytes) -> bytes:
    if path.suffix == ".gz":
        line = next(line for line in raw_lines(path, 3000) if needle in line)
        return line.rstrip(b"\n").split(b" ", 1)[1]
    received = (line for line in path.read_bytes().splitlines() if line[:1].isdigit())
    return next(line for line in received if needle in line).split(b": ", 1)[1]


@pytest.mark.parametrize(
    ("path", "needle", "expected"),
    [
        (HFT / "spot/btcusdt_20240808.gz", b"@depth@100ms", ("BTCUSDT", "spot")),
        (HFT / "spot/btcusdt_20240808.gz", b"@bookTicker", ("BTCUSDT", "spot")),
        (HFT / "spot/btcusdt_20240808.gz", b"@trade", ("BTCUSDT", "spot")),
        (HFT / "usdm/btcusdt_20240808.gz", b"@depth@0ms", ("BTCUSDT", "usdm")),
        (HFT / "usdm/btcusdt_20240808.gz", b"@bookTicker", ("BTCUSDT", "usdm")),
        (HFT / "usdm/btcusdt_20240808.gz", b"@trade", ("BTCUSDT", "usdm")),
        (CRYPTOFEED / "BINANCE.ws.1.0", b"@aggTrade", ("NKNUSDT", "spot")),
        (CRYPTOFEED / "BINANCE_FUTURES.ws.1.0", b"@aggTrade", ("CTKUSDT", "usdm")),
        (CRYPTOFEED / "BINANCE_FUTURES.ws.1.0", b"sushiusdt@depth@100ms", ("SUSHIUSDT", "usdm")),
        (CRYPTOFEED / "BINANCE.ws.1.0", b"@kline_1m", ("NKNUSDT", None)),  # same on both
    ],
)
def test_classify_binance_reads_the_market_from_real_messages(
    path: Path, needle: bytes, expected: tuple[str, str | None]
) -> None:
    assert classify_binance(_first(path, needle)) == expected


def test_classify_binance_knows_coinm_symbols_and_ignores_other_json() -> None:
    assert classify_binance(b'{"e":"depthUpdate","s":"BTCUSD_PERP","pu":1}') == (
        "BTCUSD_PERP",
        "coinm",
    )
    assert classify_binance(b'{"result":null,"id":1}') == (None, None)
    assert classify_binance(b"not json") == (None, None)
