"""``kafka://HOST:PORT/TOPIC``: Bytewax's Kafka sink, made non-blocking and counted.

Imported only when a Kafka sink is configured: ``bytewax.connectors.kafka`` needs
confluent-kafka (``pip install 'volcast[kafka]'``).

:class:`ForecastKafkaSink` is a :class:`bytewax.connectors.kafka.KafkaSink` (same
brokers/topic/add_config and producer configuration) whose partition differs in one
way: the stock partition calls ``producer.flush()`` with no timeout inside
``write_batch``, so with the broker down it blocks the Bytewax worker, and with it
every other sink, for up to ``message.timeout.ms`` (5 minutes by default), and it
does not look at delivery reports. Ours hands the batch to a delivery pump
(``connectors.sinks.delivery``) whose thread produces, reads every delivery report,
retries with back-off and counts, like the other network sinks. Messages are
:class:`~bytewax.connectors.kafka.KafkaSinkMessage`-shaped: key = the underlying,
value = the encoded record, headers ``id`` and ``content-type``.
"""

from __future__ import annotations

from typing import Any

from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage

from connectors.sinks.kafka import KafkaPublisher, producer_config
from connectors.sinks.message import Format, to_message
from flows.sink_urls import KafkaSinkConfig
from flows.sinks import PumpOptions, _PumpPartition, start_pump


def kafka_message(record: dict[str, Any], fmt: Format = "json") -> KafkaSinkMessage[bytes, bytes]:
    """The Kafka message a record is produced as (what a stock ``KafkaSink`` would take)."""
    m = to_message(record, fmt)
    return KafkaSinkMessage(
        key=m.key.encode(), value=m.payload,
        headers=[("id", m.id.encode()), ("content-type", m.content_type.encode())],
    )


class ForecastKafkaSink(KafkaSink):
    """Bytewax's ``KafkaSink`` with a non-blocking, retrying, counted partition."""

    def __init__(self, cfg: KafkaSinkConfig) -> None:
        super().__init__(list(cfg.brokers), cfg.topic, add_config=cfg.add_config())
        self.cfg = cfg
        self.label = cfg.label

    def producer_config(self) -> dict[str, Any]:
        return producer_config(list(self._brokers), self._add_config)

    def build(self, _step_id: str, worker_index: int, worker_count: int) -> _PumpPartition:  # type: ignore[override]
        publisher = KafkaPublisher(self.producer_config(), self.cfg.topic, timeout_s=self.cfg.timeout_s)
        return _PumpPartition(start_pump(self.label, publisher, PumpOptions.of(self.cfg)))


def kafka_sink(cfg: KafkaSinkConfig) -> ForecastKafkaSink:
    return ForecastKafkaSink(cfg)
