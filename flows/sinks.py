"""Bytewax sinks for forecast records: files, stdout, websocket, Redis, NATS, Kafka.

Records are plain dicts shaped by ``flows.dataflow`` (schema: ``flows/schemas``).

* Local sinks write in ``write_batch``: :class:`JsonlSink` (a partitioned sink: one
  partition owns the file; rotating segments, ``.part`` while open) and
  :class:`StdoutSink`.
* Network sinks never do I/O in ``write_batch``: it hands the batch to a
  :class:`~connectors.sinks.delivery.DeliveryPump` (a bounded buffer, returns at
  once), whose background thread and event loop publish, retry and count. A broker
  outage therefore stalls neither the flow nor the other sinks.
  :class:`BrokerSink` is a ``DynamicSink`` (one connection per worker);
  :class:`WsSink` is partitioned with a single partition, so the websocket server
  listens once cluster-wide.

:func:`build_sinks` turns parsed sink URLs (``flows.sink_urls``) into these.
Every sink registers its counters with ``flows.metrics.SINKS``.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from bytewax.outputs import DynamicSink, FixedPartitionedSink, Sink, StatefulSinkPartition, StatelessSinkPartition

from connectors.sinks.delivery import DeliveryPump, DeliveryStats, Publisher
from connectors.sinks.files import FsyncPolicy, RotatingJsonlWriter
from connectors.sinks.message import to_message
from flows import metrics
from flows.errors import SinkStartError
from flows.sink_urls import (
    FileSinkConfig,
    KafkaSinkConfig,
    NatsSinkConfig,
    RedisSinkConfig,
    SinkConfig,
    StdoutSinkConfig,
    WsSinkConfig,
)

log = logging.getLogger("volcast.sink")

_encode = msgspec.json.Encoder().encode


class _Counter:
    """Delivery counters of a local sink (file, stdout): nothing to retry or drop."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.delivered = 0
        self.dropped = 0

    def __call__(self) -> DeliveryStats:
        return DeliveryStats(label=self.label, delivered=self.delivered, dropped=self.dropped, up=True)


# -- JSONL files ----------------------------------------------------------------------


class _JsonlPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, writer: RotatingJsonlWriter, label: str) -> None:
        self._writer = writer
        self._stats = _Counter(label)
        metrics.SINKS.register(label, self._stats)

    def write_batch(self, items: list[Any]) -> None:
        self._writer.write_lines([_encode(rec) + b"\n" for rec in items])
        self._stats.delivered += len(items)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._writer.close()
        log.info("sink %s: wrote %d records", self._stats.label, self._stats.delivered)


class JsonlSink(FixedPartitionedSink[Any, None]):
    """All records into one JSONL file, or rotating segments (one partition owns them).

    The file is written as ``<name>.part`` and renamed when complete (rotated or
    closed on a clean stop), so an interrupted run never leaves a file that looks
    complete. See :class:`connectors.sinks.files.RotatingJsonlWriter`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rotate_bytes: int | None = None,
        rotate_s: float | None = None,
        fsync: FsyncPolicy = "rotate",
        fsync_s: float = 1.0,
    ) -> None:
        self._path = Path(path)
        self._opts: dict[str, Any] = {
            "rotate_bytes": rotate_bytes, "rotate_s": rotate_s, "fsync": fsync, "fsync_s": fsync_s,
        }
        self.label = f"file://{self._path}"

    def list_parts(self) -> list[str]:
        return ["jsonl"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _JsonlPartition:
        return _JsonlPartition(RotatingJsonlWriter(self._path, **self._opts), self.label)


# -- stdout ---------------------------------------------------------------------------


class _StdoutPartition(StatelessSinkPartition[Any]):
    def __init__(self, render: Callable[[dict[str, Any]], str] | None) -> None:
        self._render = render
        self._reader_gone = False
        self._stats = _Counter("stdout")
        metrics.SINKS.register("stdout", self._stats)

    def write_batch(self, items: list[Any]) -> None:
        if self._reader_gone:
            self._stats.dropped += len(items)
            return
        if self._render is None:
            data = b"".join(_encode(rec) + b"\n" for rec in items)
        else:
            data = "".join(self._render(rec) + "\n" for rec in items).encode()
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            self._stats.delivered += len(items)
        except BrokenPipeError:
            # `volcast demo | head`: the reader left; the other sinks keep going.
            self._reader_gone = True
            self._stats.dropped += len(items)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class StdoutSink(DynamicSink[Any]):
    """One line per record on standard output: JSON, or ``render(record)`` (logs go to stderr)."""

    def __init__(self, render: Callable[[dict[str, Any]], str] | None = None) -> None:
        self._render = render

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StdoutPartition:
        return _StdoutPartition(self._render)


# -- Prometheus gauges ------------------------------------------------------------------


class _MetricsPartition(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        for rec in items:
            metrics.count_record(rec)


class MetricsSink(DynamicSink[Any]):
    """Counts the records that reach the sinks, by schema (the forecast gauges are set upstream)."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MetricsPartition:
        return _MetricsPartition()


# -- network sinks: a delivery pump per partition -------------------------------------------


class PumpOptions(msgspec.Struct, frozen=True, kw_only=True):
    format: str = "json"
    buffer: int = 10_000
    batch: int = 256
    drain_s: float = 5.0
    retry_max_s: float = 5.0

    @classmethod
    def of(cls, cfg: Any) -> PumpOptions:
        return cls(format=cfg.format, buffer=cfg.buffer, batch=cfg.batch, drain_s=cfg.drain_s,
                   retry_max_s=cfg.retry_max_s)


def start_pump(label: str, publisher: Publisher, opts: PumpOptions) -> DeliveryPump:
    """A started pump for ``publisher``, registered with the metrics."""
    fmt = opts.format
    pump = DeliveryPump(
        publisher,
        label=label,
        encode=lambda rec: to_message(rec, fmt),  # type: ignore[arg-type]
        buffer_size=opts.buffer,
        batch_size=opts.batch,
        drain_s=opts.drain_s,
        retry_max_s=max(opts.retry_max_s, 0.1),
    )
    pump.start()
    metrics.SINKS.register(label, pump.stats)
    return pump


class _PumpPartition(StatelessSinkPartition[Any]):
    def __init__(self, pump: DeliveryPump) -> None:
        self.pump = pump

    def write_batch(self, items: list[Any]) -> None:
        self.pump.offer(items)  # never blocks: a bounded buffer, drained by the pump's thread

    def close(self) -> None:
        self.pump.close()


class BrokerSink(DynamicSink[Any]):
    """A network sink: each worker gets its own publisher on a background event loop."""

    def __init__(self, label: str, make_publisher: Callable[[], Publisher], opts: PumpOptions) -> None:
        self.label = label
        self._make = make_publisher
        self._opts = opts

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _PumpPartition:
        return _PumpPartition(start_pump(self.label, self._make(), self._opts))


class _WsPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, pump: DeliveryPump) -> None:
        self.pump = pump

    def write_batch(self, items: list[Any]) -> None:
        self.pump.offer(items)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.pump.close()


class WsSink(FixedPartitionedSink[Any, None]):
    """The websocket server: one partition, so it listens once cluster-wide."""

    def __init__(self, cfg: WsSinkConfig) -> None:
        self.cfg = cfg
        self.label = cfg.label
        self.server: Any = None  # the WsServer, once built (tests read its port)

    def list_parts(self) -> list[str]:
        return ["ws"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _WsPartition:
        from connectors.sinks.wsserver import WsServer

        c = self.cfg
        self.server = WsServer(c.host, c.port, token=c.bearer_token(), client_queue=c.queue,
                               history=c.history, format=c.format)  # type: ignore[arg-type]
        return _WsPartition(start_pump(self.label, self.server, PumpOptions.of(c)))


def redis_sink(cfg: RedisSinkConfig) -> BrokerSink:
    from connectors.sinks.redis import RedisPublisher

    def make() -> Publisher:
        return RedisPublisher(cfg.host, cfg.port, cfg.db, username=cfg.username, password=cfg.password,
                              prefix=cfg.prefix, maxlen=cfg.maxlen, timeout_s=cfg.timeout_s)

    return BrokerSink(cfg.label, make, PumpOptions.of(cfg))


def nats_sink(cfg: NatsSinkConfig) -> BrokerSink:
    from connectors.sinks.nats import NatsPublisher

    def make() -> Publisher:
        return NatsPublisher(cfg.host, cfg.port, user=cfg.user, password=cfg.password, stream=cfg.stream,
                             prefix=cfg.prefix, maxlen=cfg.maxlen, duplicate_window_s=cfg.dupe_window_s,
                             timeout_s=cfg.timeout_s)

    return BrokerSink(cfg.label, make, PumpOptions.of(cfg))


def _check_bindable(cfg: WsSinkConfig) -> None:
    """Fail at start with one clear line if the websocket sink cannot listen."""
    if cfg.port == 0:
        return
    try:
        infos = socket.getaddrinfo(cfg.host, cfg.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SinkStartError(f"{cfg.label}: cannot resolve {cfg.host}: {exc}") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
            raise SinkStartError(f"{cfg.label}: cannot listen on {cfg.host}:{cfg.port}: {why}") from None


def build_sinks(
    configs: Sequence[SinkConfig], *, render: Callable[[dict[str, Any]], str] | None = None
) -> list[Sink]:
    """Bytewax sinks for parsed sink URLs; ``render`` formats ``stdout`` lines (None: JSON).

    Checks what can be checked before the flow starts (a websocket port in use, the
    Kafka extra missing) and raises :class:`flows.errors.SinkStartError`; a broker that
    cannot be reached is not an error: its sink logs a warning and keeps retrying.
    """
    sinks: list[Sink] = []
    for cfg in configs:
        if isinstance(cfg, FileSinkConfig):
            sinks.append(JsonlSink(cfg.path, rotate_bytes=cfg.rotate_bytes, rotate_s=cfg.rotate_s,
                                   fsync=cfg.fsync, fsync_s=cfg.fsync_s))
        elif isinstance(cfg, StdoutSinkConfig):
            sinks.append(StdoutSink(render=render))
        elif isinstance(cfg, WsSinkConfig):
            _check_bindable(cfg)
            sinks.append(WsSink(cfg))
        elif isinstance(cfg, RedisSinkConfig):
            sinks.append(redis_sink(cfg))
        elif isinstance(cfg, NatsSinkConfig):
            sinks.append(nats_sink(cfg))
        elif isinstance(cfg, KafkaSinkConfig):
            try:
                from flows.kafka_sink import kafka_sink
            except ImportError as exc:
                raise SinkStartError(
                    f"{cfg.label}: Kafka sinks need the kafka extra (pip install 'volcast[kafka]'): {exc}"
                ) from None
            sinks.append(kafka_sink(cfg))
        else:  # pragma: no cover - parse_sink_url returns only the types above
            raise TypeError(f"not a sink configuration: {cfg!r}")
    return sinks

