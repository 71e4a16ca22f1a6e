"""Bytewax sinks for forecast records: a JSONL file and stdout.

Records are plain dicts shaped by ``flows.dataflow``; each sink writes one line per
record. The JSONL sink is partitioned (it receives the keyed stream, Bytewax strips
the keys); the stdout sink is dynamic and receives bare records.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import msgspec
from bytewax.outputs import DynamicSink, FixedPartitionedSink, StatefulSinkPartition, StatelessSinkPartition

from flows import metrics

_encode = msgspec.json.Encoder().encode


class _JsonlPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, path: Path) -> None:
        self._final = path
        # Written under a .part name and renamed on a clean end, so an interrupted
        # run never leaves a file that looks complete.
        self._part = path.with_name(path.name + ".part")
        self._part.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._part, "wb")

    def write_batch(self, items: list[Any]) -> None:
        self._file.write(b"".join(_encode(rec) + b"\n" for rec in items))
        self._file.flush()

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._part, self._final)


class JsonlSink(FixedPartitionedSink[Any, None]):
    """All records into one JSONL file (a single partition owns the file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)

    def list_parts(self) -> list[str]:
        return ["jsonl"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _JsonlPartition:
        return _JsonlPartition(self._path)


class _StdoutPartition(StatelessSinkPartition[Any]):
    def __init__(self, render: Callable[[dict[str, Any]], str] | None) -> None:
        self._render = render
        self._reader_gone = False

    def write_batch(self, items: list[Any]) -> None:
        if self._reader_gone:
            return
        if self._render is None:
            data = b"".join(_encode(rec) + b"\n" for rec in items)
        else:
            data = "".join(self._render(rec) + "\n" for rec in items).encode()
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            # `volcast demo | head`: the reader left; the other sinks keep going.
            self._reader_gone = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class StdoutSink(DynamicSink[Any]):
    """One line per record on standard output: JSON, or ``render(record)`` (logs go to stderr)."""

    def __init__(self, render: Callable[[dict[str, Any]], str] | None = None) -> None:
        self._render = render

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StdoutPartition:
        return _StdoutPartition(self._render)


class _MetricsPartition(StatelessSinkPartition[Any]):
    def write_batch(self, items: list[Any]) -> None:
        for rec in items:
            und = rec["underlying"]
            metrics.FORECAST_RECORDS.labels(und).inc()
            for h in rec["rv"]:
                if h["vol"] is not None:
                    metrics.FORECAST_VOL.labels(und, h["horizon"], h["method"]).set(h["vol"])


class MetricsSink(DynamicSink[Any]):
    """Forecast values as Prometheus gauges; always part of the flow."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _MetricsPartition:
        return _MetricsPartition()
