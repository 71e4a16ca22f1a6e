"""The Redis publisher against a real redis-server on a random loopback port."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from connectors.sinks.delivery import DeliveryPump
from connectors.sinks.localserver import RedisServer
from connectors.sinks.message import to_message
from connectors.sinks.redis import RedisPublisher

pytestmark = pytest.mark.skipif(not RedisServer.available(), reason="redis-server not installed (make test-deps)")


def rec(i: int, und: str = "BTC") -> dict:
    """A minimal synthetic record."""
    ts = 1_723_161_256_000_000_000 + i * 1_000_000_000
    return {"schema": "volcast.forecast/1", "id": f"{und}:{ts}", "ts_ns": ts, "underlying": und, "i": i}


def wait_until(cond, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def server():
    with RedisServer() as s:
        yield s


def pump_for(server, **kw) -> DeliveryPump:
    pub = RedisPublisher(server.host, server.port, maxlen=kw.pop("maxlen", 100_000), timeout_s=1.0)
    pump = DeliveryPump(pub, label=server.url, encode=to_message, retry_initial_s=0.05, retry_max_s=0.3, **kw)
    pump.start()
    return pump


def stream_ids(client: redis.Redis, key: str) -> list[str]:
    return [fields[b"id"].decode() for _sid, fields in client.xrange(key)]


def test_publish_and_xadd_per_topic(server):
    # Arrange: a pub/sub subscriber on the BTC channel.
    client = redis.Redis(port=server.port)
    sub = client.pubsub()
    sub.subscribe("volcast.forecast.BTC")
    assert sub.get_message(timeout=2)["type"] == "subscribe"
    pump = pump_for(server)
    records = [rec(i, und) for i in range(20) for und in ("BTC", "ETH")]
    # Act
    pump.offer(records)
    stats = pump.close()
    # Assert: the channel got BTC only, the streams hold every record, in order, with its id.
    got = []
    while (m := sub.get_message(timeout=1)) is not None:
        if m["type"] == "message":
            got.append(json.loads(m["data"]))
    assert [g["id"] for g in got] == [r["id"] for r in records if r["underlying"] == "BTC"]
    assert stream_ids(client, "volcast.forecast.BTC") == [r["id"] for r in records if r["underlying"] == "BTC"]
    assert stream_ids(client, "volcast.forecast.ETH") == [r["id"] for r in records if r["underlying"] == "ETH"]
    first = client.xrange("volcast.forecast.BTC", count=1)[0]
    assert first[0] == b"1723161256000-0" and json.loads(first[1][b"data"]) == records[0]
    assert stats.delivered == 40 and stats.duplicates == 0


def test_a_replayed_record_is_not_stored_twice(server):
    client = redis.Redis(port=server.port)
    pump = pump_for(server)
    pump.offer([rec(i) for i in range(10)])
    pump.offer([rec(i) for i in range(5, 15)])  # 5..9 again, as after a retried batch
    stats = pump.close()
    assert stream_ids(client, "volcast.forecast.BTC") == [rec(i)["id"] for i in range(15)]
    assert stats.delivered == 20 and stats.duplicates == 5


def test_streams_are_trimmed_to_about_maxlen(server):
    client = redis.Redis(port=server.port)
    pump = pump_for(server, maxlen=100)
    pump.offer([rec(i) for i in range(2000)])
    pump.close()
    assert 100 <= client.xlen("volcast.forecast.BTC") < 400


def test_a_killed_server_is_retried_and_delivery_resumes_after_restart(server):
    # Arrange: a steady producer, like the dataflow.
    client = redis.Redis(port=server.port)
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
    # Act: SIGKILL the server, keep producing, restart it on the same port and data.
    server.kill()
    assert wait_until(lambda: pump.stats().retries >= 2)
    assert wait_until(lambda: pump.stats().buffer_depth > 20)
    server.start()
    assert wait_until(lambda: pump.stats().up and pump.stats().buffer_depth < 5)
    stop.set()
    producer.join()
    stats = pump.close()
    # Assert: the durable stream holds every record once, in order; nothing was dropped.
    assert stats.dropped == 0 and stats.retries >= 2
    assert stream_ids(client, "volcast.forecast.BTC") == [r["id"] for r in offered]
    assert stats.delivered == len(offered)
