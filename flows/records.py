"""The daemon's versioned output records: forecasts, and periodic scores.

Every record is idempotent: ``id`` is the underlying plus the step's timestamp (and
``:score`` for a score record), so a consumer that sees a record twice
(at-least-once sinks) can drop the duplicate. Consumers tell the two apart by
``schema``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.scoring import Score

SCHEMA = "volcast.forecast/1"
SCORE_SCHEMA = "volcast.score/1"


def record_id(underlying: str, ts_ns: int) -> str:
    return f"{underlying}:{ts_ns}"


def score_record(underlying: str, ts_ns: int, scores: Sequence[Score], window_s: float) -> dict[str, Any]:
    """The rolling scores of every method and horizon of ``underlying`` as of ``ts_ns``.

    >>> from model.scoring import Score
    >>> s = Score(method="ewma", horizon="5m", n=3, qlike=0.25, n_band=0, coverage=None,
    ...           scored_total=3, unscorable_total=0)
    >>> rec = score_record("BTC", 60_000_000_000, [s], 86400.0)
    >>> rec["id"], rec["scores"][0]["qlike"], rec["scores"][0]["coverage_q10_q90"]
    ('BTC:60000000000:score', 0.25, None)
    """
    return {
        "schema": SCORE_SCHEMA,
        "id": f"{record_id(underlying, ts_ns)}:score",
        "ts_ns": ts_ns,
        "time": iso(ts_ns),
        "underlying": underlying,
        "window_s": window_s,
        "scores": [
            {
                "method": s.method,
                "horizon": s.horizon,
                "n": s.n,
                "qlike": s.qlike,
                "n_band": s.n_band,
                "coverage_q10_q90": s.coverage,
                "scored_total": s.scored_total,
                "unscorable_total": s.unscorable_total,
            }
            for s in scores
        ],
    }


def iso(ts_ns: int) -> str:
    """``2024-08-08T23:55:13.000Z`` for a nanosecond UTC timestamp."""
    dt = datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ts_ns // 1_000_000) % 1000:03d}Z"


def human_line(rec: dict[str, Any]) -> str:
    """One terminal line per record, for ``volcast demo`` without ``--json``."""
    if rec.get("schema") == SCORE_SCHEMA:
        scored = [
            f"{s['horizon']:>3} {s['method']} qlike {s['qlike']:.3f} n={s['n']}"
            for s in rec["scores"] if s["qlike"] is not None
        ]
        return f"{iso(rec['ts_ns'])} {rec['underlying']:<4} scores: " + (" | ".join(scored) or "none matured yet")
    head = f"{iso(rec['ts_ns'])} {rec['underlying']:<4} "
    surface = _surface_part(rec.get("surface"))
    if rec["source"] is None:  # an option chain without books
        return head + surface
    parts = []
    for h in rec["rv"]:
        if h["vol"] is None:
            parts.append(f"{h['horizon']:>3} warming")
        else:
            parts.append(f"{h['horizon']:>3} {100 * h['vol']:6.2f}% {h['method']}")
    state = "ok" if rec["inputs_synced"] else "inputs not synced"
    return head + " | ".join(parts) + f"  [{state}]" + (f"  {surface}" if surface else "")


def _surface_part(block: dict[str, Any] | None) -> str:
    if block is None:
        return ""
    if block["status"] != "ok":
        return f"surface: {block['status']}"
    tenor = "30d" if "30d" in block["atm"] else next(iter(block["atm"]), None)
    if tenor is None:
        return "surface: no tenor on the grid"
    return (
        f"surface {tenor}: ATM {100 * block['atm'][tenor]:.1f}% RR25 {100 * block['rr25'][tenor]:+.1f} "
        f"BF25 {100 * block['bf25'][tenor]:+.1f} ({block['n_quotes']} quotes, rmse {block['rmse_vol_pts']:.2f} vol pts)"
    )
