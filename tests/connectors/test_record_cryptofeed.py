"""cryptofeed capture reader, on cryptofeed's real Binance samples (tests/data/cryptofeed).

Small hand-written files below test only line syntax; their payloads are placeholders,
not market data.
"""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.record import RecordingFormatError, read_cryptofeed
from connectors.record.cryptofeed import seconds_to_ns

DATA = Path(__file__).resolve().parents[2] / "tests/data/cryptofeed"


def test_websocket_capture_yields_open_then_every_received_line_byte_exact() -> None:
    # Arrange: the payload of a received line is everything after the first ": ".
    lines = (DATA / "BINANCE.ws.1.0").read_bytes().splitlines()
    url, _, opened = lines[0].partition(b" <-> ")
    expected = [line.split(b": ", 1)[1] for line in lines[1:] if line]

    # Act
    frames = list(read_cryptofeed(DATA / "BINANCE.ws.1.0"))

    # Assert
    assert frames[0].kind == "open"
    assert frames[0].url == url.decode()
    assert frames[0].ts_recv_ns == 1633998511_159679000
    assert [f.payload for f in frames[1:]] == expected
    assert {f.kind for f in frames[1:]} == {"recv"}
    assert {f.conn_id for f in frames} == {"cryptofeed:BINANCE.ws.1.0:0"}
    assert all(f.url is None for f in frames[1:])


def test_timestamps_are_parsed_as_decimals_not_floats() -> None:
    first = next(f for f in read_cryptofeed(DATA / "BINANCE.ws.1.0") if f.kind == "recv")
    # The line says 1633998512.0633569; going through a float gives ...063356928.
    assert first.ts_recv_ns == 1633998512_063356900
    assert int(float("1633998512.0633569") * 1e9) != first.ts_recv_ns


@given(
    whole=st.integers(min_value=0, max_value=4_000_000_000),
    frac=st.text(alphabet="0123456789", min_size=1, max_size=9),
)
def test_seconds_to_ns_is_exact(whole: int, frac: str) -> None:
    text = f"{whole}.{frac}"
    assert seconds_to_ns(text.encode()) == int(Decimal(text) * 1_000_000_000)


def test_rest_capture_yields_one_rest_frame_per_response() -> None:
    frames = list(read_cryptofeed(DATA / "BINANCE_FUTURES.http.0.0"))
    assert [f.kind for f in frames] == ["rest"] * 4
    assert frames[0].url == "https://fapi.binance.com/fapi/v1/depth?symbol=SUSHIUSDT&limit=1000"
    assert frames[0].ts_recv_ns == 1626992741_301402000
    assert all(f.payload.startswith(b'{"lastUpdateId":') for f in frames)


def test_blank_lines_and_reconnects_start_new_connections(tmp_path: Path) -> None:
    # Arrange: syntax only (placeholder payloads).
    path = tmp_path / "X.ws.1.0"
    path.write_bytes(
        b'configuration: {"x":1}\n'
        b"wss://a/ws <-> 1.5\n"
        b'wss://a/ws <- 1.6: {"op":"subscribe"}\n'
        b'1.7: {"n":1}\n'
        b"\n"
        b'2.0: {"n":2}\n'
        b"wss://a/ws <-> 3.0\n"
        b"3.1: b'\\x1f\\x8b\\n'\n"
        b"\n\n"
    )

    # Act
    frames = list(read_cryptofeed(path))

    # Assert
    assert [(f.conn_id[-1], f.kind) for f in frames] == [
        ("0", "open"),
        ("0", "sent"),
        ("0", "recv"),
        ("1", "recv"),
        ("2", "open"),
        ("2", "recv"),
    ]
    assert frames[1].url == "wss://a/ws"
    assert frames[1].payload == b'{"op":"subscribe"}'
    assert frames[-1].payload == b"\x1f\x8b\n"  # a binary message cryptofeed wrote as b'...'


def test_gzip_capture_reads_the_same(tmp_path: Path) -> None:
    packed = tmp_path / "BINANCE.ws.1.0.gz"
    packed.write_bytes(gzip.compress((DATA / "BINANCE.ws.1.0").read_bytes()))
    plain = [(f.ts_recv_ns, f.kind, f.payload) for f in read_cryptofeed(DATA / "BINANCE.ws.1.0")]
    assert [(f.ts_recv_ns, f.kind, f.payload) for f in read_cryptofeed(packed)] == plain


def test_a_foreign_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.0"
    path.write_bytes(b"1.0: {}\nnot a capture line\n")
    frames = read_cryptofeed(path)
    assert next(frames).payload == b"{}"
    with pytest.raises(RecordingFormatError, match=r"bad\.0:2: not a cryptofeed capture line"):
        next(frames)
