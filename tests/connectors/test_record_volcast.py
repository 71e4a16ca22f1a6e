"""volcast's recording format and RecordingWriter, round-tripping real recordings."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
from datetime import datetime
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.record import (
    Frame,
    RecordingFormatError,
    RecordingWriter,
    merge_recordings,
    open_recording,
    read_header,
    read_volcast,
)
from connectors.record.volcast_format import decode_line, encode_line

REPO = Path(__file__).resolve().parents[2]
CRYPTOFEED = REPO / "tests/data/cryptofeed"
HFT = REPO / "data/binance/hftbacktest"


@pytest.fixture(scope="module")
def real_frames() -> list[Frame]:
    """cryptofeed spot websocket + REST files merged, then 3000 hftbacktest USD-M frames."""
    merged = list(
        merge_recordings([CRYPTOFEED / "BINANCE.ws.1.0", CRYPTOFEED / "BINANCE.http.0.0"])
    )
    usdm = open_recording(HFT / "usdm/btcusdt_20240808.gz")
    return merged + list(islice(usdm, 3000))


def write_all(out: Path, frames: list[Frame], **kwargs: float) -> RecordingWriter:
    with RecordingWriter(out, venue="binance", market="usdm", symbols=["BTCUSDT"], **kwargs) as w:
        for frame in frames:
            w.write(frame)
    return w


def test_round_trip_keeps_every_frame_identical(tmp_path: Path, real_frames: list[Frame]) -> None:
    # Act
    writer = write_all(tmp_path, real_frames)

    # Assert: the 2024 frames come three years after the 2021 ones, past rotate_seconds.
    assert [p.name for p in writer.completed] == [
        "binance-usdm-20211012T002831Z.vcr.gz",
        "binance-usdm-20240808T235415Z.vcr.gz",
    ]
    back = [f for path in writer.completed for f in open_recording(path)]
    assert back == real_frames  # payload bytes, times, kinds, urls, connection ids
    assert {f.kind for f in back} == {"open", "recv", "rest"}


def test_header_describes_the_recording(tmp_path: Path, real_frames: list[Frame]) -> None:
    header = read_header(write_all(tmp_path, real_frames[:5]).completed[0])
    assert (header.version, header.venue, header.market, header.symbols) == (
        1,
        "binance",
        "usdm",
        ["BTCUSDT"],
    )
    assert header.created.endswith("Z")
    datetime.fromisoformat(header.created.replace("Z", "+00:00"))
    assert header.volcast_version


@given(
    payload=st.binary(max_size=200),
    conn=st.text(alphabet="abcXYZ019:_-.", min_size=1, max_size=12),
    url=st.none() | st.just("wss://stream.binance.com:9443/stream?streams=a@depth/b@trade"),
    kind=st.sampled_from(["open", "recv", "sent", "rest", "close"]),
    ts=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_any_payload_survives_a_line(
    payload: bytes, conn: str, url: str | None, kind: str, ts: int
) -> None:
    frame = Frame(ts, conn, kind, payload, url)  # type: ignore[arg-type]
    line = encode_line(frame)
    assert line.count(b"\n") == 1
    assert decode_line(line) == frame


def test_only_payloads_with_a_newline_are_escaped() -> None:
    raw = Frame(1, "c", "recv", b'{"a":"\\u00e9\\\\"}')
    assert encode_line(raw) == b'1 c recv - r {"a":"\\u00e9\\\\"}\n'
    nl = Frame(1, "c", "rest", b'{\n"a":"\\\\"}', "https://x/y")
    assert encode_line(nl) == b'1 c rest https://x/y e {\\n"a":"\\\\\\\\"}\n'


def test_a_file_is_part_until_closed_and_close_is_idempotent(
    tmp_path: Path, real_frames: list[Frame]
) -> None:
    writer = RecordingWriter(tmp_path, venue="binance", market="spot", symbols=["NKNUSDT"])
    writer.write(real_frames[0])
    assert [p.name for p in tmp_path.iterdir()] == ["binance-spot-20211012T002831Z.vcr.gz.part"]
    writer.close()
    writer.close()
    assert [p.name for p in tmp_path.iterdir()] == ["binance-spot-20211012T002831Z.vcr.gz"]
    with pytest.raises(ValueError, match="closed"):
        writer.write(real_frames[1])


def test_rotation_by_size_and_by_time_loses_nothing(
    tmp_path: Path, real_frames: list[Frame]
) -> None:
    # Act
    by_size = write_all(tmp_path / "size", real_frames, rotate_bytes=20_000)
    by_time = write_all(tmp_path / "time", real_frames, rotate_seconds=5)

    # Assert
    for writer in (by_size, by_time):
        assert len(writer.completed) > 3
        assert not list(writer.out_dir.glob("*.part"))
        assert sorted(writer.out_dir.iterdir()) == sorted(writer.completed)
        assert list(merge_recordings(writer.completed)) == real_frames
    for path in by_time.completed:
        times = [f.ts_recv_ns for f in read_volcast(path)]
        assert times[-1] - times[0] < 5_000_000_000


def test_a_killed_writer_leaves_only_a_part_that_reads_to_its_last_flush(tmp_path: Path) -> None:
    # Arrange: a writer in another process, killed without warning after 500 frames.
    script = textwrap.dedent(
        f"""
        import sys, time
        from itertools import islice
        sys.path.insert(0, {str(REPO)!r})
        from connectors.record import RecordingWriter, open_recording
        w = RecordingWriter(sys.argv[1], venue="binance", market="spot", symbols=["BTCUSDT"],
                            flush_seconds=0)
        for frame in islice(open_recording(sys.argv[2]), 500):
            w.write(frame)
        print("written", flush=True)
        time.sleep(60)
        """
    )
    src = HFT / "spot/btcusdt_20240808.gz"
    argv = [sys.executable, "-c", script, str(tmp_path), str(src)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "written\n"
        finally:
            proc.kill()  # SIGKILL: no close(), no atexit, no flush

    # Act
    files = list(tmp_path.iterdir())
    frames = read_volcast(files[0])
    got = []
    with pytest.raises(RecordingFormatError, match="truncated or corrupt after line 501"):
        for frame in frames:
            got.append(frame)

    # Assert
    assert [p.suffix for p in files] == [".part"]
    assert got == list(islice(open_recording(src), 500))


def test_a_cut_file_yields_its_complete_lines_then_fails(
    tmp_path: Path, real_frames: list[Frame]
) -> None:
    whole = write_all(tmp_path, real_frames).completed[-1]
    cut = tmp_path / "cut.vcr.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    got = []
    with pytest.raises(RecordingFormatError, match="cut.vcr.gz: truncated"):
        for frame in read_volcast(cut):
            got.append(frame)
    usdm = [f for f in real_frames if f.conn_id.startswith("hftbacktest")]
    assert 0 < len(got) < len(usdm)
    assert got == usdm[: len(got)]


def test_a_newer_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.vcr.gz"
    path.write_bytes(
        gzip.compress(
            b'#volcast-recording {"version":2,"venue":"x","market":"y",'
            b'"symbols":[],"created":"","volcast_version":"9"}\n'
        )
    )
    with pytest.raises(RecordingFormatError, match="version 2 is newer"):
        list(read_volcast(path))


def test_a_bad_frame_line_names_its_line(tmp_path: Path, real_frames: list[Frame]) -> None:
    good = gzip.decompress(write_all(tmp_path / "w", real_frames[:3]).completed[0].read_bytes())
    path = tmp_path / "bad.vcr.gz"
    path.write_bytes(gzip.compress(good + b"12 c recv - z {}\n"))
    with pytest.raises(RecordingFormatError, match=r"bad\.vcr\.gz:5: bad frame line"):
        list(read_volcast(path))


def test_writer_refuses_what_the_format_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="venue"):
        RecordingWriter(tmp_path, venue="bin/ance", market="spot", symbols=[])
    with RecordingWriter(tmp_path, venue="binance", market="spot", symbols=[]) as writer:
        with pytest.raises(ValueError, match="conn_id"):
            writer.write(Frame(1, "a b", "recv", b"{}"))
        with pytest.raises(ValueError, match="url"):
            writer.write(Frame(1, "a", "open", b"", "wss://x/ y"))
    assert writer.completed == []  # nothing was written, so no file
