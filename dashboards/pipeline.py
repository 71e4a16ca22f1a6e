"""The "Pipeline health" dashboard: feeds, books, latency and compute time.

Every query is filtered by the ``job`` variable (all volcast jobs by default), so
``process_*`` series of other exporters on the same Prometheus stay out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard

from dashboards.common import (
    Panels,
    bars,
    datasource_variable,
    label_variable,
    new_dashboard,
    query,
    stat_panel,
    thresholds,
    timeline,
    ts,
    with_sections,
)

UID = "volcast-pipeline"
J = 'job=~"$job"'
RATE = "$__rate_interval"


def _feeds(ids: Panels) -> list[Any]:
    return [
        ts(
            ids,
            "Messages per second by feed",
            "Websocket frames received per second (one feed = one websocket connection group).",
            "cps",
            [query(f"sum by (feed) (rate(volcast_feed_messages_total{{{J}}}[{RATE}]))", "{{feed}}")],
            w=8,
            min_val=0,
        ),
        ts(
            ids,
            "Bytes received per second by feed",
            "Payload bytes of websocket frames and REST bodies (book snapshots).",
            "Bps",
            [
                query(
                    f"sum by (feed, transport) (rate(volcast_feed_received_bytes_total{{{J}}}[{RATE}]))",
                    "{{feed}} {{transport}}",
                )
            ],
            w=8,
            min_val=0,
        ),
        stat_panel(
            ids,
            "Seconds since last message",
            "Per feed; the VolcastFeedStale alert fires above 30 s for a minute.",
            "s",
            [query(f"volcast_feed_last_message_age_seconds{{{J}}}", "{{feed}}", instant=True)],
            thresholds((None, "green"), (5, "orange"), (30, "red")),
            w=8,
            h=8,
        ),
        ts(
            ids,
            "Reconnects, gaps and resyncs (last hour)",
            "Websocket reconnects per feed; sequence gaps and book resyncs per instrument.",
            "short",
            [
                query(f"sum by (feed) (increase(volcast_feed_reconnects_total{{{J}}}[1h]))", "reconnects {{feed}}"),
                query(f"sum by (instrument) (increase(volcast_book_gaps_total{{{J}}}[1h]))", "gaps {{instrument}}"),
                query(
                    f"sum by (instrument) (increase(volcast_book_resyncs_total{{{J}}}[1h]))", "resyncs {{instrument}}"
                ),
            ],
            w=12,
            min_val=0,
        ),
        ts(
            ids,
            "Integrity failures (last hour)",
            "Crossed books and checksum mismatches per instrument; frames that did not decode and caught "
            "internal errors per feed. All should stay at 0.",
            "short",
            [
                query(
                    f"sum by (instrument) (increase(volcast_book_crossed_total{{{J}}}[1h]))", "crossed {{instrument}}"
                ),
                query(
                    f"sum by (instrument) (increase(volcast_book_checksum_failures_total{{{J}}}[1h]))",
                    "checksum {{instrument}}",
                ),
                query(f"sum by (feed) (increase(volcast_feed_malformed_total{{{J}}}[1h]))", "malformed {{feed}}"),
                query(
                    f"sum by (feed) (increase(volcast_feed_internal_errors_total{{{J}}}[1h]))", "internal {{feed}}"
                ),
            ],
            w=12,
            min_val=0,
        ),
        ts(
            ids,
            "Source queue fill",
            "Events waiting between each feed's socket thread and Bytewax, as a share of the queue size.",
            "percentunit",
            [
                query(
                    f"volcast_source_queue_depth{{{J}}} / on(job, instance, feed) volcast_source_queue_capacity{{{J}}}",
                    "{{feed}}",
                )
            ],
            w=12,
            min_val=0,
        ),
        ts(
            ids,
            "Dropped events per second",
            "Events dropped by a full queue (queue_policy drop_oldest) and diffs dropped while a book "
            "buffered for its snapshot.",
            "cps",
            [
                query(f"sum by (feed) (rate(volcast_source_dropped_total{{{J}}}[{RATE}]))", "queue {{feed}}"),
                query(
                    f"sum by (instrument) (rate(volcast_book_buffer_dropped_total{{{J}}}[{RATE}]))",
                    "book buffer {{instrument}}",
                ),
            ],
            w=12,
            min_val=0,
        ),
    ]


def _books(ids: Panels) -> list[Any]:
    return [
        timeline(
            ids,
            "Book synced",
            "1 (green) while the instrument's book is SYNCED; features come only from synced books.",
            [query(f'max by (instrument) (volcast_book_state{{{J}, state="synced"}})', "{{instrument}}")],
            thresholds((None, "red"), (1, "green")),
            w=12,
        ),
        bars(
            ids,
            "Book levels held",
            "Price levels in each validated book (both sides).",
            "short",
            [query(f"max by (instrument) (volcast_book_levels{{{J}}})", "{{instrument}}", instant=True)],
            w=12,
        ),
    ]


def _latency(ids: Panels) -> list[Any]:
    hist = f"sum by (le) (rate(volcast_frame_to_forecast_seconds_bucket{{{J}}}[{RATE}]))"
    model = f"sum by (le, method) (rate(volcast_forecaster_step_duration_seconds_bucket{{{J}}}[{RATE}]))"
    return [
        ts(
            ids,
            "Frame received to forecast emitted",
            "Latency percentiles from receiving the frame that closed a cadence step to emitting its record.",
            "s",
            [query(f"histogram_quantile({q}, {hist})", f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99)],
            w=12,
            min_val=0,
        ),
        ts(
            ids,
            "Model time per step, by method",
            "Time each forecaster spends per step (observe, then forecast every horizon): p50 and p99.",
            "s",
            [
                query(f"histogram_quantile(0.5, {model})", "{{method}} p50"),
                query(f"histogram_quantile(0.99, {model})", "{{method}} p99"),
            ],
            w=12,
            min_val=0,
        ),
        ts(
            ids,
            "Records per second",
            "Forecast records and score records reaching the sinks, per underlying.",
            "cps",
            [
                query(
                    f"sum by (underlying) (rate(volcast_forecast_records_total{{{J}}}[{RATE}]))",
                    "forecast {{underlying}}",
                ),
                query(
                    f"sum by (underlying) (rate(volcast_score_records_total{{{J}}}[{RATE}]))", "score {{underlying}}"
                ),
            ],
            w=8,
            min_val=0,
        ),
        ts(
            ids,
            "Process CPU",
            "CPU seconds per second of each volcast process.",
            "percentunit",
            [query(f"rate(process_cpu_seconds_total{{{J}}}[{RATE}])", "{{instance}}")],
            w=8,
            min_val=0,
        ),
        ts(
            ids,
            "Process memory",
            "Resident memory of each volcast process.",
            "bytes",
            [query(f"process_resident_memory_bytes{{{J}}}", "{{instance}}")],
            w=8,
            min_val=0,
        ),
    ]


# (title, why it is not shipped yet, panel factory)
PENDING: list[tuple[str, str, Callable[[Panels], Any]]] = [
    (
        "Model batch latency",
        "the attention model needs 4 h of 1-minute bars before its first window; the bundled recordings "
        "are minutes long, so the demo never runs a batch",
        lambda ids: ts(
            ids,
            "Model batch latency",
            "p50 and p99 of one batched inference per model, and its batch size.",
            "s",
            [
                query(
                    "histogram_quantile(0.99, sum by (le, model) "
                    f"(rate(volcast_model_batch_duration_seconds_bucket{{{J}}}[{RATE}])))",
                    "{{model}} p99",
                ),
                query(
                    "histogram_quantile(0.5, sum by (le, model) "
                    f"(rate(volcast_model_batch_size_bucket{{{J}}}[{RATE}])))",
                    "{{model}} median batch size",
                ),
            ],
        ),
    ),
    (
        "Surface fit time",
        "the demo's chain refits only during its first 16 s (161 s of chain at 10x); a rate over the last "
        "minute is empty by the time the demo ends",
        lambda ids: ts(
            ids,
            "Surface fit time",
            "p99 of one underlying's surface fit.",
            "s",
            [
                query(
                    "histogram_quantile(0.99, sum by (le, underlying) "
                    f"(rate(volcast_surface_fit_duration_seconds_bucket{{{J}}}[{RATE}])))",
                    "{{underlying}} p99",
                )
            ],
        ),
    ),
]


def build(include_pending: bool = False) -> Dashboard:
    ids = Panels()
    dash = (
        new_dashboard(
            UID,
            "volcast: Pipeline health",
            "Feeds, books, latency and compute time of the volcast daemon. Generated by "
            "`python -m dashboards`; edit dashboards/pipeline.py, not this JSON.",
        )
        .with_variable(datasource_variable())
        .with_variable(label_variable("job", "Job", "volcast_feed_messages_total", include_all=True))
    )
    sections = [("Feeds", _feeds), ("Books", _books), ("Latency and compute", _latency)]
    return with_sections(dash, ids, sections, PENDING, include_pending)
