"""The body of each ``volcast`` command (argument parsing lives in ``flows.cli``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from connectors.events import encode_event
from connectors.io.ws import run_session
from connectors.record.writer import RecordingWriter
from connectors.replay.server import ReplayServer
from connectors import inspect as inspect_mod
from flows.errors import DataError
from flows.config import (
    AnyFeed,
    AppConfig,
    BitcoinFeed,
    ConfigError,
    DeribitFeed,
    EthereumFeed,
    FeedConfig,
    default_live_config,
    load_config,
)
from flows.records import human_line
from flows.runner import run_daemon
from flows.sink_urls import FileSinkConfig, SinkConfig, StdoutSinkConfig, parse_sink_urls
from flows.sinks import build_sinks
from flows.sources import build_protocol, feed_urls

log = logging.getLogger("volcast")

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "binance" / "hftbacktest"
DEMO_CHAIN = Path(__file__).resolve().parent.parent / "data" / "deribit" / "schepal_options_data.csv"
# The bundled chain is from 2020, the books from 2024: the chain is its own underlying.
DEMO_CHAIN_UNDERLYING = "BTC2020"


def demo_recordings() -> list[Path]:
    """The bundled real recordings: Binance spot and USD-M BTC/ETH, 2024-08-08/09."""
    files = sorted(DATA_DIR.glob("*/*.gz"))
    if not files:
        raise FileNotFoundError(f"bundled recordings missing under {DATA_DIR}")
    return files


def _sinks(args: argparse.Namespace, cfg: AppConfig | None = None) -> list:
    """Sinks from the config (``sinks``, ``out``), then ``--sink URL``s and ``--out FILE``.

    ``--out FILE`` is shorthand for a file sink. Unless ``--quiet``, records are also
    printed on stdout (human lines, or JSON with ``--json``); a ``stdout`` sink listed
    by URL prints JSON and replaces that default.
    """
    wanted: list[str | SinkConfig] = list(cfg.sinks) if cfg is not None else []
    if cfg is not None and cfg.out:
        wanted.append(FileSinkConfig(path=cfg.out))
    wanted += list(getattr(args, "sink", None) or [])
    if args.out:
        wanted.append(FileSinkConfig(path=args.out))
    configs = parse_sink_urls(wanted)
    listed_stdout = any(isinstance(c, StdoutSinkConfig) for c in configs)
    if args.quiet:
        configs = [c for c in configs if not isinstance(c, StdoutSinkConfig)]
    elif not listed_stdout:
        configs.append(StdoutSinkConfig())
    render = None if args.json or listed_stdout else human_line
    return build_sinks(configs, render=render)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config) if args.config else default_live_config()
    cfg = msgspec.structs.replace(
        cfg, metrics_port=args.metrics_port if args.metrics_port is not None else cfg.metrics_port,
        metrics_host=args.metrics_host,
        model_checkpoint=args.checkpoint or cfg.model_checkpoint,
    )
    run_daemon(cfg, _sinks(args, cfg), duration_s=args.duration)
    return 0


class ReplayThread:
    """A replay server on its own event loop in a background thread."""

    def __init__(self, paths: list[Path], speed: float, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ReplayServer([str(p) for p in paths], host=host, port=port, speed=speed)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="replay-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._server.start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._server.close())

    def start(self) -> int:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._server.port

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)


def demo_config(port: int, args: argparse.Namespace, chain_port: int | None = None) -> AppConfig:
    base = f"127.0.0.1:{port}"
    chain = () if chain_port is None else (
        # The recording holds tickers only: no DVOL, price index or instrument.state to ask for.
        DeribitFeed(currencies=("BTC",), kinds=("option",), ws_url=f"ws://127.0.0.1:{chain_port}",
                    underlying_names={"BTC": DEMO_CHAIN_UNDERLYING}, dvol=False, price_index=False,
                    instrument_state=False),
    )
    return AppConfig(
        feeds=(
            FeedConfig(market="spot", symbols=("BTCUSDT", "ETHUSDT"),
                       ws_url=f"ws://{base}/spot", rest_url=f"http://{base}/spot"),
            FeedConfig(market="usdm", symbols=("BTCUSDT", "ETHUSDT"), depth_stream="depth@0ms",
                       trade_stream="trade", ws_url=f"ws://{base}/usdm", rest_url=f"http://{base}/usdm"),
            *chain,
        ),
        # The bundled chain was polled one option at a time over 161 s: its quotes stay usable 300 s.
        surface_stale_s=300.0,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        model_checkpoint=getattr(args, "checkpoint", None) or "default",
    )


def demo(args: argparse.Namespace) -> int:
    sinks = _sinks(args)  # bad sink URLs are refused before anything starts
    replay = ReplayThread(demo_recordings(), speed=args.speed)
    # A second server: the chain's clock (2020) is not the books' (2024).
    chain_replay = ReplayThread([DEMO_CHAIN], speed=args.speed)
    port, chain_port = replay.start(), chain_replay.start()
    log.info("replay servers on 127.0.0.1:%d (Binance) and :%d (Deribit chain) at speed %g; Ctrl-C stops",
             port, chain_port, args.speed)
    try:
        run_daemon(demo_config(port, args, chain_port), sinks, duration_s=args.duration)
    finally:
        replay.stop()
        chain_replay.stop()
    return 0


def replay_server(args: argparse.Namespace) -> int:
    replay = ReplayThread([Path(p) for p in args.paths], speed=args.speed, host=args.host, port=args.port)
    port = replay.start()
    print(f"replay server listening on ws://{args.host}:{port}", flush=True)
    try:
        threading.Event().wait()
    finally:
        replay.stop()
    return 0


def _feed_for(args: argparse.Namespace, ws_url: str | None, rest_url: str | None) -> FeedConfig:
    return FeedConfig(
        market=args.market,
        symbols=tuple(s.strip() for s in args.symbols.split(",") if s.strip()),
        ws_url=ws_url,
        rest_url=rest_url,
        depth_stream=args.depth_stream,
        trade_stream=args.trade_stream,
    )


def _ws_url(url: str, command: str) -> str:
    """``url`` if it is a websocket URL, else one clear error naming the command."""
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("ws", "wss") or not parts.hostname or not port_ok:
        raise ConfigError(f"{command}: {url!r} is not a websocket URL (ws://HOST:PORT/PATH or wss://...)")
    return url


def _chain_feed(venue: str, url: str | None, track_mempool: bool, url_flag: str, command: str) -> AnyFeed | None:
    """The Ethereum node or mempool.space feed of ``record``/``tap``; None for an exchange venue."""
    if venue == "ethereum":
        if url is None:
            raise ConfigError(f"{command} needs {url_flag} ws://HOST:PORT: your node's websocket "
                              "(public endpoints need a key)")
        return EthereumFeed(ws_url=url)
    if venue == "bitcoin":
        return BitcoinFeed(track_mempool=track_mempool, **({"ws_url": url} if url else {}))
    return None


def _record_feed(args: argparse.Namespace) -> AnyFeed:
    """The feed ``volcast record`` captures, checked like a config's."""
    command = f"record --venue {args.venue}"
    ws_url = _ws_url(args.ws_url, command) if args.ws_url else None
    chain = _chain_feed(args.venue, ws_url, args.track_mempool, "--ws-url", command)
    if chain is not None:
        return chain
    if not args.symbols:
        raise ConfigError("record --venue binance needs --symbols, e.g. btcusdt,ethusdt")
    return _feed_for(args, ws_url, args.rest_url)


def record(args: argparse.Namespace) -> int:
    feed = _record_feed(args)
    proto = build_protocol(feed, book_view_depth=None)
    # A chain's node or mempool.space has one endpoint and no symbols: its underlying names it.
    market, symbols = (feed.market, list(feed.symbols)) if isinstance(feed, FeedConfig) else ("all", [feed.underlying])
    with RecordingWriter(
        Path(args.out),
        venue=feed.name,
        market=market,
        symbols=symbols,
        rotate_bytes=int(args.rotate_mb * 1e6),
        rotate_seconds=args.rotate_minutes * 60,
    ) as writer:
        asyncio.run(_session(proto, feed, on_frame=writer.write, duration=args.duration))
    return 0


def _tap_feed(args: argparse.Namespace) -> AnyFeed:
    """The feed ``volcast tap VENUE`` reads, checked like a config's."""
    url = _ws_url(args.url, f"tap {args.venue}") if args.url else None
    if args.venue == "deribit":
        return DeribitFeed(currencies=_split(args.currencies), kinds=_split(args.kinds), ws_url=url)
    chain = _chain_feed(args.venue, url, args.track_mempool, "--url", f"tap {args.venue}")
    if chain is not None:
        return chain
    rest = args.rest_url or (url.replace("ws://", "http://").replace("wss://", "https://") if url else None)
    return _feed_for(args, url, rest)


def _split(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def tap(args: argparse.Namespace) -> int:
    try:
        feed = _tap_feed(args)
    except msgspec.ValidationError as exc:  # a field a feed's own checks refuse
        raise ConfigError(f"tap {args.venue}: {exc}") from None
    proto = build_protocol(feed, book_view_depth=None)
    remaining = [args.count]
    out = sys.stdout

    async def on_events(events: list) -> None:
        for ev in events:
            out.write(encode_event(ev).decode() if args.json else repr(ev))
            out.write("\n")
            if remaining[0] is not None:
                remaining[0] -= 1
                if remaining[0] <= 0:
                    raise _Enough
        out.flush()

    try:
        # A check, not a daemon: the first failure to connect (or a drop) is the answer.
        asyncio.run(_session(proto, feed, on_events=on_events, max_reconnects=0))
    except _Enough:
        out.flush()
    return 0


class _Enough(Exception):
    """``tap --count N`` has printed N events."""


async def _session(proto: Any, feed: AnyFeed, *, on_events=None, on_frame=None, duration=None,
                   max_reconnects: int | None = None) -> None:
    stop = asyncio.Event()
    if duration is not None:
        asyncio.get_running_loop().call_later(duration, stop.set)

    async def ignore(_events: list) -> None:
        return None

    ws_url, rest_base = feed_urls(feed, proto)
    await run_session(
        proto,
        ws_url=ws_url,
        rest_base=rest_base,
        on_events=on_events or ignore,
        on_frame=on_frame,
        stop=stop,
        max_reconnects=max_reconnects,
    )


def inspect(args: argparse.Namespace) -> int:
    report = inspect_mod.inspect_files([Path(f) for f in args.files], venue=args.venue)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(inspect_mod.render_text(report))
    return 0


def surface(args: argparse.Namespace) -> int:
    """Fit one chain: a Deribit ticker CSV, a prices-only CSV, or a recording of ticker messages."""
    from connectors.chains import ChainFormatError, quotes_from_tickers, read_chain
    from connectors.record import RecordingFormatError
    from model.surface import fit_surface, plot, render_text, report_fit

    path = Path(args.file)
    try:
        chain = read_chain(path)
        quotes, now_ns, fmt, notes = chain.quotes, chain.now_ns, chain.format, chain.notes
    except ChainFormatError as csv_error:
        try:
            tickers = inspect_mod.recorded_option_tickers([path])
        except RecordingFormatError:
            raise csv_error from None
        quotes = quotes_from_tickers(tickers)
        now_ns = max(q.ts_ns for q in quotes)
        fmt, notes = "recording", [f"{len(quotes)} options from the last ticker of each in the recording"]
    fit = fit_surface(quotes, now_ns)
    rep = report_fit(fit, n_input=len(quotes)) | {"file": str(path), "format": fmt, "notes": notes}
    if args.plot:
        plot(fit, args.plot, title=path.name)
    print(json.dumps(rep, indent=2) if args.json else render_text(rep))
    return 0


def train(args: argparse.Namespace) -> int:
    from model.nn.train import train as train_model

    try:
        summary = train_model([Path(p) for p in args.data], Path(args.out), seed=args.seed, progress=not args.json)
    except ValueError as exc:  # the model's input checks: bar files, sizes, checkpoint
        raise DataError(str(exc)) from None
    print(json.dumps(summary, indent=2, default=str) if args.json else f"checkpoint written to {args.out}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from flows.mempool_input import mempool_on_bars
    from model.bars import read_bars
    from model.evaluate import evaluate as evaluate_bars

    if not 0.0 < args.train_fraction < 1.0:
        raise DataError(f"--train-fraction must be between 0 and 1, got {args.train_fraction}")
    try:
        mempool = None
        if args.mempool:
            bars = read_bars(Path(args.bars))
            mempool = mempool_on_bars(args.mempool, bars.ts_ns, bars.bar_ns)
        report = evaluate_bars(
            Path(args.bars), checkpoint=args.checkpoint, train_fraction=args.train_fraction,
            plot_dir=args.plot, seed=args.seed, progress=not args.json, mempool=mempool,
        )
    except ValueError as exc:  # the model's input checks: bar files, sizes, checkpoint, mempool coverage
        raise DataError(str(exc)) from None
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for model, scores in report["models"].items():
            q = "  ".join(f"{h} {v:.4f}" if v is not None else f"{h} -" for h, v in scores["qlike"].items())
            print(f"{model:<16} QLIKE  {q}")
        dm = "  ".join(f"{h} p={v['p']:.3f}" for h, v in report["dm_vs_har"].items())
        print(f"attention vs har Diebold-Mariano: {dm}")
        if "mempool_ablation" in report:
            print(_ablation_line(report["mempool_ablation"]))
    return 0


def _ablation_line(block: dict[str, Any]) -> str:
    """One line: per horizon QLIKE without -> with the mempool, and the DM p-value, on the covered origins."""
    cells = "  ".join(
        f"{h} {block['qlike']['har_x'][h]:.4f}->{block['qlike']['har_x_mempool'][h]:.4f} "
        f"({block['qlike_gain'][h]:+.1%} gain, p={block['dm'][h]['p']:.3f})"
        for h in block["qlike"]["har_x"]
    )
    share = block["coverage"]["share"]
    return f"mempool ablation (har_x -> har_x_mempool QLIKE, {block['n']} origins, {share:.0%} covered): {cells}"


def bench(args: argparse.Namespace) -> int:
    from flows import bench as bench_mod

    results = bench_mod.run_all(quick=args.quick)
    print(json.dumps(results, indent=2) if args.json else bench_mod.render_text(results))
    return 0
