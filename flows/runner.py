"""Run the dataflow as a daemon: signals, metrics endpoint, duration, clean stop."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Iterable

from bytewax.outputs import Sink
from bytewax.run import cli_main

from connectors.errors import FeedConfigError
from flows import metrics
from flows.config import AppConfig
from flows.dataflow import build_flow

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
    timer = None
    if duration_s is not None:
        timer = threading.Timer(duration_s, stop.set)
        timer.daemon = True
        timer.start()
    failures: list[str] = []
    previous = _install_signal_handlers(stop)
    try:
        cli_main(build_flow(cfg, sinks, stop, failures=failures), workers_per_process=1)
    finally:
        if timer is not None:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failures:
        raise FeedConfigError("; ".join(failures))


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
