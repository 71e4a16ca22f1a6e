"""Run the dataflow as a daemon: signals, metrics endpoint, duration, clean stop."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Iterable

from bytewax.outputs import Sink
from bytewax.run import cli_main

from connectors.errors import FeedConfigError
from flows import metrics
from flows.config import AppConfig
from flows.dataflow import build_flow
from flows.errors import DataError

log = logging.getLogger("volcast")


def run_daemon(
    cfg: AppConfig,
    sinks: Iterable[Sink],
    *,
    duration_s: float | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run until every feed ends, ``duration_s`` passes, or SIGINT/SIGTERM arrives.

    Every way of stopping ends the feeds, so Bytewax sees end of input, closes the
    sinks and the JSONL file is complete; a second signal stops at once.
    """
    stop = stop or threading.Event()
    if cfg.metrics_port is not None:
        port = metrics.serve(cfg.metrics_host, cfg.metrics_port)
        log.info("metrics on http://%s:%d/metrics", cfg.metrics_host, port)
    failures: list[str] = []
    model = load_model(cfg)  # before the clock starts: --duration counts the daemon's run, not its warm-up
    timer = None
    if duration_s is not None:
        timer = threading.Timer(duration_s, stop.set)
        timer.daemon = True
        timer.start()
    reloader = None
    if model is not None:
        reloader = threading.Thread(target=_reload_loop, args=(model, cfg.model_reload_s, stop),
                                    name="model-reload", daemon=True)
        reloader.start()
    previous = _install_signal_handlers(stop)
    try:
        cli_main(build_flow(cfg, sinks, stop, failures=failures, model=model), workers_per_process=1)
    finally:
        stop.set()  # the feeds have ended: so does the reload watcher
        if timer is not None:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failures:
        raise FeedConfigError("; ".join(failures))


def load_model(cfg: AppConfig):
    """The attention model of ``cfg``, loaded, checked against the flow's rows and warmed up; None if off.

    A checkpoint that cannot serve this flow is the user's to fix: one line, exit 2.
    """
    if cfg.model_checkpoint == "none":
        return None
    from model.features import feature_spec
    from model.nn.checkpoint import CheckpointError
    from model.nn.infer import BatchedForecaster, default_checkpoint

    path = default_checkpoint() if cfg.model_checkpoint == "default" else cfg.model_checkpoint
    t0 = time.perf_counter()
    try:
        model = BatchedForecaster(path, feature_spec(cfg.cadence_ns, cfg.book_depth))
    except CheckpointError as exc:
        raise DataError(f"model_checkpoint: {exc}") from None
    except OSError as exc:
        raise DataError(f"model_checkpoint: cannot read checkpoint: {path}: {exc.strerror or exc}") from None
    metrics.MODEL_LOADED.labels("attention").set(time.time())
    log.info("attention model %s (%s) ready in %.1f s", path, model.checkpoint.sha256[:12], time.perf_counter() - t0)
    return model


def _reload_loop(model, every_s: float, stop: threading.Event) -> None:
    """Swap in a changed checkpoint file once it has loaded, fit and warmed up; else keep serving and say why."""
    while not stop.wait(every_s):
        result = model.maybe_reload()
        if result.status == "unchanged":
            continue
        metrics.MODEL_RELOADS.labels("attention", result.status).inc()
        if result.status == "reloaded":
            metrics.MODEL_LOADED.labels("attention").set(time.time())
            log.info("attention model reloaded: %s", result.reason)
        else:
            log.warning("attention model reload rejected: %s", result.reason)


def _install_signal_handlers(stop: threading.Event) -> dict[int, object]:
    """SIGTERM behaves like SIGINT: a clean stop (Bytewax alone dies at once on SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("%s received: stopping feeds, flushing sinks", signal.Signals(signum).name)
        stop.set()

    return {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
