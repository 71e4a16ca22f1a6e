"""The unit every recording reader yields and every protocol core is fed."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Generator
from typing import Literal

import msgspec

FrameKind = Literal["open", "recv", "sent", "rest", "close"]


class Frame(msgspec.Struct, frozen=True):
    """One raw frame with its local receive time.

    ``kind``: ``open`` (a connection to ``url`` opened), ``recv`` (a websocket frame
    received), ``sent`` (a frame we sent), ``rest`` (the body of a REST response to
    GET ``url``), ``close`` (the connection closed; ``payload`` holds the reason).
    """

    ts_recv_ns: int
    conn_id: str
    kind: FrameKind
    payload: bytes
    url: str | None = None


class RecordingFormatError(ValueError):
    """A file that is not a recording volcast can read, or one that is truncated or corrupt."""


GZIP_MAGIC = b"\x1f\x8b"


def iter_lines(path: str | os.PathLike[str]) -> Generator[bytes, None, None]:
    """Yield the lines of a plain or gzip file (told apart by content), newline included.

    A truncated or corrupt gzip stream raises :class:`RecordingFormatError` naming the
    file and the last good line, after every complete line before it was yielded.
    """
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw) if magic == GZIP_MAGIC else raw
        n = 0  # lines yielded, for the error message
        try:
            for line in stream:
                yield line
                n += 1
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise RecordingFormatError(
                f"{os.fspath(path)}: truncated or corrupt after line {n} ({exc})"
            ) from exc
