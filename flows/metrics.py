"""Prometheus metrics of the daemon (the catalog is documented in README.md).

Feed and book counters are read from the connector cores' own stats when Prometheus
scrapes (:class:`FeedCollector`), so the hot path pays nothing for them. Label sets
are bounded: feed names, instrument ids, underlyings, horizons, methods and states
come from the configuration, never from data (no prices, ids or times).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from connectors.venues.base import VenueProtocol

# *_created series would double every counter for no reader we have.
disable_created_metrics()

BOOK_STATES = ("disconnected", "buffering", "synced", "resyncing", "error")

QUEUE_DEPTH = Gauge(
    "volcast_source_queue_depth", "Events waiting between a feed's socket thread and Bytewax.", ["feed"]
)
QUEUE_DROPS = Counter(
    "volcast_source_dropped_total", "Events dropped because a feed's queue was full.", ["feed"]
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
    "From receiving the frame that closed a cadence step to emitting its forecast record.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


class FeedCollector:
    """Exports every registered connector core's counters and book states on scrape."""

    def __init__(self) -> None:
        self._feeds: dict[str, VenueProtocol] = {}
        self._lock = threading.Lock()

    def register(self, feed: str, protocol: VenueProtocol) -> None:
        with self._lock:
            self._feeds[feed] = protocol

    def protocols(self) -> dict[str, VenueProtocol]:
        with self._lock:
            return dict(self._feeds)

    def collect(self) -> Iterator[Metric]:
        msgs = CounterMetricFamily("volcast_feed_messages", "Websocket frames received.", labels=["feed"])
        conns = CounterMetricFamily("volcast_feed_connections", "Websocket connections opened.", labels=["feed"])
        bad = CounterMetricFamily("volcast_feed_malformed", "Frames or REST bodies that did not decode.", labels=["feed"])
        events = CounterMetricFamily("volcast_feed_events", "Normalized events emitted.", labels=["instrument", "kind"])
        gaps = CounterMetricFamily("volcast_book_gaps", "Sequence gaps detected.", labels=["instrument"])
        resyncs = CounterMetricFamily("volcast_book_resyncs", "Times a book was dropped and re-bridged.", labels=["instrument"])
        crossed = CounterMetricFamily("volcast_book_crossed", "Books found crossed after a diff.", labels=["instrument"])
        state = GaugeMetricFamily("volcast_book_state", "1 for the book's current state.", labels=["instrument", "state"])
        levels = GaugeMetricFamily("volcast_book_levels", "Price levels held in the book.", labels=["instrument"])
        for feed, proto in self.protocols().items():
            stats = proto.stats()
            msgs.add_metric([feed], stats.frames)
            conns.add_metric([feed], stats.connections)
            bad.add_metric([feed], stats.malformed)
            for sym, inst in stats.instruments.items():
                iid = f"{stats.venue}:{sym}"
                for kind, n in inst.events.items():
                    events.add_metric([iid, kind], n)
                gaps.add_metric([iid], inst.gaps)
                resyncs.add_metric([iid], inst.resyncs)
                crossed.add_metric([iid], inst.crossed)
                levels.add_metric([iid], inst.levels)
                for s in BOOK_STATES:
                    state.add_metric([iid, s], 1.0 if inst.state == s else 0.0)
        yield from (msgs, conns, bad, events, gaps, resyncs, crossed, state, levels)


FEEDS = FeedCollector()
REGISTRY.register(FEEDS)


def serve(host: str, port: int) -> int:
    """Start the /metrics endpoint; port 0 picks a free port, which is returned."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_port
