"""The volcast dataflow: feeds -> per-instrument features -> per-underlying forecasts -> sinks.

::

    feed partitions (one per websocket connection)
      -> key by instrument -> FeatureBuilder (validated book views, BBO, trades)
      -> rows of each underlying's book instruments
      (option tickers, listings, index values -> key by underlying -> chain state
       -> surface nowcast per step, refitted when due)
      -> collect (bounded time and size) -> forecast: every underlying's baselines,
         one batched attention-model call for the windows the batch completed
      -> forecast records (+ score records every 60 steps) -> sinks, Prometheus

The forecast step is keyed by one constant, so the windows of every underlying
meet in one batch (principle 6); its cost per step is a few baselines' updates.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any, Iterable

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import FixedPartitionedSink, Sink

from connectors.events import Event
from flows import metrics
from flows.aux import AuxRouter, AuxState, MempoolUpdate, SurfaceUpdate
from flows.config import AppConfig
from flows.sinks import MetricsSink
from flows.sources import FeedSource
from flows.underlying import Step, SurfaceStep, UnderlyingState
from model.features import FeatureBuilder, FeatureRow
from model.nn.infer import BatchedForecaster

log = logging.getLogger("volcast.flow")

_FORECAST_KEY = "forecast"


def _feature_step(
    builder: FeatureBuilder | None, ev: Event, cfg: AppConfig
) -> tuple[FeatureBuilder, list[tuple[FeatureRow, int]]]:
    if builder is None:
        builder = FeatureBuilder(ev.instrument_id, cadence_ns=cfg.cadence_ns, book_depth=cfg.book_depth)
    return builder, [(row, ev.ts_recv_ns) for row in builder.on_event(ev)]


class _Forecasts:
    """The forecast step's state: every underlying's :class:`UnderlyingState` (picklable; the model is not in it)."""

    def __init__(self) -> None:
        self.underlyings: dict[str, UnderlyingState] = {}

    def on_batch(
        self,
        items: list[tuple[FeatureRow, int] | SurfaceUpdate | MempoolUpdate],
        cfg: AppConfig,
        underlying_of: dict[str, str],
        model: BatchedForecaster | None,
    ) -> list[dict[str, Any]]:
        # Every item in arrival order; records wait for the batch's one model call.
        steps: list[tuple[UnderlyingState, Step | SurfaceStep]] = []
        for item in items:
            if isinstance(item, MempoolUpdate):
                self._state(item.underlying, cfg, model).on_mempool(item.row)
                continue
            if isinstance(item, SurfaceUpdate):
                state = self._state(item.underlying, cfg, model)
                surface_step = state.on_surface(item)
                if surface_step is not None:  # an underlying without books: the surface drives its records
                    steps.append((state, surface_step))
                continue
            row, recv_ns = item
            state = self._state(underlying_of[row.instrument_id], cfg, model)
            step = state.on_row(row, recv_ns)
            if step is not None:
                steps.append((state, step))
        answers = _run_model(model, [s.window for _, s in steps if isinstance(s, Step) and s.window is not None])
        out: list[dict[str, Any]] = []
        for state, step in steps:
            if isinstance(step, SurfaceStep):
                out.append(state.surface_record(step))
            else:
                out.extend(state.finish(step, None if step.window is None else answers.pop(0)))
        return out

    def _state(self, und: str, cfg: AppConfig, model: BatchedForecaster | None) -> UnderlyingState:
        state = self.underlyings.get(und)
        if state is None:
            state = self.underlyings[und] = UnderlyingState(
                und, cfg.underlyings().get(und, ()), cfg, None if model is None else model.spec
            )
        return state


def _run_model(model: BatchedForecaster | None, windows: list) -> list:
    """One batched inference for every window of a collected batch (principle 6)."""
    if model is None or not windows:
        return []
    t0 = time.perf_counter()
    answers = model.forecast_batch(windows)
    metrics.MODEL_BATCH_DURATION.labels("attention").observe(time.perf_counter() - t0)
    metrics.MODEL_BATCH_SIZE.labels("attention").observe(len(windows))
    return answers


def build_flow(
    cfg: AppConfig,
    sinks: Iterable[Sink],
    stop: threading.Event | None = None,
    *,
    source: Source[Event] | None = None,
    rows_sink: Sink[FeatureRow] | None = None,
    failures: list[str] | None = None,
    model: BatchedForecaster | None = None,
) -> Dataflow:
    """The daemon's dataflow; ``stop`` ends every feed cleanly (sinks get closed).

    ``source`` replaces the live feeds (tests feed recorded events through
    ``bytewax.testing.TestingSource``); ``rows_sink`` also receives every feature row;
    ``failures`` collects feeds that stopped because the venue refused their configuration;
    ``model`` is the attention model, already loaded and warmed up (None: baselines only).
    """
    stop = stop or threading.Event()
    underlying_of = {iid: und for und, ids in cfg.underlyings().items() for iid in ids}
    aux_of = AuxRouter(cfg)

    flow = Dataflow("volcast")
    events = op.input("feeds", flow, source or FeedSource(cfg, stop, failures))
    split = op.branch("aux_or_book", events, lambda ev: aux_of(ev) is not None)

    def aux_step(state: AuxState | None, ev: Event):
        state = state or AuxState(aux_of(ev), cfg)
        return state, state.on_event(ev)

    aux_updates = op.key_rm(
        "unkey_aux",
        op.stateful_flat_map("chains", op.key_on("key_chain", split.trues, aux_of), aux_step),
    )
    by_instrument = op.key_on("key_instrument", split.falses, lambda ev: ev.instrument_id)
    rows = op.stateful_flat_map(
        "features", by_instrument, lambda s, ev: _feature_step(s, ev, cfg)
    )
    all_rows = op.key_rm("unkey_rows", rows)
    if rows_sink is not None:
        op.output("rows_out", op.map("row_only", all_rows, lambda r: r[0]), rows_sink)
    book_rows = op.filter("known_underlying", all_rows, lambda r: r[0].instrument_id in underlying_of)
    batches = op.collect(
        "batch",
        op.key_on("key_forecast", op.merge("rows_and_aux", book_rows, aux_updates), lambda _: _FORECAST_KEY),
        timeout=timedelta(milliseconds=cfg.batch_timeout_ms),
        max_size=cfg.batch_max_items,
    )

    def forecast_step(state: _Forecasts | None, items: list[tuple[FeatureRow, int] | SurfaceUpdate | MempoolUpdate]):
        state = state or _Forecasts()
        return state, state.on_batch(items, cfg, underlying_of, model)

    bare = op.key_rm("unkey_records", op.stateful_flat_map("forecast", batches, forecast_step))
    op.output("metrics", bare, MetricsSink())
    records = op.key_on("key_records", bare, lambda rec: rec["underlying"])
    for i, sink in enumerate(sinks):
        op.output(f"sink_{i}", records if isinstance(sink, FixedPartitionedSink) else bare, sink)
    return flow
