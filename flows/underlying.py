"""One underlying's forecasting state in the flow: forecasters, model windows, surface and mempool inputs.

The flow hands it, in time order, the feature rows of the underlying's book
instruments, the surface nowcasts of its option chain and the mempool feature
rows of the chains joined to it. A row of the primary instrument closes a
cadence step: the baselines observe it and forecast, the attention model's
window builder may complete a window, and :meth:`UnderlyingState.finish` turns
the step into its forecast record once the batched model has answered.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from flows import metrics
from flows.aux import SurfaceUpdate
from flows.config import AppConfig
from flows.records import SCHEMA, iso, record_id, score_record
from model.baselines.ewma import EWMA
from model.calibration import Calibrated, QuantileCalibrator
from model.baselines.garch_live import LiveGARCH
from model.baselines.har import HARRV
from model.features import FeatureRow
from model.mempool import MempoolRow
from model.forecaster import Forecaster, HorizonForecast, step_rv
from model.horizons import MINUTE_NS
from model.nn.infer import METHOD as ATTENTION
from model.nn.inputs import Window, WindowBuilder
from model.nn.spec import ModelSpec
from model.scoring import OnlineScorer
from model.surface.forecast import SurfaceAR1

SCORE_EVERY_STEPS = 60  # a volcast.score/1 record per underlying every this many steps
REALIZED_EVERY_STEPS = 5  # the realized-vol gauges (four trailing sums, ~0.15 ms) every this many steps


class Step(NamedTuple):
    """A primary row's step between the baselines and the record: the model may still add its forecast."""

    row: FeatureRow
    recv_ns: int
    by_method: dict[str, list[HorizonForecast]]
    window: Window | None
    window_reason: str  # what the model's window still lacks, as of this row
    surface: SurfaceUpdate | None  # the latest surface nowcast, as of this row
    surface_forecast: dict[str, Any] | None  # and its ATM/RR/BF forecasts
    mempool: dict[str, MempoolRow]  # the latest mempool row of each joined chain


class SurfaceStep(NamedTuple):
    """A surface nowcast that makes the record of an underlying without books, with its forecasts then."""

    update: SurfaceUpdate
    forecast: dict[str, Any]


class UnderlyingState:
    """Keyed state of one underlying: its forecasters and the freshness of its inputs."""

    def __init__(
        self, underlying: str, instruments: tuple[str, ...], cfg: AppConfig, model_spec: ModelSpec | None = None
    ) -> None:
        self.underlying = underlying
        # No books: an option chain alone, whose surface drives the records (no RV forecast).
        self.primary = instruments[0] if instruments else None
        # Preference order after the attention model: the first method with an ok forecast fills a horizon.
        self.forecasters: list[Forecaster] = [HARRV(cadence_ns=cfg.cadence_ns), EWMA(cadence_ns=cfg.cadence_ns)]
        # GARCH's bars and the calibrators' outcome samples are minutes made of whole steps.
        if MINUTE_NS % cfg.cadence_ns == 0:
            self.forecasters.append(LiveGARCH(cadence_ns=cfg.cadence_ns))
            # Each baseline's q10/q50/q90 recalibrated online from its matured outcomes.
            self.forecasters = [
                Calibrated(f, QuantileCalibrator(f.horizons, cadence_ns=cfg.cadence_ns)) for f in self.forecasters
            ]
        self.horizons = self.forecasters[0].horizons
        self.inputs: dict[str, dict[str, Any]] = {
            iid: {"synced": False, "last_ts_ns": None} for iid in instruments
        }
        self.windows = (
            None if model_spec is None or self.primary is None
            else WindowBuilder(self.primary, model_spec, cfg.cadence_ns)
        )
        # The attention model forecasts once per bar; the latest one serves until the next bar.
        self.attention: list[HorizonForecast] | None = None
        self.attention_ts_ns: int | None = None
        self.bar_ns = None if model_spec is None else model_spec.bar_ns
        # Online scores of every method against the RV the forecasters target (principle 7).
        self.scorer = OnlineScorer(self.horizons, cadence_ns=cfg.cadence_ns)
        self.score_every_ns = SCORE_EVERY_STEPS * cfg.cadence_ns
        self.realized_every_ns = REALIZED_EVERY_STEPS * cfg.cadence_ns
        self.exporter = metrics.UnderlyingExporter(underlying)
        self.surface: SurfaceUpdate | None = None
        self.surface_stale_ns = int(cfg.surface_stale_s * 1e9)
        # ATM/RR/BF forecasts: a named baseline until a checkpoint has surface heads (principle 7).
        self.surface_forecaster = SurfaceAR1(self.horizons, sample_ns=int(cfg.surface_refit_s * 1e9))
        self.surface_forecast: dict[str, Any] | None = None
        self.mempool: dict[str, MempoolRow] = {}
        self.mempool_stale_ns = int(cfg.mempool_stale_s * 1e9)

    def on_mempool(self, row: MempoolRow) -> None:
        """Keep the latest mempool row of a chain joined to this underlying."""
        self.mempool[row.chain] = row

    def on_surface(self, update: SurfaceUpdate) -> SurfaceStep | None:
        """Keep the latest surface nowcast and forecast; a step when it makes this underlying's record (no books)."""
        self.surface = update
        self.exporter.surface(update.block, refit=update.refit)
        if update.block["status"] == "ok":
            self.surface_forecaster.observe(update.ts_ns, update.block)
        self.surface_forecast = self.surface_forecaster.forecast(update.ts_ns)
        self.exporter.surface_forecast(self.surface_forecast)
        return SurfaceStep(update, self.surface_forecast) if self.primary is None else None

    def surface_record(self, step: SurfaceStep) -> dict[str, Any]:
        """The record of an underlying without books: its surface, and why there is no RV forecast."""
        why = f"{self.underlying} has no order-book feed: its records carry the surface only"
        by_method = {f.name: [HorizonForecast.warming_up(h, f.name, why) for h in self.horizons] for f in self.forecasters}
        return self._record(step.update.ts_ns, by_method, step.update, step.forecast, dict(self.mempool))

    def on_row(self, row: FeatureRow, recv_ns: int) -> Step | None:
        """Consume a book row; a :class:`Step` when it is the primary instrument's."""
        inp = self.inputs[row.instrument_id]
        inp["synced"] = bool(row.synced)
        inp["last_ts_ns"] = row.ts_ns
        if row.instrument_id != self.primary:
            return None
        by_method: dict[str, list[HorizonForecast]] = {}
        for f in self.forecasters:
            t0 = time.perf_counter()
            f.observe(row)
            by_method[f.name] = f.forecast(row.ts_ns)
            metrics.FORECASTER_DURATION.labels(f.name).observe(time.perf_counter() - t0)
        window = None if self.windows is None else self.windows.observe(row)
        return Step(
            row, recv_ns, by_method, window, "" if self.windows is None else self.windows.reason, self.surface,
            self.surface_forecast, dict(self.mempool),
        )

    def finish(self, step: Step, attention: list[HorizonForecast] | None) -> list[dict[str, Any]]:
        """The step's forecast record (and a score record every SCORE_EVERY_STEPS steps).

        ``attention``: the model's forecasts for ``step.window``, when it had one.
        """
        ts = step.row.ts_ns
        by_method = dict(step.by_method)
        fresh_attention: list[HorizonForecast] | None = None
        if self.windows is not None:
            if attention is not None:
                self.attention, self.attention_ts_ns = self._on_our_horizons(attention), ts
                fresh_attention = self.attention
            by_method = {ATTENTION: self._attention_now(ts, step.window_reason), **by_method}
        out = [self._record(ts, by_method, step.surface, step.surface_forecast, step.mempool)]
        metrics.LATENCY.observe(max(0.0, (time.time_ns() - step.recv_ns) / 1e9))
        self._score(step.row, by_method, fresh_attention, out)
        return out

    def _on_our_horizons(self, fcs: list[HorizonForecast]) -> list[HorizonForecast]:
        by_name = {fc.horizon.name: fc for fc in fcs}
        return [
            by_name.get(h.name)
            or HorizonForecast.warming_up(h, ATTENTION, f"the checkpoint does not forecast {h.name}")
            for h in self.horizons
        ]

    def _attention_now(self, ts_ns: int, window_reason: str) -> list[HorizonForecast]:
        """The latest bar's forecasts while they are at most one bar old; else why there are none."""
        assert self.bar_ns is not None
        if self.attention is not None and self.attention_ts_ns is not None:
            if ts_ns - self.attention_ts_ns < 2 * self.bar_ns:
                return self.attention
            reason = window_reason or "attention's latest window is more than a bar old (a gap in the bars)"
        else:
            reason = window_reason or "attention has not produced a forecast yet"
        return [HorizonForecast.warming_up(h, ATTENTION, reason) for h in self.horizons]

    def _score(
        self,
        row: FeatureRow,
        by_method: dict[str, list[HorizonForecast]],
        fresh_attention: list[HorizonForecast] | None,
        out: list,
    ) -> None:
        """Score matured forecasts, queue this step's, export; a score record every SCORE_EVERY_STEPS."""
        ts = row.ts_ns
        self.scorer.observe(ts, step_rv(row))
        for name, fcs in by_method.items():
            if name == ATTENTION:
                continue  # scored once, at the bar that produced it, not again at every step it serves
            for fc in fcs:
                self.scorer.add(ts, name, fc)
        for fc in fresh_attention or ():
            self.scorer.add(ts, ATTENTION, fc)
        self.exporter.forecasts(by_method)
        if ts % self.realized_every_ns == 0:
            self.exporter.realized({h: self.scorer.realized_vol(h) for h in self.scorer.horizons})
        if ts % self.score_every_ns == 0:
            scores = self.scorer.summary()
            self.exporter.scores(scores)
            out.append(score_record(self.underlying, ts, scores, self.scorer.window_ns / 1e9))

    def _record(
        self,
        ts_ns: int,
        by_method: dict[str, list[HorizonForecast]],
        surface: SurfaceUpdate | None,
        surface_forecast: dict[str, Any] | None,
        mempool: dict[str, MempoolRow],
    ) -> dict[str, Any]:
        rv = []
        warming: list[str] = []
        methods = list(by_method)  # ordered by preference: best method first
        for i, horizon in enumerate(self.horizons):
            chosen = None
            for name in methods:
                fc = by_method[name][i]
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
        record = {
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
        features: dict[str, Any] = {}
        if surface is not None:
            age_ns = ts_ns - surface.block["ts_ns"]  # since the fit (refits are throttled)
            record["surface"] = {**surface.block, "age_s": age_ns / 1e9}
            record["surface_forecast"] = surface_forecast
            # A stale surface is reported (with its age) but is no input to anything.
            if age_ns <= self.surface_stale_ns:
                features.update(surface.features)
        if mempool:
            features["mempool"] = {chain: self._mempool_features(row, ts_ns) for chain, row in mempool.items()}
        if surface is not None or mempool:
            record["features"] = features
        return record

    def _mempool_features(self, row: MempoolRow, ts_ns: int) -> dict[str, Any]:
        """A chain's latest step, absent (every value null) once older than mempool_stale_s: a dead feed is no quiet mempool."""
        age_ns = ts_ns - row.ts_ns
        stale = age_ns > self.mempool_stale_ns
        return {"ts_ns": row.ts_ns, "age_s": age_ns / 1e9,
                "values": {k: None if stale else v for k, v in row.values.items()}}
