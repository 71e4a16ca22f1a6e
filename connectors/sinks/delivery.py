"""The delivery pump: a bounded buffer between the dataflow and a publisher's event loop.

The dataflow calls :meth:`DeliveryPump.offer` from its worker thread; that call never
blocks and never does I/O: it appends to a bounded buffer and, beyond the bound,
drops the *oldest* records and counts them. A background thread runs an asyncio
event loop that takes records from the head of the buffer in batches, encodes them
and hands them to the publisher. A batch leaves the buffer only once the publisher
returned (the broker acknowledged it): delivery is at-least-once, and consumers
dedupe on the record ``id``. While a broker is down the same batch is retried with
capped, jittered exponential back-off; each failed attempt is counted as a retry.

Logging is by state change, so an outage costs a few lines, not one per attempt:
the first failure (a WARNING naming the sink and the reason), the first drop, the
recovery, and a summary when the pump closes.

The counters are plain integers read on scrape (``flows.metrics`` exports them as
``volcast_sink_*``); this module imports no metrics library.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from connectors.io.retry import backoff_delays, classify
from connectors.sinks.message import Message

log = logging.getLogger("volcast.sink")


class PermanentError(Exception):
    """The broker refused a batch for good (not a network failure): it is dropped, not retried."""


class Publisher(Protocol):
    """What the pump drives; every method runs on the pump's event loop."""

    async def open(self) -> None:
        """Local set-up (a listening socket). An exception here fails ``start()``."""

    async def connect(self) -> None:
        """Reach the broker; raise if it cannot be reached (the pump retries)."""

    async def publish(self, messages: list[Message]) -> int:
        """Deliver ``messages`` or raise; return how many the broker reported as duplicates."""

    async def close(self) -> None:
        """Release connections; called once, at the end."""


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """A snapshot of one sink's counters (``volcast_sink_*{sink=label}``)."""

    label: str
    delivered: int = 0  # records the broker acknowledged (duplicates included)
    retries: int = 0  # failed delivery or connect attempts that were retried
    dropped: int = 0  # records given up: buffer overflow, refused, undelivered at close
    duplicates: int = 0  # records the broker reported as already seen (idempotency)
    buffer_depth: int = 0  # records waiting, the in-flight batch included
    up: bool = False  # the last attempt succeeded
    extra: dict[str, float] = field(default_factory=dict)  # publisher-specific gauges and counters


class DeliveryPump:
    """Own a publisher on a background event loop, fed by a bounded, non-blocking buffer.

    ``encode`` turns a record into a :class:`Message` (run on the pump's thread, so
    the dataflow pays nothing for serialization). ``buffer_size`` bounds the records
    waiting; ``batch_size`` bounds one publish call; ``drain_s`` is how long
    :meth:`close` keeps trying to deliver what is still buffered.
    """

    def __init__(
        self,
        publisher: Publisher,
        *,
        label: str,
        encode: Callable[[Any], Message],
        buffer_size: int = 10_000,
        batch_size: int = 256,
        drain_s: float = 5.0,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        publish_timeout_s: float = 60.0,
    ) -> None:
        if buffer_size < 1 or batch_size < 1 or drain_s < 0 or not 0 < retry_initial_s <= retry_max_s:
            raise ValueError(
                f"{label}: need buffer >= 1, batch >= 1, drain_s >= 0 and 0 < retry_initial_s <= retry_max_s"
            )
        self.label = label
        self._publisher = publisher
        self._encode = encode
        self._size = buffer_size
        self._batch = batch_size
        self._drain_s = drain_s
        self._retry = (retry_initial_s, retry_max_s)
        # Publishers time out on their own; these only bound a client that hangs.
        self._connect_timeout = connect_timeout_s
        self._publish_timeout = publish_timeout_s
        self._lock = threading.Lock()
        self._buf: collections.deque[Any] = collections.deque()
        self._inflight = 0
        self._idle = False  # the loop waits for records and must be woken
        self._closing = False
        self._deadline = float("inf")
        self._delivered = self._retries = self._dropped = self._duplicates = 0
        self._up = False
        self._outage_retries = 0  # retries since the last success (for the recovery line)
        self._warned_drop = False
        self._loop = asyncio.new_event_loop()
        self._wake = asyncio.Event()  # used only on the pump's loop (loop-agnostic until first wait)
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"sink-{label}", daemon=True)

    # -- the dataflow's side (worker thread) -------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start the thread and open the publisher; raise what ``open()`` raised."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"sink {self.label}: did not open within {timeout}s")
        if self._open_error is not None:
            raise self._open_error

    def offer(self, records: Sequence[Any]) -> None:
        """Queue records for delivery; never blocks. Beyond the bound the oldest are dropped."""
        if not records:
            return
        with self._lock:
            self._buf.extend(records)
            over = len(self._buf) - self._size
            if over > 0:
                for _ in range(over):
                    self._buf.popleft()
                self._dropped += over
                first_drop = not self._warned_drop
                self._warned_drop = True
            else:
                first_drop = False
            wake, self._idle = self._idle, False
        if first_drop:
            log.warning(
                "sink %s: buffer full (%d records); dropping the oldest until delivery catches up",
                self.label, self._size,
            )
        if wake:
            self._wake_loop()

    def close(self, timeout: float | None = None) -> DeliveryStats:
        """Deliver what is buffered for up to ``timeout`` (default ``drain_s``), then stop."""
        drain = self._drain_s if timeout is None else timeout
        with self._lock:
            self._closing = True
            self._deadline = time.monotonic() + drain
            self._idle = False
        if self._thread.is_alive():
            self._wake_loop()
            self._thread.join(drain + 10.0)
        stats = self.stats()
        log.info(
            "sink %s: delivered %d, retried %d, dropped %d, duplicates %d",
            self.label, stats.delivered, stats.retries, stats.dropped, stats.duplicates,
        )
        return stats

    def stats(self) -> DeliveryStats:
        extra_of = getattr(self._publisher, "extra_stats", None)
        with self._lock:
            return DeliveryStats(
                label=self.label,
                delivered=self._delivered,
                retries=self._retries,
                dropped=self._dropped,
                duplicates=self._duplicates,
                buffer_depth=len(self._buf) + self._inflight,
                up=self._up,
                extra=dict(extra_of()) if extra_of is not None else {},
            )

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is buffered or in flight (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._buf and not self._inflight:
                    return True
            time.sleep(0.002)
        return False

    def _wake_loop(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._set_wake)
        except RuntimeError:  # the loop has already stopped
            pass

    def _set_wake(self) -> None:
        self._wake.set()

    # -- the pump's side (its own thread and event loop) ---------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except Exception:  # a bug in a publisher: say so; the dataflow keeps going
            log.exception("sink %s: delivery thread failed", self.label)
        finally:
            self._ready.set()
            self._loop.close()

    async def _main(self) -> None:
        try:
            await self._publisher.open()
        except BaseException as exc:
            self._open_error = exc
            return
        finally:
            self._ready.set()
        try:
            await self._deliver()
        finally:
            try:
                await asyncio.wait_for(self._publisher.close(), 5.0)
            except Exception as exc:
                log.debug("sink %s: close: %s", self.label, exc)

    async def _deliver(self) -> None:
        delays = self._delays()
        while True:  # reach the broker first, so an unreachable one is reported at start
            try:
                await self._bounded(self._publisher.connect(), self._connect_timeout)
                self._on_success()
                delays = self._delays()
                break
            except Exception as exc:
                if not await self._after_failure(exc, delays):
                    break
        while True:
            batch = self._take()
            if not batch:
                with self._lock:
                    if self._closing:
                        return
                    self._idle = True
                    self._wake.clear()
                await self._wake.wait()
                continue
            messages = self._encode_all(batch)
            while messages:
                try:
                    dups = await self._bounded(self._publisher.publish(messages), self._publish_timeout)
                except PermanentError as exc:
                    log.error("sink %s: %d records refused: %s", self.label, len(messages), exc)
                    self._finish(len(messages), dropped=True)
                    break
                except Exception as exc:
                    if not await self._after_failure(exc, delays):
                        self._finish(len(messages), dropped=True)
                        self._drop_rest()
                        return
                    continue
                self._finish(len(messages), duplicates=dups)
                self._on_success()
                delays = self._delays()
                break
            else:  # nothing in this batch could be encoded (counted as dropped already)
                self._finish(0)

    async def _bounded(self, coro: Any, limit: float) -> Any:
        """Await ``coro`` for at most ``limit`` seconds, or until the close deadline."""
        with self._lock:
            if self._closing:
                limit = min(limit, max(0.01, self._deadline - time.monotonic()))
        return await asyncio.wait_for(coro, limit)

    def _delays(self):
        return backoff_delays(initial=self._retry[0], factor=2.0, cap=self._retry[1], jitter=0.3)

    def _take(self) -> list[Any]:
        with self._lock:
            n = min(self._batch, len(self._buf))
            batch = [self._buf.popleft() for _ in range(n)]
            self._inflight = n
        return batch

    def _encode_all(self, batch: list[Any]) -> list[Message]:
        out = []
        for rec in batch:
            try:
                out.append(self._encode(rec))
            except Exception as exc:  # a record the format cannot carry: drop it, say so
                log.error("sink %s: cannot encode record: %s", self.label, exc)
                with self._lock:
                    self._dropped += 1
                    self._inflight -= 1
        return out

    def _finish(self, n: int, *, dropped: bool = False, duplicates: int = 0) -> None:
        with self._lock:
            self._inflight = 0
            if dropped:
                self._dropped += n
            else:
                self._delivered += n
                self._duplicates += duplicates

    def _drop_rest(self) -> None:
        with self._lock:
            n = len(self._buf)
            self._buf.clear()
            self._dropped += n
        log.warning(
            "sink %s: closing with records undelivered after %.1fs; counted as dropped",
            self.label, self._drain_s,
        )

    def _on_success(self) -> None:
        with self._lock:
            was_down, retries = not self._up, self._outage_retries
            self._up = True
            self._outage_retries = 0
            self._warned_drop = False
        if was_down and retries:
            log.warning("sink %s: delivery resumed after %d retries", self.label, retries)
        elif was_down:
            log.info("sink %s: connected", self.label)

    async def _after_failure(self, exc: Exception, delays) -> bool:
        """Count the failed attempt and sleep before the next; False once closing ran out of time."""
        reason = classify(exc) or f"{type(exc).__name__}: {exc}".rstrip(": ")
        with self._lock:
            first = self._up or self._outage_retries == 0
            self._up = False
            self._retries += 1
            self._outage_retries += 1
            closing, deadline = self._closing, self._deadline
        if first:
            log.warning(
                "sink %s: %s; retrying with back-off, buffering up to %d records",
                self.label, reason, self._size,
            )
        else:
            log.debug("sink %s: still failing: %s", self.label, reason)
        delay = next(delays)
        if closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(delay, remaining))
            return True
        # Sleep, but wake at once when close() is called, to start the drain deadline.
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass
        return True
