"""The delivery pump: non-blocking hand-off, at-least-once retries, bounded buffer, counters."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from connectors.sinks.delivery import DeliveryPump, PermanentError
from connectors.sinks.message import to_message


def rec(i: int, und: str = "BTC") -> dict:
    """A minimal synthetic record (the pump reads only schema, id, ts_ns, underlying)."""
    ts = 1_723_161_256_000_000_000 + i * 1_000_000_000
    return {"schema": "volcast.forecast/1", "id": f"{und}:{ts}", "ts_ns": ts, "underlying": und}


class FakeBroker:
    """A publisher whose availability the test switches; records what it accepted."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.up.set()
        self.accepted: list[str] = []
        self.attempts = 0
        self.refuse_ids: set[str] = set()
        self.hang = threading.Event()  # publish blocks (on the pump's loop) while set

    async def open(self) -> None:
        return None

    async def connect(self) -> None:
        if not self.up.is_set():
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")

    async def publish(self, messages):
        self.attempts += 1
        while self.hang.is_set():
            await asyncio.sleep(0.01)
        if not self.up.is_set():
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")
        if any(m.id in self.refuse_ids for m in messages):
            raise PermanentError("WRONGTYPE")
        self.accepted.extend(m.id for m in messages)
        return 0

    async def close(self) -> None:
        return None


def make_pump(broker, **kw) -> DeliveryPump:
    kw.setdefault("retry_initial_s", 0.01)
    kw.setdefault("retry_max_s", 0.05)
    pump = DeliveryPump(broker, label="fake://127.0.0.1:1", encode=to_message, **kw)
    pump.start()
    return pump


def wait_until(cond, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False


def test_records_are_delivered_in_order():
    broker = FakeBroker()
    pump = make_pump(broker, batch_size=7)
    records = [rec(i) for i in range(100)]
    for i in range(0, 100, 10):
        pump.offer(records[i : i + 10])
    stats = pump.close()
    assert broker.accepted == [r["id"] for r in records]
    assert (stats.delivered, stats.retries, stats.dropped, stats.buffer_depth) == (100, 0, 0, 0)


def test_offer_never_blocks_while_the_broker_hangs_and_the_buffer_drops_oldest():
    # Arrange: a broker that never answers; a small buffer.
    broker = FakeBroker()
    broker.hang.set()
    pump = make_pump(broker, buffer_size=50, batch_size=10)
    pump.offer([rec(0)])
    assert wait_until(lambda: broker.attempts == 1)  # one batch of 1 is stuck in flight
    # Act: offer far more than the buffer holds; time every call.
    worst = 0.0
    for i in range(1, 1001):
        t0 = time.perf_counter()
        pump.offer([rec(i)])
        worst = max(worst, time.perf_counter() - t0)
    stats = pump.stats()
    # Assert: bounded, counted, and the newest kept.
    assert worst < 0.05
    assert stats.buffer_depth == 51 and stats.dropped == 1000 - 50
    broker.hang.clear()
    stats = pump.close()
    assert broker.accepted == [rec(0)["id"]] + [rec(i)["id"] for i in range(951, 1001)]
    assert stats.delivered == 51 and stats.dropped == 950


def test_a_broker_outage_is_retried_with_backoff_and_delivery_resumes(caplog):
    # Arrange
    caplog.set_level(logging.INFO, logger="volcast.sink")
    broker = FakeBroker()
    pump = make_pump(broker)
    pump.offer([rec(i) for i in range(10)])
    assert wait_until(lambda: pump.stats().delivered == 10)
    # Act: the broker goes away, records keep coming, then it comes back.
    broker.up.clear()
    pump.offer([rec(i) for i in range(10, 20)])
    assert wait_until(lambda: pump.stats().retries >= 3)
    assert not pump.stats().up
    broker.up.set()
    assert wait_until(lambda: pump.stats().delivered == 20)
    stats = pump.close()
    # Assert: every record once, in order; the outage is a few lines, not one per retry.
    assert broker.accepted == [rec(i)["id"] for i in range(20)]
    assert stats.retries >= 3 and stats.dropped == 0 and stats.up
    lines = [r.getMessage() for r in caplog.records if r.name == "volcast.sink"]
    assert sum("retrying with back-off" in m for m in lines) == 1
    assert sum("delivery resumed after" in m for m in lines) == 1
    assert "delivered 20, retried" in lines[-1]


def test_an_unreachable_broker_at_start_is_one_warning_and_records_wait(caplog):
    caplog.set_level(logging.INFO, logger="volcast.sink")
    broker = FakeBroker()
    broker.up.clear()
    pump = make_pump(broker)
    pump.offer([rec(i) for i in range(5)])
    assert wait_until(lambda: pump.stats().retries >= 2)
    assert pump.stats().buffer_depth == 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "connection refused" in warnings[0].getMessage()
    assert "fake://127.0.0.1:1" in warnings[0].getMessage()
    broker.up.set()
    assert pump.close().delivered == 5


def test_close_gives_up_after_drain_s_and_counts_the_rest_as_dropped():
    broker = FakeBroker()
    broker.up.clear()
    pump = make_pump(broker, drain_s=0.3)
    pump.offer([rec(i) for i in range(30)])
    t0 = time.monotonic()
    stats = pump.close()
    assert time.monotonic() - t0 < 3
    assert stats.delivered == 0 and stats.dropped == 30 and stats.buffer_depth == 0


def test_a_refused_batch_is_dropped_and_later_ones_go_through():
    broker = FakeBroker()
    broker.refuse_ids = {rec(3)["id"]}
    pump = make_pump(broker, batch_size=5)
    pump.offer([rec(i) for i in range(5)])
    assert wait_until(lambda: pump.stats().dropped == 5)
    pump.offer([rec(i) for i in range(5, 10)])
    stats = pump.close()
    assert broker.accepted == [rec(i)["id"] for i in range(5, 10)]
    assert stats.delivered == 5 and stats.dropped == 5 and stats.retries == 0


def test_an_open_failure_reaches_start():
    class CannotBind(FakeBroker):
        async def open(self) -> None:
            raise OSError(98, "address already in use")

    pump = DeliveryPump(CannotBind(), label="x", encode=to_message)
    with pytest.raises(OSError, match="address already in use"):
        pump.start()


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        DeliveryPump(FakeBroker(), label="x", encode=to_message, buffer_size=0)
