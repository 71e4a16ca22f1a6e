"""Prometheus metrics of the daemon; the catalog, with units and labels, is docs/metrics.md.

Feed and book counters are read from the connector cores' own stats when Prometheus
scrapes (:class:`FeedCollector`), so the hot path pays nothing for them. Label sets
are bounded: feed names, instrument ids, underlyings, horizons, tenors, deltas,
methods, states and quantile levels come from the configuration or the code, never
from data (no prices, order ids, expiries or times).

Names follow the Prometheus conventions: the ``volcast_`` prefix, base units in the
name (``_seconds``, ``_bytes``; vols and IVs are annualized decimal fractions, a
unit-less ratio, named ``_vol``/``_iv``), ``_total`` on counters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from connectors.venues.base import VenueProtocol
from flows.records import SCHEMA, SCORE_SCHEMA

if TYPE_CHECKING:
    from connectors.record.frames import Frame
    from model.forecaster import HorizonForecast
    from model.scoring import Score

# *_created series would double every counter for no reader we have.
disable_created_metrics()

BOOK_STATES = ("disconnected", "buffering", "synced", "resyncing", "error")
QUANTILES = (("0.1", "q10"), ("0.5", "q50"), ("0.9", "q90"))
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# --- feeds (the source side; the rest of the feed metrics come from FeedCollector) ---
QUEUE_DEPTH = Gauge(
    "volcast_source_queue_depth", "Events waiting between a feed's socket thread and Bytewax.", ["feed"]
)
QUEUE_CAPACITY = Gauge(
    "volcast_source_queue_capacity", "Size of a feed's queue between its socket thread and Bytewax.", ["feed"]
)
QUEUE_DROPS = Counter(
    "volcast_source_dropped_total", "Events dropped because a feed's queue was full.", ["feed"]
)

# --- forecasts of realized volatility, realized volatility, online scores ---
FORECAST_VOL = Gauge(
    "volcast_forecast_vol",
    "Latest realized-volatility forecast of each method over the next horizon, annualized decimal.",
    ["underlying", "horizon", "method"],
)
FORECAST_VOL_QUANTILE = Gauge(
    "volcast_forecast_vol_quantile",
    "Quantile of the realized volatility over the next horizon from each method's residuals, annualized decimal.",
    ["underlying", "horizon", "method", "quantile"],
)
REALIZED_VOL = Gauge(
    "volcast_realized_vol",
    "Volatility realized over the trailing horizon (squared 1-step mid log returns), annualized decimal.",
    ["underlying", "horizon"],
)
FORECAST_QLIKE = Gauge(
    "volcast_forecast_qlike",
    "Mean QLIKE loss of a method's matured forecasts over the rolling score window (lower is better).",
    ["underlying", "horizon", "method"],
)
FORECAST_COVERAGE = Gauge(
    "volcast_forecast_coverage_q10_q90",
    "Share of matured forecasts whose realized volatility fell inside their q10-q90 band (0.8 is calibrated).",
    ["underlying", "horizon", "method"],
)
FORECAST_SCORE_SAMPLES = Gauge(
    "volcast_forecast_score_samples",
    "Matured forecasts in the rolling score window behind volcast_forecast_qlike.",
    ["underlying", "horizon", "method"],
)
FORECAST_SCORED = Counter(
    "volcast_forecast_scored_total",
    "Forecasts scored against realized volatility once their horizon elapsed.",
    ["underlying", "horizon", "method"],
)
FORECAST_UNSCORABLE = Counter(
    "volcast_forecast_unscorable_total",
    "Matured forecasts not scored: too few observed steps in their window, or no variance.",
    ["underlying", "horizon", "method"],
)
FORECAST_RECORDS = Counter(
    "volcast_forecast_records_total", "Forecast records (volcast.forecast/1) emitted.", ["underlying"]
)
SCORE_RECORDS = Counter(
    "volcast_score_records_total", "Score records (volcast.score/1) emitted.", ["underlying"]
)

# --- latency and compute time ---
LATENCY = Histogram(
    "volcast_frame_to_forecast_seconds",
    "From receiving the frame that closed a cadence step to emitting its forecast record.",
    buckets=_LATENCY_BUCKETS,
)
FORECASTER_DURATION = Histogram(
    "volcast_forecaster_step_duration_seconds",
    "Time one forecaster spends per step (observe the row, then forecast every horizon).",
    ["method"],
    buckets=(0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
)
# Defined for the attention model and the surface; they have samples once those land.
MODEL_BATCH_DURATION = Histogram(
    "volcast_model_batch_duration_seconds",
    "Time of one batched model inference (padding, jit call, results back on the host).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
MODEL_BATCH_SIZE = Histogram(
    "volcast_model_batch_size",
    "Windows in one batched model inference, before padding to a bucket size.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
MODEL_RELOADS = Counter(
    "volcast_model_reloads_total",
    "Checkpoint file changes handled: outcome reloaded (now serving) or rejected (the old one keeps serving).",
    ["model", "outcome"],
)
MODEL_LOADED = Gauge(
    "volcast_model_loaded_timestamp_seconds",
    "When the serving checkpoint was loaded and warmed up, Unix seconds.",
    ["model"],
)
SURFACE_FIT_DURATION = Histogram(
    "volcast_surface_fit_duration_seconds",
    "Time to fit one underlying's arbitrage-free SVI surface (every expiry).",
    ["underlying"],
    buckets=_LATENCY_BUCKETS,
)
SURFACE_IV = Gauge(
    "volcast_surface_iv",
    "Implied volatility of the fitted surface on the tenor x delta grid, annualized decimal.",
    ["underlying", "tenor", "delta"],
)
SURFACE_ATM_IV = Gauge(
    "volcast_surface_atm_iv", "At-the-money implied volatility per tenor, annualized decimal.", ["underlying", "tenor"]
)
SURFACE_RR25 = Gauge(
    "volcast_surface_rr25", "25-delta risk reversal (call IV - put IV) per tenor, decimal.", ["underlying", "tenor"]
)
SURFACE_BF25 = Gauge(
    "volcast_surface_bf25",
    "25-delta butterfly ((call IV + put IV) / 2 - ATM IV) per tenor, decimal.",
    ["underlying", "tenor"],
)
SURFACE_FIT_RMSE = Gauge(
    "volcast_surface_fit_rmse_iv",
    "Root-mean-square error of the fitted surface against the quoted mark IVs, decimal IV.",
    ["underlying"],
)
FORECAST_ATM_IV = Gauge(
    "volcast_forecast_atm_iv",
    "Forecast of ATM implied volatility per tenor at the horizon, annualized decimal.",
    ["underlying", "tenor", "horizon", "method"],
)
FORECAST_RR25 = Gauge(
    "volcast_forecast_rr25", "Forecast of the 25-delta risk reversal per tenor at the horizon, decimal.",
    ["underlying", "tenor", "horizon", "method"],
)
FORECAST_BF25 = Gauge(
    "volcast_forecast_bf25", "Forecast of the 25-delta butterfly per tenor at the horizon, decimal.",
    ["underlying", "tenor", "horizon", "method"],
)


_SURFACE_SERIES = {
    "iv": SURFACE_IV, "atm": SURFACE_ATM_IV, "rr25": SURFACE_RR25, "bf25": SURFACE_BF25, "rmse": SURFACE_FIT_RMSE,
    "forecast_atm": FORECAST_ATM_IV, "forecast_rr25": FORECAST_RR25, "forecast_bf25": FORECAST_BF25,
}


class FrameTracker:
    """Bytes received and the last message time of one feed, fed by its socket thread.

    ``on_frame`` is the shell's raw-frame hook (``connectors.io.ws.run_session``);
    plain int attributes, so the scrape thread reads them without a lock.
    """

    def __init__(self) -> None:
        self.started_ns = time.time_ns()
        self.last_recv_ns: int | None = None
        self.ws_bytes = 0
        self.rest_bytes = 0

    def on_frame(self, frame: Frame) -> None:
        if frame.kind == "recv":
            self.ws_bytes += len(frame.payload)
            self.last_recv_ns = frame.ts_recv_ns
        elif frame.kind == "rest":
            self.rest_bytes += len(frame.payload)


# Families FeedCollector builds at scrape time: name (without _total), type, help, labels.
FEED_FAMILIES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("volcast_feed_messages", "counter", "Websocket frames received.", ("feed",)),
    ("volcast_feed_received_bytes", "counter", "Payload bytes received, websocket frames and REST bodies.",
     ("feed", "transport")),
    ("volcast_feed_connections", "counter", "Websocket connections opened.", ("feed",)),
    ("volcast_feed_reconnects", "counter", "Websocket connections opened after the first.", ("feed",)),
    ("volcast_feed_malformed", "counter", "Frames or REST bodies that did not decode.", ("feed",)),
    ("volcast_feed_internal_errors", "counter", "Bugs caught so that one bad frame cannot stop a feed.", ("feed",)),
    ("volcast_feed_rest_responses", "counter", "REST responses (book snapshots) by outcome.", ("feed", "outcome")),
    ("volcast_feed_last_message_timestamp_seconds", "gauge", "Unix time the last websocket frame was received.",
     ("feed",)),
    ("volcast_feed_last_message_age_seconds", "gauge",
     "Seconds since the last websocket frame (since the feed started, if none yet).", ("feed",)),
    ("volcast_feed_events", "counter", "Normalized events emitted.", ("instrument", "kind")),
    ("volcast_book_gaps", "counter", "Sequence gaps detected.", ("instrument",)),
    ("volcast_book_resyncs", "counter", "Times a book was dropped and re-bridged.", ("instrument",)),
    ("volcast_book_syncs", "counter", "Times a book reached SYNCED.", ("instrument",)),
    ("volcast_book_crossed", "counter", "Books found crossed after a diff.", ("instrument",)),
    ("volcast_book_checksum_failures", "counter", "Book checksum mismatches (venues that send checksums).",
     ("instrument",)),
    ("volcast_book_buffer_dropped", "counter", "Diffs dropped while buffering for a snapshot (buffer full).",
     ("instrument",)),
    ("volcast_book_state", "gauge", "1 for the book's current state.", ("instrument", "state")),
    ("volcast_book_levels", "gauge", "Price levels held in the book.", ("instrument",)),
)


class FeedCollector:
    """Exports every registered connector core's counters and book states on scrape."""

    def __init__(self) -> None:
        self._feeds: dict[str, tuple[VenueProtocol, FrameTracker | None, frozenset[str] | None]] = {}
        self._lock = threading.Lock()

    def register(
        self, feed: str, protocol: VenueProtocol, tracker: FrameTracker | None = None,
        books: frozenset[str] | None = None,
    ) -> None:
        """``books``: the instrument ids that get series of their own (None: every one).

        The others (an option chain's hundreds of tickers, listed by the venue, not the
        config) are summed under ``instrument="<venue>:*"``, so the label stays bounded.
        """
        with self._lock:
            self._feeds[feed] = (protocol, tracker, books)

    def protocols(self) -> dict[str, VenueProtocol]:
        with self._lock:
            return {feed: proto for feed, (proto, _tracker, _books) in self._feeds.items()}

    def collect(self) -> Iterator[Metric]:
        fam: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            name: (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=list(labels))
            for name, kind, doc, labels in FEED_FAMILIES
        }

        def add(name: str, labels: list[str], value: float) -> None:
            fam[name].add_metric(labels, value)

        now_ns = time.time_ns()
        with self._lock:
            feeds = list(self._feeds.items())
        for feed, (proto, tracker, books) in feeds:
            stats = proto.stats()
            add("volcast_feed_messages", [feed], stats.frames)
            add("volcast_feed_connections", [feed], stats.connections)
            add("volcast_feed_reconnects", [feed], max(stats.connections - 1, 0))
            add("volcast_feed_malformed", [feed], stats.malformed)
            add("volcast_feed_internal_errors", [feed], stats.internal_errors)
            add("volcast_feed_rest_responses", [feed, "ok"], stats.rest_ok)
            add("volcast_feed_rest_responses", [feed, "failed"], stats.rest_failed)
            if tracker is not None:
                add("volcast_feed_received_bytes", [feed, "websocket"], tracker.ws_bytes)
                add("volcast_feed_received_bytes", [feed, "rest"], tracker.rest_bytes)
                last = tracker.last_recv_ns
                if last is not None:
                    add("volcast_feed_last_message_timestamp_seconds", [feed], last / 1e9)
                since = tracker.started_ns if last is None else last
                add("volcast_feed_last_message_age_seconds", [feed], max(now_ns - since, 0) / 1e9)
            others: dict[str, int] = {}
            for sym, inst in stats.instruments.items():
                iid = [f"{stats.venue}:{sym}"]
                if books is not None and iid[0] not in books:
                    for kind, n in inst.events.items():
                        others[kind] = others.get(kind, 0) + n
                    continue
                for kind, n in inst.events.items():
                    add("volcast_feed_events", iid + [kind], n)
                add("volcast_book_gaps", iid, inst.gaps)
                add("volcast_book_resyncs", iid, inst.resyncs)
                add("volcast_book_syncs", iid, inst.syncs)
                add("volcast_book_crossed", iid, inst.crossed)
                add("volcast_book_checksum_failures", iid, inst.checksum_failed)
                add("volcast_book_buffer_dropped", iid, inst.buffer_dropped)
                add("volcast_book_levels", iid, inst.levels)
                for s in BOOK_STATES:
                    add("volcast_book_state", iid + [s], 1.0 if inst.state == s else 0.0)
            for kind, n in others.items():
                add("volcast_feed_events", [f"{stats.venue}:*", kind], n)
        yield from fam.values()


FEEDS = FeedCollector()
REGISTRY.register(FEEDS)


class UnderlyingExporter:
    """Exports one underlying's forecasts, realized vols and scores.

    Lives in the underlying's keyed state, so it holds only plain data (Bytewax
    pickles state): the label sets it has set, to remove a series when its value
    goes away (a method back to warming up must not leave its last number behind),
    and the scorer's totals already added to the counters.
    """

    def __init__(self, underlying: str) -> None:
        self.underlying = underlying
        self._vol: set[tuple[str, str]] = set()  # (horizon, method)
        self._quantile: set[tuple[str, str]] = set()
        self._realized: set[str] = set()
        self._totals: dict[tuple[str, str], tuple[int, int]] = {}  # (horizon, method) -> scored, unscorable
        self._surface: set[tuple[str, tuple[str, ...]]] = set()  # the surface series set, to remove stale ones
        self._surface_forecast: set[tuple[str, tuple[str, ...]]] = set()

    def forecasts(self, by_method: Mapping[str, Sequence[HorizonForecast]]) -> None:
        """Every method's forecast per horizon, and its quantiles once it has them."""
        und = self.underlying
        vol: set[tuple[str, str]] = set()
        quant: set[tuple[str, str]] = set()
        for method, fcs in by_method.items():
            for fc in fcs:
                key = (fc.horizon.name, method)
                if fc.vol is None:
                    continue
                FORECAST_VOL.labels(und, *key).set(fc.vol)
                vol.add(key)
                if fc.q10 is not None and fc.q50 is not None and fc.q90 is not None:
                    for level, attr in QUANTILES:
                        FORECAST_VOL_QUANTILE.labels(und, *key, level).set(getattr(fc, attr))
                    quant.add(key)
        for key in self._vol - vol:
            FORECAST_VOL.remove(und, *key)
        for key in self._quantile - quant:
            for level, _attr in QUANTILES:
                FORECAST_VOL_QUANTILE.remove(und, *key, level)
        self._vol, self._quantile = vol, quant

    def surface(self, block: Mapping[str, Any], refit: bool) -> None:
        """The surface nowcast's grid, term structure, skew and fit error, on each refit.

        A tenor the chain no longer reaches (an expiry rolled off) loses its series.
        """
        if not refit:
            return
        und = self.underlying
        values: dict[tuple[str, tuple[str, ...]], float] = {}  # (block key, labels) -> value
        for days, row in zip(block["tenors_days"], block["iv"]):
            for delta, iv in zip(block["deltas"], row):
                if iv is not None:
                    values[("iv", (und, f"{days:g}d", delta))] = iv
        for key in ("atm", "rr25", "bf25"):
            for tenor, value in block[key].items():
                if value is not None:
                    values[(key, (und, tenor))] = value
        if block["rmse_vol_pts"] is not None:
            values[("rmse", (und,))] = block["rmse_vol_pts"] / 100.0  # vol points -> decimal IV
        for key, labels in self._surface - values.keys():
            _SURFACE_SERIES[key].remove(*labels)
        for (key, labels), value in values.items():
            _SURFACE_SERIES[key].labels(*labels).set(value)
        self._surface = set(values)

    def surface_forecast(self, forecast: Mapping[str, Any]) -> None:
        """ATM IV, RR25 and BF25 forecasts per tenor and horizon (gone while the forecaster warms up)."""
        und, method = self.underlying, forecast["method"]
        values: dict[tuple[str, tuple[str, ...]], float] = {}
        for horizon, per_q in forecast["horizons"].items():
            for key in ("atm", "rr25", "bf25"):
                for tenor, value in per_q[key].items():
                    values[(f"forecast_{key}", (und, tenor, horizon, method))] = value
        for key, labels in self._surface_forecast - values.keys():
            _SURFACE_SERIES[key].remove(*labels)
        for (key, labels), value in values.items():
            _SURFACE_SERIES[key].labels(*labels).set(value)
        self._surface_forecast = set(values)

    def realized(self, vols: Mapping[str, float | None]) -> None:
        """Trailing realized vol per horizon; None removes the series (too few observed steps)."""
        for horizon, vol in vols.items():
            if vol is None:
                if horizon in self._realized:
                    REALIZED_VOL.remove(self.underlying, horizon)
                    self._realized.discard(horizon)
            else:
                REALIZED_VOL.labels(self.underlying, horizon).set(vol)
                self._realized.add(horizon)

    def scores(self, scores: Sequence[Score]) -> None:
        """Rolling scores and scored counts from :meth:`model.scoring.OnlineScorer.summary`."""
        und = self.underlying
        for s in scores:
            labels = (und, s.horizon, s.method)
            FORECAST_SCORE_SAMPLES.labels(*labels).set(s.n)
            if s.qlike is None:
                FORECAST_QLIKE.remove(*labels)
            else:
                FORECAST_QLIKE.labels(*labels).set(s.qlike)
            if s.coverage is None:
                FORECAST_COVERAGE.remove(*labels)
            else:
                FORECAST_COVERAGE.labels(*labels).set(s.coverage)
            scored, unscorable = self._totals.get((s.horizon, s.method), (0, 0))
            # Totals below what was added: state from before a restart; counters restarted at 0.
            FORECAST_SCORED.labels(*labels).inc(s.scored_total - scored if s.scored_total >= scored else s.scored_total)
            FORECAST_UNSCORABLE.labels(*labels).inc(
                s.unscorable_total - unscorable if s.unscorable_total >= unscorable else s.unscorable_total
            )
            self._totals[(s.horizon, s.method)] = (s.scored_total, s.unscorable_total)


def count_record(record: Mapping[str, object]) -> None:
    """Count one record that reached the sinks, by its schema."""
    schema, und = record.get("schema"), str(record.get("underlying"))
    if schema == SCHEMA:
        FORECAST_RECORDS.labels(und).inc()
    elif schema == SCORE_SCHEMA:
        SCORE_RECORDS.labels(und).inc()


def catalog() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Every volcast metric family: name (counters without ``_total``) -> (type, label names)."""
    out = {}
    for value in list(globals().values()):
        if isinstance(value, (Counter, Gauge, Histogram)):
            out[value._name] = (value._type, tuple(value._labelnames))  # noqa: SLF001
        elif type(value).__module__ == __name__ and callable(getattr(value, "collect", None)):
            # Custom collectors (feeds, sinks) yield every family on each collect, samples or not.
            for fam in value.collect():
                out[fam.name] = (fam.type, tuple(getattr(fam, "_labelnames", ())))
    return dict(sorted(out.items()))


def serve(host: str, port: int) -> int:
    """Start the /metrics endpoint; port 0 picks a free port, which is returned."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_port


class SinkCollector:
    """Exports every sink's delivery counters on scrape (``volcast_sink_*{sink}``).

    A sink registers a zero-argument callable returning a
    :class:`connectors.sinks.delivery.DeliveryStats`; the ``sink`` label is the sink's
    URL without credentials or options (scheme, host:port, path), so it is bounded by
    the configuration. Several partitions of one sink (several workers) are summed.
    """

    def __init__(self) -> None:
        self._sources: dict[str, list] = {}
        self._lock = threading.Lock()

    def register(self, label: str, stats) -> None:
        with self._lock:
            self._sources.setdefault(label, []).append(stats)

    def unregister(self, label: str, stats) -> None:
        with self._lock:
            sources = self._sources.get(label, [])
            if stats in sources:
                sources.remove(stats)

    def snapshot(self) -> dict[str, dict[str, float]]:
        """label -> summed counters (also for tests and ``volcast bench``)."""
        with self._lock:
            sources = {k: list(v) for k, v in self._sources.items() if v}
        out: dict[str, dict[str, float]] = {}
        for label, fns in sources.items():
            total: dict[str, float] = {}
            for fn in fns:
                s = fn()
                for key in ("delivered", "retries", "dropped", "duplicates", "buffer_depth"):
                    total[key] = total.get(key, 0) + getattr(s, key)
                total["up"] = max(total.get("up", 0), 1.0 if s.up else 0.0)
                for key, v in s.extra.items():
                    total[key] = total.get(key, 0) + v
            out[label] = total
        return out

    def collect(self) -> Iterator[Metric]:
        fams: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "delivered": CounterMetricFamily("volcast_sink_delivered", "Records a sink's broker acknowledged (or a file/stdout wrote).", labels=["sink"]),
            "retries": CounterMetricFamily("volcast_sink_retries", "Failed delivery or connect attempts that were retried.", labels=["sink"]),
            "dropped": CounterMetricFamily("volcast_sink_dropped", "Records given up: buffer full (oldest dropped), refused, or undelivered at stop.", labels=["sink"]),
            "duplicates": CounterMetricFamily("volcast_sink_duplicates", "Records the broker had already (deduplicated on the record id).", labels=["sink"]),
            "buffer_depth": GaugeMetricFamily("volcast_sink_buffer_depth", "Records waiting in a sink's buffer, in flight included.", labels=["sink"]),
            "up": GaugeMetricFamily("volcast_sink_up", "1 if the sink's last delivery attempt succeeded.", labels=["sink"]),
            "clients": GaugeMetricFamily("volcast_sink_clients", "Websocket clients connected.", labels=["sink"]),
            "slow_disconnects": CounterMetricFamily("volcast_sink_slow_disconnects", "Websocket clients disconnected because their queue was full.", labels=["sink"]),
            "rejected": CounterMetricFamily("volcast_sink_rejected", "Websocket handshakes refused for a missing or wrong token.", labels=["sink"]),
        }
        for label, values in self.snapshot().items():
            for key, v in values.items():
                if key in fams:
                    fams[key].add_metric([label], v)
        yield from fams.values()


SINKS = SinkCollector()
REGISTRY.register(SINKS)
