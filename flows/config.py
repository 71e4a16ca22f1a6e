"""Runtime configuration: a TOML file validated into frozen msgspec Structs.

>>> cfg = load_config_text('''
... [[feeds]]
... market = "usdm"
... symbols = ["btcusdt"]
... ''')
>>> cfg.feeds[0].symbols, cfg.cadence_s
(('BTCUSDT',), 1.0)
>>> cfg.underlyings()
{'BTC': ('binance_usdm:BTCUSDT',)}
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from flows.sink_urls import SinkUrlError, parse_sink_urls

Market = Literal["spot", "usdm", "coinm"]
QueuePolicy = Literal["block", "drop_oldest"]

_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "USD", "BTC", "ETH")
_VENUE_OF_MARKET = {"spot": "binance", "usdm": "binance_usdm", "coinm": "binance_coinm"}


class ConfigError(ValueError):
    """A configuration that volcast cannot run with; the message names the problem."""


class FeedConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One websocket connection: a venue, a market and its symbols."""

    venue: Literal["binance"] = "binance"
    market: Market = "spot"
    symbols: tuple[str, ...]
    # None: the venue's public endpoint. The demo points these at the replay server.
    ws_url: str | None = None
    rest_url: str | None = None
    depth_stream: Literal["depth@100ms", "depth@0ms", "depth"] = "depth@100ms"
    # None: the market's default (spot trade, futures aggTrade); USD-M serves trade too.
    trade_stream: Literal["trade", "aggTrade"] | None = None

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ConfigError(f"feed {self.venue}/{self.market} lists no symbols")
        msgspec.structs.force_setattr(self, "symbols", tuple(s.upper() for s in self.symbols))

    @property
    def name(self) -> str:
        """The feed's name in metrics and logs, e.g. ``binance_usdm``."""
        return _VENUE_OF_MARKET[self.market]

    def instrument_ids(self) -> list[str]:
        return [f"{self.name}:{s}" for s in self.symbols]


class AppConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The daemon's configuration (``volcast run --config volcast.toml``)."""

    feeds: tuple[FeedConfig, ...]
    cadence_s: float = 1.0  # feature rows and forecast records per underlying
    book_depth: int = 5  # levels of the validated book the features read
    queue_size: int = 10_000  # per feed, between the websocket thread and Bytewax
    queue_policy: QueuePolicy = "block"
    # underlying -> instrument ids, first is the primary whose RV is forecast;
    # empty: derived from the symbols (BTCUSDT -> BTC), feeds in config order.
    underlying_map: dict[str, tuple[str, ...]] = {}
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    out: str | None = None  # JSONL file sink
    stdout: bool = False  # print each record on stdout
    # Sink URLs (docs/delivery.md): file:///x.jsonl, stdout, ws://, redis://, nats://, kafka://
    sinks: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.feeds:
            raise ConfigError("no [[feeds]] configured")
        if not self.cadence_s > 0:
            raise ConfigError(f"cadence_s must be positive, got {self.cadence_s}")
        if not 1 <= self.book_depth <= 32:
            raise ConfigError(f"book_depth must be within 1..32, got {self.book_depth}")
        if self.queue_size < 1:
            raise ConfigError(f"queue_size must be at least 1, got {self.queue_size}")
        names = [f.name for f in self.feeds]
        for name in set(names):
            if names.count(name) > 1:
                raise ConfigError(f"two feeds for {name}; list all its symbols in one feed")
        try:
            parse_sink_urls(self.sinks)
        except SinkUrlError as exc:
            raise ConfigError(f"sinks: {exc}") from None
        known = {i for f in self.feeds for i in f.instrument_ids()}
        for und, ids in self.underlying_map.items():
            for iid in ids:
                if iid not in known:
                    raise ConfigError(f"underlying {und} names {iid}, which no feed subscribes")

    @property
    def cadence_ns(self) -> int:
        return int(round(self.cadence_s * 1e9))

    def underlyings(self) -> dict[str, tuple[str, ...]]:
        """Underlying -> instrument ids (primary first)."""
        if self.underlying_map:
            return dict(self.underlying_map)
        out: dict[str, list[str]] = {}
        for feed in self.feeds:
            for sym, iid in zip(feed.symbols, feed.instrument_ids()):
                out.setdefault(underlying_of(sym), []).append(iid)
        return {k: tuple(v) for k, v in out.items()}


def underlying_of(symbol: str) -> str:
    """Base asset of a Binance symbol: ``BTCUSDT`` -> ``BTC``, ``ETHUSD_PERP`` -> ``ETH``."""
    sym = symbol.upper().split("_")[0]
    for quote in _QUOTES:
        if sym.endswith(quote) and len(sym) > len(quote):
            return sym[: -len(quote)]
    return sym


def load_config_text(text: str, source: str = "<config>") -> AppConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        return msgspec.convert(raw, AppConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | Path) -> AppConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    return load_config_text(text, str(p))


def default_live_config() -> AppConfig:
    """Binance spot and USD-M BTC/ETH on the public endpoints; no keys needed."""
    return AppConfig(
        feeds=(
            FeedConfig(market="spot", symbols=("BTCUSDT", "ETHUSDT")),
            FeedConfig(market="usdm", symbols=("BTCUSDT", "ETHUSDT"), depth_stream="depth@0ms"),
        )
    )
