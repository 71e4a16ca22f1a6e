"""When and why to reconnect: a back-off schedule and a pure error classifier.

``classify`` decides which exceptions are the network's fault (retry, and log one
human line) and which are bugs (raise), as websockets' ``process_exception`` does.
Neither function does I/O or sleeps.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
from collections.abc import Iterator

import httpx
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)


def backoff_delays(
    initial: float = 0.5,
    factor: float = 2.0,
    cap: float = 30.0,
    jitter: float = 0.5,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Endless jittered, capped exponential delays in seconds.

    The n-th delay (from 0) is ``min(cap, initial * factor**n) * (1 - jitter * U)``
    with ``U`` uniform in [0, 1): spreading the retries of many clients so that they
    do not reconnect in lockstep (Binance bans IPs that reconnect too often).

    >>> d = backoff_delays(initial=1, factor=2, cap=5, jitter=0)
    >>> [next(d) for _ in range(5)]
    [1.0, 2.0, 4.0, 5.0, 5.0]
    """
    if initial <= 0 or factor < 1 or cap < initial or not 0 <= jitter <= 1:
        raise ValueError(
            "need initial > 0, factor >= 1, cap >= initial and 0 <= jitter <= 1, got "
            f"initial={initial}, factor={factor}, cap={cap}, jitter={jitter}"
        )
    rand = (rng or random.Random()).random
    delay = float(initial)
    while True:
        yield delay * (1.0 - jitter * rand())
        delay = min(cap, delay * factor)


def classify(exc: BaseException) -> str | None:
    """A one-line reason if ``exc`` is a retryable network failure, else None (a bug).

    >>> classify(ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9)"))
    "connection refused: [Errno 111] Connect call failed ('127.0.0.1', 9)"
    >>> classify(socket.gaierror(-3, "Temporary failure in name resolution"))
    'DNS failure: [Errno -3] Temporary failure in name resolution'
    >>> classify(KeyError("x")) is None
    True
    """
    if isinstance(exc, InvalidURI):
        return None  # a configuration mistake; retrying cannot fix it
    if isinstance(exc, InvalidStatus):
        return f"handshake rejected: HTTP {exc.response.status_code} {exc.response.reason_phrase}"
    if isinstance(exc, InvalidHandshake):
        return f"handshake failed: {exc}"
    if isinstance(exc, ConnectionClosed):
        if exc.rcvd is None:
            return "connection lost without a close frame"
        return f"server closed the connection: {exc.rcvd.code} {exc.rcvd.reason}".rstrip()
    if isinstance(exc, socket.gaierror):
        return f"DNS failure: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: {exc}"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException)):
        return f"timed out{': ' + str(exc) if str(exc) else ''}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, httpx.TransportError):
        return f"HTTP transport error: {exc or type(exc).__name__}"
    if isinstance(exc, (OSError, EOFError)):
        return str(exc) or type(exc).__name__
    return None
