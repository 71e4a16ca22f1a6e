"""JSONL files that are complete only once closed: ``.part`` while open, renamed after.

Without rotation, records go to ``path`` itself (``path.part`` while the daemon runs).
With rotation (``rotate_bytes`` and/or ``rotate_s``), each segment is named
``<stem>-<UTC start, YYYYmmddTHHMMSSZ>-<n><suffix>`` next to ``path``, e.g.
``forecasts-20260101T120000Z-0003.jsonl``; a segment is closed, fsynced (policy
permitting) and renamed when the next line would take it past ``rotate_bytes``, or on
the first write after it has been open ``rotate_s`` seconds, and at close. Lines are
never split across segments.

fsync policies: ``rotate`` (default: when a segment completes), ``interval`` (also at
most every ``fsync_s`` seconds while writing), ``always`` (after every batch: the
slowest, it blocks the writer on the disk) and ``never`` (leave it to the OS).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal

FsyncPolicy = Literal["rotate", "interval", "always", "never"]
PART = ".part"


class RotatingJsonlWriter:
    """Append newline-terminated lines to a JSONL file or to rotating segments.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> w = RotatingJsonlWriter(d / "f.jsonl", rotate_bytes=10)
    >>> w.write_lines([b'{"a":1}\\n', b'{"a":2}\\n', b'{"a":3}\\n'])
    >>> w.close()
    >>> [p.read_bytes() for p in w.completed]
    [b'{"a":1}\\n', b'{"a":2}\\n', b'{"a":3}\\n']
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rotate_bytes: int | None = None,
        rotate_s: float | None = None,
        fsync: FsyncPolicy = "rotate",
        fsync_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if rotate_bytes is not None and rotate_bytes < 1:
            raise ValueError(f"rotate_bytes must be positive, got {rotate_bytes}")
        if rotate_s is not None and not rotate_s > 0:
            raise ValueError(f"rotate_s must be positive, got {rotate_s}")
        if fsync not in ("rotate", "interval", "always", "never"):
            raise ValueError(f"fsync must be rotate, interval, always or never, got {fsync!r}")
        self.path = Path(path)
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self.fsync = fsync
        self.fsync_s = fsync_s
        self._clock = clock
        self._wall = wall
        self._file: BinaryIO | None = None
        self._final: Path | None = None
        self._bytes = 0
        self._opened_at = 0.0
        self._synced_at = 0.0
        self._seq = 0
        self.lines = 0  # written over the writer's life
        self.completed: list[Path] = []  # segments closed and renamed, oldest first
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def rotating(self) -> bool:
        return self.rotate_bytes is not None or self.rotate_s is not None

    @property
    def current(self) -> Path | None:
        """The final name of the segment being written (it exists as ``<name>.part``)."""
        return self._final

    def write_lines(self, lines: Sequence[bytes]) -> None:
        """Append lines (each ending in ``\\n``), rotating between lines as configured."""
        if not lines:
            return
        pending: list[bytes] = []
        size = 0
        for line in lines:
            if self._file is None:
                self._open()
            elif self._due(size, len(line)):
                self._flush(pending)
                pending, size = [], 0
                self._finish_segment()
                self._open()
            pending.append(line)
            size += len(line)
        self._flush(pending)
        self.lines += len(lines)
        assert self._file is not None
        self._file.flush()
        if self.fsync == "always" or (
            self.fsync == "interval" and self._clock() - self._synced_at >= self.fsync_s
        ):
            os.fsync(self._file.fileno())
            self._synced_at = self._clock()

    def close(self) -> None:
        """Complete the open segment (fsync per policy, rename); idempotent.

        Without rotation a run that wrote nothing still leaves its (empty) file, so
        the file's presence says the run ended cleanly.
        """
        if self._file is None and not self.rotating and not self.completed:
            self._open()
        if self._file is not None:
            self._finish_segment()

    def _due(self, pending: int, line: int) -> bool:
        used = self._bytes + pending
        if self.rotate_bytes is not None and used > 0 and used + line > self.rotate_bytes:
            return True
        return self.rotate_s is not None and self._clock() - self._opened_at >= self.rotate_s

    def _flush(self, pending: list[bytes]) -> None:
        if pending:
            data = b"".join(pending)
            assert self._file is not None
            self._file.write(data)
            self._bytes += len(data)

    def _open(self) -> None:
        if self.rotating:
            self._seq += 1
            stamp = datetime.fromtimestamp(self._wall(), tz=UTC).strftime("%Y%m%dT%H%M%SZ")
            final = self.path.with_name(f"{self.path.stem}-{stamp}-{self._seq:04d}{self.path.suffix}")
        else:
            final = self.path
        self._final = final
        self._file = open(final.with_name(final.name + PART), "wb")
        self._bytes = 0
        self._opened_at = self._synced_at = self._clock()

    def _finish_segment(self) -> None:
        assert self._file is not None and self._final is not None
        self._file.flush()
        if self.fsync != "never":
            os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._final.with_name(self._final.name + PART), self._final)
        self.completed.append(self._final)
        self._file = None
        self._final = None
