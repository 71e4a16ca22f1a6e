"""volcast's own recording format (``*.vcr.gz``): the reader and the writer's line codec.

A gzip text file. The first line is a header, every other line one :class:`Frame`::

    #volcast-recording {"version":1,"venue":"binance","market":"usdm","symbols":["BTCUSDT"],...}
    1723161255030314667 c0 recv - r {"stream":"btcusdt@depth@0ms","data":{...}}
    1723161255319702566 c0 rest https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT r {...}

Fields are separated by one space: receive time (integer ns), connection id, kind,
URL (``-`` for none), payload encoding, payload. Encoding ``r``: the payload follows
byte for byte. Encoding ``e``: the payload held a newline, so ``\\`` is written as
``\\\\`` and a newline as ``\\n``; nothing else is ever changed. The full specification
is ``docs/record-format.md``.

>>> frame = Frame(1, "c0", "recv", b'{"a":"x\\ny"}')
>>> encode_line(frame)
b'1 c0 recv - e {"a":"x\\\\ny"}\\n'
>>> decode_line(encode_line(frame)) == frame
True
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import get_args

import msgspec

from connectors.record.frames import Frame, FrameKind, RecordingFormatError, iter_lines

FORMAT_VERSION = 1
MAGIC = b"#volcast-recording "
SUFFIX = ".vcr.gz"
_KINDS: dict[bytes, FrameKind] = {k.encode(): k for k in get_args(FrameKind)}
_NO_URL = b"-"


class RecordingHeader(msgspec.Struct, frozen=True, kw_only=True):
    """The first line of a volcast recording: what was recorded, when and by which volcast."""

    version: int = FORMAT_VERSION
    venue: str  # binance, deribit, ...
    market: str  # spot, usdm, coinm; "all" for a venue with one endpoint
    symbols: list[str]
    created: str  # ISO 8601 UTC wall time the file was opened, e.g. 2024-08-08T23:54:13.937Z
    volcast_version: str


def encode_header(header: RecordingHeader) -> bytes:
    """The header line, newline included."""
    return MAGIC + msgspec.json.encode(header) + b"\n"


def decode_header(line: bytes, path: str | os.PathLike[str] = "<header>") -> RecordingHeader:
    """Parse a header line; a newer format version or a damaged header raises."""
    if not line.startswith(MAGIC):
        raise RecordingFormatError(f"{os.fspath(path)}: no volcast recording header")
    try:
        header = msgspec.json.decode(line[len(MAGIC) :], type=RecordingHeader)
    except msgspec.DecodeError as exc:
        raise RecordingFormatError(f"{os.fspath(path)}: bad header ({exc})") from exc
    if header.version > FORMAT_VERSION:
        raise RecordingFormatError(
            f"{os.fspath(path)}: format version {header.version} is newer than this "
            f"volcast reads ({FORMAT_VERSION}); upgrade volcast"
        )
    return header


def encode_line(frame: Frame) -> bytes:
    """One frame as one line, newline included."""
    payload = frame.payload
    enc = b"r"
    if b"\n" in payload:
        enc = b"e"
        payload = payload.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
    url = frame.url.encode() if frame.url is not None else _NO_URL
    ts = str(frame.ts_recv_ns).encode()
    return b" ".join((ts, frame.conn_id.encode(), frame.kind.encode(), url, enc, payload)) + b"\n"


def _unescape(payload: bytes) -> bytes:
    out = bytearray()
    i = 0
    while (j := payload.find(b"\\", i)) >= 0:
        out += payload[i:j]
        nxt = payload[j + 1 : j + 2]
        if nxt == b"n":
            out += b"\n"
        elif nxt == b"\\":
            out += b"\\"
        else:
            raise ValueError(f"bad escape {payload[j : j + 2]!r}")
        i = j + 2
    out += payload[i:]
    return bytes(out)


def decode_line(line: bytes) -> Frame:
    """Parse one frame line (newline included); ``ValueError`` if it is malformed."""
    if not line.endswith(b"\n"):
        raise ValueError("line does not end with a newline")
    fields = line[:-1].split(b" ", 5)
    if len(fields) != 6:
        raise ValueError(f"{len(fields)} fields, expected 6")
    ts, conn_id, kind_name, url, enc, payload = fields
    kind = _KINDS.get(kind_name)
    if kind is None or not ts.isdigit() or not conn_id:
        raise ValueError("bad time, connection id or kind")
    if enc == b"e":
        payload = _unescape(payload)
    elif enc != b"r":
        raise ValueError(f"unknown payload encoding {enc!r}")
    return Frame(
        int(ts),
        conn_id.decode(),
        kind,
        payload,
        url.decode() if url != _NO_URL else None,
    )


def read_header(path: str | os.PathLike[str]) -> RecordingHeader:
    """The header of a volcast recording, reading nothing past the first line."""
    lines = iter_lines(path)
    try:
        return decode_header(next(lines, b""), path)
    finally:
        lines.close()


def read_volcast(path: str | os.PathLike[str]) -> Generator[Frame, None, None]:
    """Yield the frames of a volcast recording in file order.

    A truncated file (a ``.part`` left by a killed writer, a cut download) yields
    every complete line and then raises :class:`RecordingFormatError`.
    """
    lines = iter_lines(path)
    decode_header(next(lines, b""), path)
    for lineno, line in enumerate(lines, 2):
        try:
            frame = decode_line(line)
        except ValueError as exc:
            raise RecordingFormatError(
                f"{os.fspath(path)}:{lineno}: bad frame line ({exc}): {line[:80]!r}"
            ) from exc
        yield frame
