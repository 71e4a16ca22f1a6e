"""Prometheus metrics of the daemon (the catalog is documented in README.md).

Label sets are bounded: feed names, instrument ids, underlyings, horizons, methods
and states come from the configuration, never from data (no prices, ids or times).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from connectors.events import FeedState

FEED_MESSAGES = Counter(
    "volcast_feed_messages_total", "Websocket frames received per feed.", ["feed"]
)
FEED_EVENTS = Counter(
    "volcast_feed_events_total", "Normalized events produced per feed and kind.", ["feed", "kind"]
)
FEED_RECONNECTS = Counter(
    "volcast_feed_reconnects_total", "Websocket connections opened after the first.", ["feed"]
)
FEED_MALFORMED = Counter(
    "volcast_feed_malformed_total", "Frames that could not be decoded and were skipped.", ["feed"]
)
QUEUE_DEPTH = Gauge(
    "volcast_source_queue_depth", "Events waiting between a feed's socket thread and Bytewax.", ["feed"]
)
QUEUE_DROPS = Counter(
    "volcast_source_dropped_total", "Events dropped because a feed's queue was full.", ["feed"]
)
BOOK_STATE = Gauge(
    "volcast_book_state", "1 for the current state of each instrument's book, else 0.", ["instrument", "state"]
)
BOOK_GAPS = Counter("volcast_book_gaps_total", "Sequence gaps detected per book.", ["instrument"])
BOOK_RESYNCS = Counter(
    "volcast_book_resyncs_total", "Times a book left SYNCED and had to resync.", ["instrument"]
)
FORECAST_VOL = Gauge(
    "volcast_forecast_vol",
    "Latest realized-volatility forecast, annualized decimal.",
    ["underlying", "horizon", "method"],
)
FORECAST_RECORDS = Counter(
    "volcast_forecast_records_total", "Forecast records emitted.", ["underlying"]
)
LATENCY = Histogram(
    "volcast_frame_to_forecast_seconds",
    "From receiving the last frame of a cadence step to emitting its forecast record.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

_BOOK_STATES: tuple[FeedState, ...] = (
    "buffering", "synced", "gap", "crossed", "resyncing", "stale", "disconnected", "error",
)


def set_book_state(instrument: str, state: str) -> None:
    """Make exactly one state series of ``instrument`` read 1."""
    for s in _BOOK_STATES:
        BOOK_STATE.labels(instrument, s).set(1.0 if s == state else 0.0)


def serve(host: str, port: int) -> int:
    """Start the /metrics endpoint; port 0 picks a free port, which is returned."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_port
