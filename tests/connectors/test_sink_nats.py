"""The NATS JetStream publisher against a real nats-server -js on a random loopback port."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import nats
import pytest

from connectors.sinks.delivery import DeliveryPump
from connectors.sinks.localserver import NatsServer
from connectors.sinks.message import to_message
from connectors.sinks.nats import NatsPublisher

pytestmark = pytest.mark.skipif(not NatsServer.available(), reason="nats-server not installed (make test-deps)")


def rec(i: int, und: str = "BTC") -> dict:
    """A minimal synthetic record."""
    ts = 1_723_161_256_000_000_000 + i * 1_000_000_000
    return {"schema": "volcast.forecast/1", "id": f"{und}:{ts}", "ts_ns": ts, "underlying": und, "i": i}


def wait_until(cond, timeout=15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def server():
    with NatsServer() as s:
        yield s


def pump_for(server, **kw) -> DeliveryPump:
    pub = NatsPublisher(server.host, server.port, timeout_s=1.0, **kw)
    pump = DeliveryPump(pub, label=server.url, encode=to_message, retry_initial_s=0.05, retry_max_s=0.3)
    pump.start()
    return pump


def read_stream(url: str, subject: str = "volcast.>") -> list[tuple[str, str, dict]]:
    """(subject, Nats-Msg-Id, record) of every message in the stream, in stream order."""

    async def main():
        nc = await nats.connect(url)
        js = nc.jetstream()
        sub = await js.subscribe(subject, ordered_consumer=True)
        out = []
        try:
            while True:
                m = await sub.next_msg(timeout=0.5)
                out.append((m.subject, m.headers["Nats-Msg-Id"], json.loads(m.data)))
        except nats.errors.TimeoutError:
            pass
        await nc.close()
        return out

    return asyncio.run(main())


def stream_config(url: str, name: str = "VOLCAST"):
    async def main():
        nc = await nats.connect(url)
        info = await nc.jetstream().stream_info(name)
        await nc.close()
        return info.config

    return asyncio.run(main())


def test_the_stream_is_created_and_every_record_lands_on_its_subject(server):
    pump = pump_for(server)
    records = [rec(i, und) for i in range(20) for und in ("BTC", "ETH")]
    pump.offer(records)
    stats = pump.close()
    got = read_stream(server.url)
    assert [(s, mid) for s, mid, _ in got] == [(f"volcast.forecast.{r['underlying']}", r["id"]) for r in records]
    assert [r for _, _, r in got] == records
    cfg = stream_config(server.url)
    assert cfg.subjects == ["volcast.>"] and cfg.duplicate_window == 120
    assert stats.delivered == 40 and stats.duplicates == 0


def test_an_existing_stream_is_reused_and_the_server_deduplicates_on_msg_id(server):
    first = pump_for(server)
    first.offer([rec(i) for i in range(10)])
    first.close()
    second = pump_for(server)  # a restarted daemon replaying some of the same records
    second.offer([rec(i) for i in range(5, 15)])
    stats = second.close()
    assert [mid for _, mid, _ in read_stream(server.url)] == [rec(i)["id"] for i in range(15)]
    assert stats.delivered == 10 and stats.duplicates == 5


def test_a_killed_server_is_retried_and_delivery_resumes_after_restart(server):
    pump = pump_for(server)
    stop = threading.Event()
    offered = []

    def produce():
        i = 0
        while not stop.is_set():
            offered.append(rec(i))
            pump.offer([offered[-1]])
            i += 1
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    assert wait_until(lambda: pump.stats().delivered > 20)
    server.kill()
    assert wait_until(lambda: pump.stats().retries >= 1 and pump.stats().buffer_depth > 20)
    server.start()  # same port, same JetStream store
    assert wait_until(lambda: pump.stats().up and pump.stats().buffer_depth < 5)
    stop.set()
    producer.join()
    stats = pump.close()
    assert stats.dropped == 0 and stats.retries >= 1
    ids = [mid for _, mid, _ in read_stream(server.url)]
    assert ids == [r["id"] for r in offered]  # each once (Nats-Msg-Id), in order
