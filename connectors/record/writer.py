"""Write frames to volcast recordings (``*.vcr.gz``), rotating by size and by time.

Each file is written as ``<name>.vcr.gz.part`` and renamed to ``<name>.vcr.gz`` only
when it is complete: gzip trailer written, data fsynced, at rotation or at
:meth:`RecordingWriter.close`. A name without ``.part`` is therefore always a whole
file; a killed writer leaves a ``.part`` that reads up to its last flush and then
reports truncation. The format is in ``docs/record-format.md``.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as out:
...     with RecordingWriter(out, venue="binance", market="spot", symbols=["BTCUSDT"]) as w:
...         w.write(Frame(1723161253937085768, "c0", "recv", b'{"stream":"x","data":{}}'))
...     print([p.name for p in w.completed])
['binance-spot-20240808T235413Z.vcr.gz']
"""

from __future__ import annotations

import gzip
import importlib.metadata
import os
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO

from connectors.record.frames import Frame
from connectors.record.volcast_format import SUFFIX, RecordingHeader, encode_header, encode_line

_NAME_PART = re.compile(r"[A-Za-z0-9_]+")
_WHITESPACE = re.compile(rb"\s")


def volcast_version() -> str:
    """The installed volcast version, ``unknown`` when run from a checkout never pip-installed."""
    try:
        return importlib.metadata.version("volcast")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class RecordingWriter:
    """Append frames to rotating, gzip-compressed volcast recordings in ``out_dir``.

    Files are named ``<venue>-<market>-<UTC time of their first frame>.vcr.gz`` (a
    ``-N`` suffix if that name is taken). A new file starts when the current one has
    reached about ``rotate_bytes`` compressed bytes, or when a frame's receive time is
    ``rotate_seconds`` past the file's first frame. Buffered data is flushed to disk
    when a write comes ``flush_seconds`` after the last flush, and on :meth:`flush`.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        venue: str,
        market: str,
        symbols: Iterable[str],
        rotate_bytes: int = 256 * 2**20,
        rotate_seconds: float = 3600.0,
        flush_seconds: float = 1.0,
        compresslevel: int = 6,
    ) -> None:
        for label, value in (("venue", venue), ("market", market)):
            if not _NAME_PART.fullmatch(value):
                raise ValueError(f"{label} {value!r} must be letters, digits or _ (it names files)")
        if rotate_bytes <= 0 or rotate_seconds <= 0 or flush_seconds < 0:
            raise ValueError("rotate_bytes and rotate_seconds must be > 0, flush_seconds >= 0")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._venue, self._market, self._symbols = venue, market, list(symbols)
        self._rotate_bytes = rotate_bytes
        self._rotate_ns = int(rotate_seconds * 1e9)
        self._flush_seconds = flush_seconds
        self._compresslevel = compresslevel
        self._raw: IO[bytes] | None = None
        self._gz: gzip.GzipFile | None = None
        self._part = self._final = Path()
        self._first_ns = 0
        self._last_flush = 0.0
        self._closed = False
        self.completed: list[Path] = []  # finished files, oldest first

    def write(self, frame: Frame) -> None:
        """Append one frame, rotating first if the current file is old enough."""
        if self._closed:
            raise ValueError("write to a closed RecordingWriter")
        if _WHITESPACE.search(frame.conn_id.encode()) or not frame.conn_id:
            raise ValueError(f"conn_id {frame.conn_id!r} must be non-empty without whitespace")
        if frame.url is not None and (_WHITESPACE.search(frame.url.encode()) or frame.url == "-"):
            raise ValueError(f"url {frame.url!r} must not contain whitespace or be '-'")
        if self._gz is not None and frame.ts_recv_ns - self._first_ns >= self._rotate_ns:
            self._finish()
        if self._gz is None:
            self._open(frame.ts_recv_ns)
        assert self._gz is not None and self._raw is not None
        self._gz.write(encode_line(frame))
        if self._raw.tell() >= self._rotate_bytes:
            self._finish()
        elif time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Push buffered frames to the ``.part`` file so a reader (or a crash) sees them."""
        if self._gz is not None:
            self._gz.flush()  # zlib sync flush: every frame so far decodes from the file
            self._last_flush = time.monotonic()

    def close(self) -> None:
        """Complete the current file (rename it from ``.part``); calling again does nothing."""
        if not self._closed:
            self._closed = True
            self._finish()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Every line in the file is whole even if the caller failed, so complete it.
        self.close()

    def _open(self, first_ns: int) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(first_ns // 1_000_000_000))
        stem = f"{self._venue}-{self._market}-{stamp}"
        n = 0
        while True:
            self._final = self.out_dir / f"{stem}{f'-{n}' if n else ''}{SUFFIX}"
            self._part = self._final.with_name(self._final.name + ".part")
            if not self._final.exists():
                try:
                    self._raw = open(self._part, "xb")  # closed in _finish
                    break
                except FileExistsError:
                    pass  # another writer holds this name; take the next
            n += 1
        # The gzip header names the final file, not the .part.
        self._gz = gzip.GzipFile(
            filename=self._final.name,
            mode="wb",
            fileobj=self._raw,
            compresslevel=self._compresslevel,
        )
        header = RecordingHeader(
            venue=self._venue,
            market=self._market,
            symbols=self._symbols,
            created=datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            volcast_version=volcast_version(),
        )
        self._gz.write(encode_header(header))
        self._first_ns = first_ns
        self._last_flush = time.monotonic()

    def _finish(self) -> None:
        if self._gz is None or self._raw is None:
            return
        self._gz.close()  # writes the gzip trailer; leaves self._raw open
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self._part, self._final)
        # Make the rename itself durable before anyone trusts the final name.
        dir_fd = os.open(self.out_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.completed.append(self._final)
        self._gz = self._raw = None
