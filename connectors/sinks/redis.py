"""Redis publisher: PUBLISH on a channel per topic and XADD to a stream per topic.

Both are named ``<prefix><topic>``, e.g. ``volcast.forecast.BTC`` (channels and keys
are separate namespaces in Redis). Each stream entry has the fields ``id`` (the
record id) and ``data`` (the encoded record), and is trimmed to about ``maxlen``
entries (``MAXLEN ~``).

Idempotent streams: an entry's stream ID is derived from the record's timestamp
(``<ms>-<ns within the ms>``), and a topic's timestamps only grow, so a retried or
replayed record is refused by XADD ("equal or smaller than the target stream top
item") and counted as a duplicate instead of being stored twice. PUBLISH is
fire-and-forget, as Redis pub/sub is: a subscriber that is not connected misses
messages, and a retried batch may be published twice (dedupe on ``id``).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from connectors.sinks.delivery import PermanentError
from connectors.sinks.message import Message

log = logging.getLogger("volcast.sink.redis")

_DUPLICATE = "equal or smaller than the target stream top item"


def stream_id(ts_ns: int) -> str:
    """The stream entry ID of a record stamped ``ts_ns``.

    >>> stream_id(1723161256000123456)
    '1723161256000-123456'
    """
    return f"{ts_ns // 1_000_000}-{ts_ns % 1_000_000}"


class RedisPublisher:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        prefix: str = "volcast.",
        maxlen: int = 100_000,
        timeout_s: float = 2.0,
    ) -> None:
        self._kw: dict[str, Any] = {
            "host": host, "port": port, "db": db, "username": username, "password": password,
            "socket_connect_timeout": timeout_s, "socket_timeout": timeout_s,
            # The pump retries with back-off; redis-py's own retries would only add delay.
            "retry": Retry(NoBackoff(), 0), "client_name": "volcast",
        }
        self._prefix = prefix
        self._maxlen = maxlen
        self._redis: Redis | None = None

    async def open(self) -> None:
        self._redis = Redis(**self._kw)

    async def connect(self) -> None:
        assert self._redis is not None
        await self._redis.ping()

    async def publish(self, messages: list[Message]) -> int:
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for m in messages:
            name = self._prefix + m.topic
            pipe.publish(name, m.payload)
            pipe.xadd(
                name, {"id": m.id, "data": m.payload}, id=stream_id(m.ts_ns),
                maxlen=self._maxlen, approximate=True,
            )
        results = await pipe.execute(raise_on_error=False)
        duplicates = 0
        for i, res in enumerate(results):
            if not isinstance(res, Exception):
                continue
            if i % 2 == 1 and isinstance(res, ResponseError) and _DUPLICATE in str(res):
                duplicates += 1
            elif isinstance(res, ResponseError):
                raise PermanentError(f"{'XADD' if i % 2 else 'PUBLISH'} refused: {res}")
            else:
                raise res
        return duplicates

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
