"""Read cryptofeed's raw capture files (``AsyncFileCallback``) as :class:`Frame` records.

One message per line, ``<ts>`` the local time in float seconds as Python printed it::

    wss://stream.binance.com:9443/stream?streams=nknusdt@depth@100ms/... <-> 1633998511.159679
    wss://www.deribit.com/ws/api/v2 <- 1626993723.7145221: {"jsonrpc":"2.0",...}
    1633998512.0633569: {"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate",...}}
    https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000 -> 1633998512.320639: {...}
    configuration: {...}

The lines are, in order: a connection opened (``open``), a message we sent (``sent``),
a message received (``recv``), the body of a REST response to GET ``<url>`` (``rest``),
and cryptofeed's own settings (skipped). A blank line ends a connection, and so does
a second ``<->`` line (cryptofeed appends a reconnect to the same file): the next
frame starts a new ``conn_id``, ``cryptofeed:<file name>:<n>`` with ``n`` from 0.
Binary messages (OKX, Huobi) were written as a Python ``b'...'`` literal and are
decoded back to their bytes.

>>> from pathlib import Path
>>> path = Path(__file__).parents[2] / "tests/data/cryptofeed/BINANCE.ws.1.0"
>>> first = next(read_cryptofeed(path))
>>> first.kind, first.conn_id, first.ts_recv_ns
('open', 'cryptofeed:BINANCE.ws.1.0:0', 1633998511159679000)
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Generator
from pathlib import Path

from connectors.record.frames import Frame, FrameKind, RecordingFormatError, iter_lines

_TS = rb"(?P<ts>\d+(?:\.\d+)?)"
_URL = rb"(?P<url>\S+)"
# Each pattern stops at the ": " before the payload; the payload is the rest of the line.
LINE_PATTERNS: tuple[tuple[FrameKind, re.Pattern[bytes]], ...] = (
    ("recv", re.compile(_TS + rb": ")),
    ("open", re.compile(_URL + rb" <-> " + _TS + rb"$")),
    ("sent", re.compile(_URL + rb" <- " + _TS + rb": ")),
    ("rest", re.compile(_URL + rb" -> " + _TS + rb": ")),
)
_CONFIGURATION = b"configuration: "


def seconds_to_ns(text: bytes) -> int:
    """Decimal seconds (``b"1633998512.0633569"``) to integer ns, exactly, without a float.

    >>> seconds_to_ns(b"1633998512.0633569")
    1633998512063356900
    """
    whole, _, frac = text.partition(b".")
    # Python prints a time.time() float with at most 7 decimals today; digits past the
    # ninth would be below a nanosecond, so they are cut rather than rounded.
    return int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, b"0"))


def parse_line(line: bytes) -> tuple[FrameKind, str | None, int, bytes] | None:
    """Split one line (no newline) into ``(kind, url, ts_recv_ns, payload)``.

    ``None`` for a line that is not cryptofeed's (the caller decides how to report it).

    >>> parse_line(b'1633998512.5: {"a":1}')
    ('recv', None, 1633998512500000000, b'{"a":1}')
    """
    for kind, pattern in LINE_PATTERNS:
        m = pattern.match(line)
        if m is None:
            continue
        payload = line[m.end() :]
        if payload[:2] in (b"b'", b'b"'):
            try:
                payload = ast.literal_eval(payload.decode())
            except (ValueError, SyntaxError, UnicodeDecodeError):
                return None
            if not isinstance(payload, bytes):
                return None
        url = m.group("url").decode() if kind != "recv" else None
        return kind, url, seconds_to_ns(m.group("ts")), payload
    return None


def read_cryptofeed(path: str | os.PathLike[str]) -> Generator[Frame, None, None]:
    """Yield the frames of a cryptofeed capture (plain or gzip) in file order."""
    name = Path(path).name
    conn = 0
    in_conn = False  # whether the current connection has yielded a frame
    ended = False  # a blank line closed the current connection
    for lineno, raw in enumerate(iter_lines(path), 1):
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if not line:
            ended = in_conn
            continue
        if line.startswith(_CONFIGURATION):
            continue
        parsed = parse_line(line)
        if parsed is None:
            raise RecordingFormatError(
                f"{os.fspath(path)}:{lineno}: not a cryptofeed capture line: {line[:80]!r}"
            )
        kind, url, ts, payload = parsed
        if ended or (kind == "open" and in_conn):
            conn += 1
            ended = in_conn = False
        in_conn = True
        yield Frame(ts, f"cryptofeed:{name}:{conn}", kind, payload, url)
