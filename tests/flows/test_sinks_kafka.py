"""The Kafka sink. No broker runs here: without ``KAFKA_BOOTSTRAP`` these tests cover the
configuration, the serialization and the behaviour with an unreachable broker; with
``KAFKA_BOOTSTRAP=host:port`` the last test produces to a real broker and consumes back.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid

import msgspec
import pytest

pytest.importorskip("confluent_kafka")

from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage

from connectors.sinks.localserver import free_port
from flows.kafka_sink import ForecastKafkaSink, kafka_message
from flows.schemas import validate
from flows.sink_urls import parse_sink_url
from flows.sinks import build_sinks

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP")


def records(n: int = 20) -> list[dict]:
    from flows.bench_sinks import restamped

    return restamped(n)


def test_the_url_builds_a_bytewax_kafka_sink_with_our_producer_config():
    (sink,) = build_sinks([parse_sink_url("kafka://127.0.0.1:9092,127.0.0.1:9093/vol.fc?acks=1&compression=zstd")])
    assert isinstance(sink, ForecastKafkaSink) and isinstance(sink, KafkaSink)
    cfg = sink.producer_config()
    assert cfg["bootstrap.servers"] == "127.0.0.1:9092,127.0.0.1:9093"
    assert cfg["acks"] == "1" and cfg["compression.type"] == "zstd"
    assert cfg["enable.idempotence"] is True and cfg["message.timeout.ms"] == 30_000
    assert sink.label == "kafka://127.0.0.1:9092/vol.fc"


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_records_are_keyed_by_underlying_and_carry_their_id(fmt):
    for rec in records(8):
        msg = kafka_message(rec, fmt)
        assert isinstance(msg, KafkaSinkMessage)
        assert msg.key == rec["underlying"].encode()
        assert dict(msg.headers) == {"id": rec["id"].encode(), "content-type": f"application/{fmt}".encode()}
        decoded = json.loads(msg.value) if fmt == "json" else msgspec.msgpack.decode(msg.value)
        assert decoded == rec
        validate(decoded)


def test_an_unreachable_broker_never_blocks_write_batch_and_is_counted(caplog):
    # Arrange: nothing listens on the port (loopback only).
    caplog.set_level(logging.INFO, logger="volcast.sink")
    url = f"kafka://127.0.0.1:{free_port()}/volcast-test?timeout_s=0.5&drain_s=0.5&retry_max_s=0.2"
    (sink,) = build_sinks([parse_sink_url(url)])
    part = sink.build("out", 0, 1)
    recs = records(200)
    # Act
    worst = 0.0
    for i in range(0, len(recs), 20):
        t0 = time.perf_counter()
        part.write_batch(recs[i : i + 20])
        worst = max(worst, time.perf_counter() - t0)
    deadline = time.monotonic() + 10
    while part.pump.stats().retries < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    part.close()
    stats = part.pump.stats()
    # Assert
    assert worst < 0.05
    assert stats.retries >= 2 and stats.delivered == 0 and stats.dropped == len(recs)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("kafka://127.0.0.1:" in w and "retrying with back-off" in w for w in warnings)


@pytest.mark.skipif(not BOOTSTRAP, reason="set KAFKA_BOOTSTRAP=host:port to test against a real broker")
def test_a_real_broker_receives_every_record():  # pragma: no cover - needs a broker
    from confluent_kafka import Consumer

    topic = f"volcast-test-{uuid.uuid4().hex[:8]}"
    (sink,) = build_sinks([parse_sink_url(f"kafka://{BOOTSTRAP}/{topic}")])
    part = sink.build("out", 0, 1)
    recs = records(100)
    part.write_batch(recs)
    part.close()
    assert part.pump.stats().delivered == len(recs)
    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < len(recs) and time.monotonic() < deadline:
        m = consumer.poll(1.0)
        if m is not None and m.error() is None:
            rec = json.loads(m.value())
            validate(rec)
            assert m.key() == rec["underlying"].encode() and dict(m.headers())["id"] == rec["id"].encode()
            got.append(rec["id"])
    consumer.close()
    assert sorted(got) == sorted(r["id"] for r in recs)
