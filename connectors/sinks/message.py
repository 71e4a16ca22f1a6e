"""A record as a broker message: topic, key, idempotency id and encoded payload.

Sans-I/O. A record's topic is its kind (from ``schema``) and its underlying:
``volcast.forecast/1`` for BTC is published on ``forecast.BTC``; the surface records
planned for later will go to ``surface.ETH``.

>>> rec = {"schema": "volcast.forecast/1", "id": "BTC:1", "ts_ns": 1, "underlying": "BTC"}
>>> m = to_message(rec)
>>> m.topic, m.key, m.id, m.payload[:30]
('forecast.BTC', 'BTC', 'BTC:1', b'{"schema":"volcast.forecast/1"')
>>> msgspec.msgpack.decode(to_message(rec, "msgpack").payload) == rec
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec

Format = Literal["json", "msgpack"]
CONTENT_TYPES: dict[str, str] = {"json": "application/json", "msgpack": "application/msgpack"}

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class Message:
    """One record ready to publish; ``id`` is the idempotency key consumers dedupe on."""

    topic: str  # forecast.BTC
    key: str  # the underlying: BTC (the Kafka partition key)
    id: str  # BTC:1723161256000000000
    ts_ns: int
    payload: bytes
    format: Format = "json"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def topic_of(record: dict[str, Any]) -> str:
    """``forecast.BTC`` for a ``volcast.forecast/1`` record of BTC."""
    kind = str(record["schema"]).split("/", 1)[0].rsplit(".", 1)[-1]
    return f"{kind}.{record['underlying']}"


def encode(record: dict[str, Any], fmt: Format = "json") -> bytes:
    return _json.encode(record) if fmt == "json" else _msgpack.encode(record)


def decode(payload: bytes, fmt: Format = "json") -> Any:
    return msgspec.json.decode(payload) if fmt == "json" else msgspec.msgpack.decode(payload)


def to_message(record: dict[str, Any], fmt: Format = "json") -> Message:
    return Message(
        topic=topic_of(record),
        key=str(record["underlying"]),
        id=str(record["id"]),
        ts_ns=int(record["ts_ns"]),
        payload=encode(record, fmt),
        format=fmt,
    )
