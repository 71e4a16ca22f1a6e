"""The volcast dataflow: feeds -> per-instrument features -> per-underlying forecasts -> sinks.

::

    feed partitions (one per websocket group)
      -> key by instrument -> FeatureBuilder (validated book views, BBO, trades)
      -> key by underlying -> forecasters (baselines now, the attention model later)
      -> forecast records (+ score records every 60 steps) -> JSONL / stdout sinks, Prometheus
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterable

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import FixedPartitionedSink, Sink

from connectors.events import Event
from flows import metrics
from flows.config import AppConfig
from flows.records import SCHEMA, iso, record_id, score_record
from flows.sinks import MetricsSink
from flows.sources import FeedSource
from model.features import FeatureBuilder, FeatureRow
from model.baselines.ewma import EWMA
from model.baselines.har import HARRV
from model.forecaster import Forecaster, HorizonForecast, step_rv
from model.scoring import OnlineScorer

SCORE_EVERY_STEPS = 60  # a volcast.score/1 record per underlying every this many steps
REALIZED_EVERY_STEPS = 5  # the realized-vol gauges (four trailing sums, ~0.15 ms) every this many steps


def _feature_step(
    builder: FeatureBuilder | None, ev: Event, cfg: AppConfig
) -> tuple[FeatureBuilder, list[tuple[FeatureRow, int]]]:
    if builder is None:
        builder = FeatureBuilder(ev.instrument_id, cadence_ns=cfg.cadence_ns, book_depth=cfg.book_depth)
    return builder, [(row, ev.ts_recv_ns) for row in builder.on_event(ev)]


class _UnderlyingState:
    """Keyed state of one underlying: its forecasters and the freshness of its inputs."""

    def __init__(self, underlying: str, instruments: tuple[str, ...], cfg: AppConfig) -> None:
        self.underlying = underlying
        self.primary = instruments[0]
        # Preference order: the first method with an ok forecast fills each horizon.
        self.forecasters: list[Forecaster] = [HARRV(cadence_ns=cfg.cadence_ns), EWMA(cadence_ns=cfg.cadence_ns)]
        self.inputs: dict[str, dict[str, Any]] = {
            iid: {"synced": False, "last_ts_ns": None} for iid in instruments
        }
        # Online scores of every method against the RV the forecasters target (principle 7).
        self.scorer = OnlineScorer(self.forecasters[0].horizons, cadence_ns=cfg.cadence_ns)
        self.score_every_ns = SCORE_EVERY_STEPS * cfg.cadence_ns
        self.realized_every_ns = REALIZED_EVERY_STEPS * cfg.cadence_ns
        self.exporter = metrics.UnderlyingExporter(underlying)

    def on_row(self, row: FeatureRow, recv_ns: int) -> list[dict[str, Any]]:
        inp = self.inputs[row.instrument_id]
        inp["synced"] = bool(row.synced)
        inp["last_ts_ns"] = row.ts_ns
        if row.instrument_id != self.primary:
            return []
        by_method: dict[str, list[HorizonForecast]] = {}
        for f in self.forecasters:
            t0 = time.perf_counter()
            f.observe(row)
            by_method[f.name] = f.forecast(row.ts_ns)
            metrics.FORECASTER_DURATION.labels(f.name).observe(time.perf_counter() - t0)
        out = [self._record(row.ts_ns, by_method)]
        metrics.LATENCY.observe(max(0.0, (time.time_ns() - recv_ns) / 1e9))
        self._score(row, by_method, out)
        return out

    def _score(self, row: FeatureRow, by_method: dict[str, list[HorizonForecast]], out: list) -> None:
        """Score matured forecasts, queue this step's, export; a score record every SCORE_EVERY_STEPS."""
        ts = row.ts_ns
        self.scorer.observe(ts, step_rv(row))
        for name, fcs in by_method.items():
            for fc in fcs:
                self.scorer.add(ts, name, fc)
        self.exporter.forecasts(by_method)
        if ts % self.realized_every_ns == 0:
            self.exporter.realized({h: self.scorer.realized_vol(h) for h in self.scorer.horizons})
        if ts % self.score_every_ns == 0:
            scores = self.scorer.summary()
            self.exporter.scores(scores)
            out.append(score_record(self.underlying, ts, scores, self.scorer.window_ns / 1e9))

    def _record(self, ts_ns: int, by_method: dict[str, list[HorizonForecast]]) -> dict[str, Any]:
        rv = []
        warming: list[str] = []
        for i, horizon in enumerate(self.forecasters[0].horizons):
            chosen = None
            for f in self.forecasters:  # ordered by preference: best method first
                fc = by_method[f.name][i]
                if fc.status == "ok":
                    chosen = fc
                    break
                warming.append(f"{horizon.name}: {fc.reason}")
            rv.append(
                {
                    "horizon": horizon.name,
                    "vol": None if chosen is None else chosen.vol,
                    "method": None if chosen is None else chosen.method,
                    "q10": None if chosen is None else chosen.q10,
                    "q50": None if chosen is None else chosen.q50,
                    "q90": None if chosen is None else chosen.q90,
                }
            )
        inputs = {
            iid: {
                "synced": v["synced"],
                "lag_s": None if v["last_ts_ns"] is None else (ts_ns - v["last_ts_ns"]) / 1e9,
            }
            for iid, v in self.inputs.items()
        }
        return {
            "schema": SCHEMA,
            "id": record_id(self.underlying, ts_ns),
            "ts_ns": ts_ns,
            "time": iso(ts_ns),
            "underlying": self.underlying,
            "source": self.primary,
            "rv": rv,
            "baselines": {
                name: {fc.horizon.name: fc.vol for fc in fcs} for name, fcs in by_method.items()
            },
            "inputs": inputs,
            "inputs_synced": all(v["synced"] for v in inputs.values()),
            "warming_up": sorted(set(warming)),
        }


def build_flow(
    cfg: AppConfig,
    sinks: Iterable[Sink],
    stop: threading.Event | None = None,
    *,
    source: Source[Event] | None = None,
    rows_sink: Sink[FeatureRow] | None = None,
    failures: list[str] | None = None,
) -> Dataflow:
    """The daemon's dataflow; ``stop`` ends every feed cleanly (sinks get closed).

    ``source`` replaces the live feeds (tests feed recorded events through
    ``bytewax.testing.TestingSource``); ``rows_sink`` also receives every feature row;
    ``failures`` collects feeds that stopped because the venue refused their configuration.
    """
    stop = stop or threading.Event()
    underlying_of = {iid: und for und, ids in cfg.underlyings().items() for iid in ids}
    instruments_of = cfg.underlyings()

    flow = Dataflow("volcast")
    events = op.input("feeds", flow, source or FeedSource(cfg, stop, failures))
    by_instrument = op.key_on("key_instrument", events, lambda ev: ev.instrument_id)
    rows = op.stateful_flat_map(
        "features", by_instrument, lambda s, ev: _feature_step(s, ev, cfg)
    )
    all_rows = op.key_rm("unkey_rows", rows)
    if rows_sink is not None:
        op.output("rows_out", op.map("row_only", all_rows, lambda r: r[0]), rows_sink)
    primary_rows = op.filter("known_underlying", all_rows, lambda r: r[0].instrument_id in underlying_of)
    by_underlying = op.key_on("key_underlying", primary_rows, lambda r: underlying_of[r[0].instrument_id])

    def forecast_step(state: _UnderlyingState | None, item: tuple[FeatureRow, int]):
        row, recv_ns = item
        if state is None:
            und = underlying_of[row.instrument_id]
            state = _UnderlyingState(und, instruments_of[und], cfg)
        return state, state.on_row(row, recv_ns)

    records = op.stateful_flat_map("forecast", by_underlying, forecast_step)
    bare = op.key_rm("unkey_records", records)
    op.output("metrics", bare, MetricsSink())
    for i, sink in enumerate(sinks):
        op.output(f"sink_{i}", records if isinstance(sink, FixedPartitionedSink) else bare, sink)
    return flow
