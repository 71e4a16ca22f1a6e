"""``volcast`` command line: parse arguments, load config, run; kept short on purpose.

Every command has ``--help``; commands that report take ``--json`` and then print one
JSON document on stdout. Logs go to stderr. Bad input gets one clear line on stderr
and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from connectors.inspect import VENUES as inspect_venues
from flows import commands
from flows.errors import UserError

log = logging.getLogger("volcast")


def _add_sink_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sink", action="append", metavar="URL",
                   help="deliver records to this sink; repeat for several: file:///x.jsonl, stdout, "
                        "ws://127.0.0.1:8765, redis://HOST:PORT[/DB], nats://HOST:PORT, kafka://HOST:PORT/TOPIC "
                        "(docs/delivery.md)")
    p.add_argument("--out", metavar="FILE", help="write forecast records to this JSONL file (= --sink file:FILE)")
    p.add_argument("--json", action="store_true", help="print records as JSON lines on stdout")
    p.add_argument("--metrics-port", type=int, metavar="P", help="serve Prometheus /metrics on this port")
    p.add_argument("--metrics-host", default="127.0.0.1", help="bind address for /metrics (default 127.0.0.1)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="PATH",
                   help='attention-model checkpoint; "none" runs the baselines only '
                        "(default: the config's model_checkpoint, else the shipped one)")


def _add_stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth-stream", default="depth@100ms", choices=["depth@100ms", "depth@0ms", "depth"],
                   help="Binance diff-depth stream (default depth@100ms)")
    p.add_argument("--trade-stream", choices=["trade", "aggTrade"],
                   help="default: trade on spot, aggTrade on futures")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="volcast", description="Streaming real-time volatility forecasts for crypto markets."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the live daemon on the public exchange endpoints")
    p.add_argument("--config", metavar="FILE", help="volcast.toml (default: Binance spot + USD-M BTC/ETH)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--quiet", action="store_true", help="print nothing on stdout")
    _add_sink_args(p)
    _add_model_args(p)
    p.set_defaults(func=commands.run)

    p = sub.add_parser("demo", help="the daemon on bundled real recordings via the local replay server")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--speed", type=float, default=10.0, metavar="X",
                   help="replay X times faster than recorded; 0 = as fast as possible (default 10)")
    p.add_argument("--quiet", action="store_true", help="print nothing on stdout")
    _add_sink_args(p)
    _add_model_args(p)
    p.set_defaults(func=commands.demo)

    p = sub.add_parser("record", help="capture raw frames (and REST snapshots) to disk")
    p.add_argument("--venue", required=True, choices=["binance", "ethereum", "bitcoin"],
                   help="binance; ethereum: a node's eth_subscribe feed; bitcoin: mempool.space")
    p.add_argument("--market", default="spot", choices=["spot", "usdm", "coinm"], help="binance")
    p.add_argument("--symbols", help="binance (required): comma-separated, e.g. btcusdt,ethusdt")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--ws-url", help="websocket URL (default: the venue's public endpoint; "
                                    "ethereum: required, your node's, e.g. ws://127.0.0.1:8546)")
    p.add_argument("--rest-url", help="binance: REST base URL (default: the venue's public endpoint)")
    p.add_argument("--track-mempool", action="store_true",
                   help="bitcoin: also every transaction entering the mempool (track-mempool)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    p.add_argument("--rotate-mb", type=float, default=256.0, help="start a new file after this many MB")
    p.add_argument("--rotate-minutes", type=float, default=60.0, help="start a new file after this many minutes")
    _add_stream_args(p)
    p.set_defaults(func=commands.record)

    p = sub.add_parser("replay-server", help="serve recordings on loopback in each venue's own protocol")
    p.add_argument("--from", dest="paths", nargs="+", required=True, metavar="PATH")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="1 = recorded pace, X = X times faster, 0 = as fast as the client reads")
    p.set_defaults(func=commands.replay_server)

    p = sub.add_parser("tap", help="print normalized events from a live or replayed feed, or a node; "
                                   "exits 2 with one line if it cannot connect or the feed drops")
    p.add_argument("venue", choices=["binance", "deribit", "ethereum", "bitcoin"])
    p.add_argument("--market", default="spot", choices=["spot", "usdm", "coinm"], help="binance")
    p.add_argument("--symbols", default="btcusdt", help="binance: comma-separated")
    p.add_argument("--currencies", default="btc", help="deribit: comma-separated")
    p.add_argument("--kinds", default="option,perpetual", help="deribit: option, future, perpetual")
    p.add_argument("--url", help="websocket URL (default: the venue's public endpoint; "
                                 "ethereum: required, your node's, e.g. ws://127.0.0.1:8546)")
    p.add_argument("--rest-url", help="REST base URL (default: same host as --url when given)")
    p.add_argument("--track-mempool", action="store_true",
                   help="bitcoin: also every transaction entering the mempool (track-mempool)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N events")
    p.add_argument("--json", action="store_true", help="one JSON event per line")
    _add_stream_args(p)
    p.set_defaults(func=commands.tap)

    p = sub.add_parser("inspect", help="run the connectors over recordings; integrity report")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--venue", choices=sorted(inspect_venues),
                   help="override venue/market detection")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=commands.inspect)

    p = sub.add_parser("surface", help="fit the arbitrage-free surface to an option chain; fit report")
    p.add_argument("file", metavar="FILE", help="Deribit ticker CSV, prices-only CSV, or a recording of ticker messages")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--plot", metavar="OUT.png", help="draw every expiry's smile and the surface")
    p.set_defaults(func=commands.surface)

    p = sub.add_parser("train", help="train the attention forecaster on real bar CSVs; write a checkpoint")
    p.add_argument("--data", nargs="+", required=True, metavar="FILE", help="OHLCV bar CSVs")
    p.add_argument("--out", required=True, metavar="CKPT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the training summary as one JSON document")
    p.set_defaults(func=commands.train)

    p = sub.add_parser("evaluate", help="score the model against HAR, EWMA and GARCH on bars, rolling origin")
    p.add_argument("--bars", required=True, metavar="FILE")
    p.add_argument("--checkpoint", metavar="CKPT", help="fine-tune from this checkpoint on the training fraction")
    p.add_argument("--train-fraction", type=float, default=0.3,
                   help="the first fraction of the file is the only data any model fits on (default 0.3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--plot", metavar="DIR", help="write forecast-vs-realized and loss-by-regime PNGs")
    p.add_argument("--mempool", nargs="+", metavar="REC",
                   help="mempool recordings of one chain over the bars' period: also score HAR-X with and "
                        "without their features (the mempool ablation)")
    p.set_defaults(func=commands.evaluate)

    p = sub.add_parser("bench", help="the benchmark suite")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    p.set_defaults(func=commands.bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int | None] = args.func
    try:
        return func(args) or 0
    except UserError as exc:
        print(f"volcast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `volcast tap ... | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
