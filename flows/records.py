"""The forecast record: the daemon's versioned output shape.

Every record is idempotent: ``id`` is the underlying plus the step's timestamp, so a
consumer that sees a record twice (at-least-once sinks) can drop the duplicate.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

SCHEMA = "volcast.forecast/1"


def record_id(underlying: str, ts_ns: int) -> str:
    return f"{underlying}:{ts_ns}"


def iso(ts_ns: int) -> str:
    """``2024-08-08T23:55:13.000Z`` for a nanosecond UTC timestamp."""
    dt = datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ts_ns // 1_000_000) % 1000:03d}Z"


def human_line(rec: dict[str, Any]) -> str:
    """One terminal line per record, for ``volcast demo`` without ``--json``."""
    parts = []
    for h in rec["rv"]:
        if h["vol"] is None:
            parts.append(f"{h['horizon']:>3} warming")
        else:
            parts.append(f"{h['horizon']:>3} {100 * h['vol']:6.2f}% {h['method']}")
    state = "ok" if rec["inputs_synced"] else "inputs not synced"
    return f"{iso(rec['ts_ns'])} {rec['underlying']:<4} " + " | ".join(parts) + f"  [{state}]"
