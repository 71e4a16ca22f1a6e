"""Kafka publisher over confluent-kafka (the optional ``kafka`` extra), keyed by underlying.

Each message is keyed by the record's underlying (so one underlying stays in order on
one partition) and carries the headers ``id`` (the idempotency key) and
``content-type``. A batch counts as delivered when every message's delivery report
came back without error; a batch not confirmed within ``timeout_s`` is purged from
the producer's queue and retried by the pump. The producer is idempotent
(``enable.idempotence``), so the broker drops the producer's own internal retries;
a batch retried by the pump may still arrive twice: consumers dedupe on ``id``.

``confluent_kafka`` is imported when the publisher opens, so this module imports
without the extra.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from connectors.sinks.delivery import PermanentError
from connectors.sinks.message import Message

log = logging.getLogger("volcast.sink.kafka")

DEFAULT_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "message.timeout.ms": 30_000,
    "socket.connection.setup.timeout.ms": 5_000,
    "reconnect.backoff.max.ms": 2_000,
}


def producer_config(brokers: list[str], add_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The producer's configuration: Bytewax's (``bootstrap.servers``) plus our defaults.

    >>> producer_config(["127.0.0.1:9092"], {"acks": 1})["acks"]
    1
    """
    return {"bootstrap.servers": ",".join(brokers), **DEFAULT_CONFIG, **(add_config or {})}


class KafkaPublisher:
    def __init__(self, config: dict[str, Any], topic: str, *, timeout_s: float = 10.0) -> None:
        self._config = dict(config)
        self._topic = topic
        self._timeout = timeout_s
        self._producer: Any = None

    async def open(self) -> None:
        from confluent_kafka import Producer

        # librdkafka logs through this logger instead of printing every failed connect.
        self._producer = Producer({**self._config, "logger": _RdkafkaLog()})

    async def connect(self) -> None:
        # Asks the cluster for the topic's metadata: fails fast if no broker answers.
        from confluent_kafka import KafkaException

        try:
            md = await asyncio.to_thread(self._producer.list_topics, self._topic, min(self._timeout, 5.0))
        except KafkaException as exc:
            err = exc.args[0] if exc.args else exc
            raise ConnectionError(f"no Kafka broker answered: {getattr(err, 'str', lambda: err)()}") from None
        tmd = md.topics.get(self._topic)
        if tmd is not None and tmd.error is not None and tmd.error.code() != 5:  # 5: LEADER_NOT_AVAILABLE
            log.debug("kafka topic %s: %s", self._topic, tmd.error)

    async def publish(self, messages: list[Message]) -> int:
        p = self._producer
        pending = len(messages)
        errors: list[Any] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            nonlocal pending
            pending -= 1
            if err is not None:
                errors.append(err)

        for m in messages:
            headers = [("id", m.id.encode()), ("content-type", m.content_type.encode())]
            while True:
                try:
                    p.produce(self._topic, value=m.payload, key=m.key.encode(), headers=headers,
                              on_delivery=on_delivery)
                    break
                except BufferError:  # librdkafka's local queue is full: let it drain
                    p.poll(0.05)
                    await asyncio.sleep(0)
        deadline = time.monotonic() + self._timeout
        while pending > 0:
            p.poll(0)
            if pending <= 0:
                break
            if time.monotonic() > deadline:
                p.purge(in_queue=True, in_flight=False)
                p.poll(0)
                raise TimeoutError(f"{pending} of {len(messages)} messages not acknowledged in {self._timeout}s")
            await asyncio.sleep(0.002)
        if errors:
            err = errors[0]
            if err.fatal() or not err.retriable() and err.code() in _REFUSED:
                raise PermanentError(f"kafka refused {len(errors)} messages: {err}")
            raise ConnectionError(f"kafka: {len(errors)} of {len(messages)} messages failed: {err}")
        return 0

    async def close(self) -> None:
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, min(self._timeout, 5.0))


# MSG_SIZE_TOO_LARGE, TOPIC_AUTHORIZATION_FAILED, INVALID_RECORD: retrying cannot help.
_REFUSED = {10, 29, 87}


class _RdkafkaLog:
    """A minimal logger for librdkafka: its lines at DEBUG (the pump reports outages)."""

    def log(self, level: int, msg: str, *args: Any, **kw: Any) -> None:
        log.debug(msg, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(log, name)
