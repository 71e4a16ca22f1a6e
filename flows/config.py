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


class FeedConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="binance", tag_field="venue"
):
    """One Binance websocket connection: a market and its symbols (``venue`` may be left out)."""

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
        """The book instruments, primary candidates of their underlyings."""
        return [f"{self.name}:{s}" for s in self.symbols]

    def underlying_ids(self) -> list[tuple[str, str]]:
        """``(underlying, instrument id)`` of each book this feed keeps."""
        return [(underlying_of(s), iid) for s, iid in zip(self.symbols, self.instrument_ids())]


class DeribitFeed(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="deribit", tag_field="venue"
):
    """Deribit: the option chain (tickers -> the live surface), DVOL, and perpetual books.

    Each currency's options feed the surface of the underlying of the same name
    (BTC -> BTC), and its perpetual ``deribit:BTC-PERPETUAL`` is one of that
    underlying's book instruments. A large chain is sharded over ``shards`` sockets.
    """

    currencies: tuple[str, ...] = ("BTC",)
    kinds: tuple[Literal["option", "future", "perpetual"], ...] = ("option", "perpetual")
    shards: int = 1
    ws_url: str | None = None
    rest_url: str | None = None
    interval: Literal["100ms", "raw", "agg2"] = "100ms"
    heartbeat_s: int = 30
    # Currency channels: Deribit's volatility index (DVOL, a feature input), the price
    # index, and instrument.state (listings and expiries as they happen).
    dvol: bool = True
    price_index: bool = True
    instrument_state: bool = True
    # Currency -> underlying its chain and perpetual join; default the currency (BTC -> BTC).
    underlying_names: dict[str, str] = {}

    def __post_init__(self) -> None:
        if not self.currencies:
            raise ConfigError("feed deribit lists no currencies")
        msgspec.structs.force_setattr(self, "currencies", tuple(c.upper() for c in self.currencies))
        names = {c.upper(): u.upper() for c, u in self.underlying_names.items()}
        for cur in names:
            if cur not in self.currencies:
                raise ConfigError(f"feed deribit: underlying_names names {cur}, which is not in currencies")
        msgspec.structs.force_setattr(self, "underlying_names", names)
        if not self.kinds:
            raise ConfigError("feed deribit lists no kinds")
        if not 1 <= self.shards <= 16:
            raise ConfigError(f"feed deribit: shards must be within 1..16, got {self.shards}")

    @property
    def name(self) -> str:
        return "deribit"

    def part_names(self) -> list[str]:
        """One source partition (socket) per shard: ``deribit``, or ``deribit_0``, ``deribit_1``, ..."""
        return [self.name] if self.shards == 1 else [f"{self.name}_{i}" for i in range(self.shards)]

    def underlying(self, currency: str) -> str:
        """The underlying a currency's instruments join."""
        return self.underlying_names.get(currency, currency)

    def instrument_ids(self) -> list[str]:
        return [f"deribit:{c}-PERPETUAL" for c in self.currencies] if "perpetual" in self.kinds else []

    def underlying_ids(self) -> list[tuple[str, str]]:
        return [(self.underlying(c), f"deribit:{c}-PERPETUAL") for c in self.currencies] if "perpetual" in self.kinds else []


class _MempoolFeed(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A chain's mempool feed: no books; its features join one underlying's records."""

    underlying: str  # whose forecast records carry the mempool features

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "underlying", self.underlying.upper())

    @property
    def name(self) -> str:
        return self.__struct_config__.tag  # the venue: ethereum, bitcoin

    def instrument_ids(self) -> list[str]:
        return []

    def underlying_ids(self) -> list[tuple[str, str]]:
        return []


class EthereumFeed(_MempoolFeed, kw_only=True, tag="ethereum", tag_field="venue"):
    """An Ethereum node's websocket (``eth_subscribe`` pending transactions and heads).

    No default: every public endpoint needs a key, so the node is yours to name.
    """

    ws_url: str
    underlying: str = "ETH"
    full_tx: bool = True  # False: the node sends hashes; transactions are looked up


class BitcoinFeed(_MempoolFeed, kw_only=True, tag="bitcoin", tag_field="venue"):
    """A mempool.space websocket (projected blocks, mempool stats, heads)."""

    ws_url: str = "wss://mempool.space/api/v1/ws"  # public, no key; or your own mempool instance
    underlying: str = "BTC"
    track_mempool: bool = False  # also track-mempool: per-transaction adds and removals


AnyFeed = FeedConfig | DeribitFeed | EthereumFeed | BitcoinFeed
VENUES = ("binance", "deribit", "ethereum", "bitcoin")


class AppConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The daemon's configuration (``volcast run --config volcast.toml``)."""

    feeds: tuple[AnyFeed, ...]
    cadence_s: float = 1.0  # feature rows and forecast records per underlying
    book_depth: int = 5  # levels of the validated book the features read
    queue_size: int = 10_000  # per feed, between the websocket thread and Bytewax
    queue_policy: QueuePolicy = "block"
    # The forecast step takes rows in batches: at most this many, waiting at most this long,
    # so the attention model runs once per batch for every window it completed.
    batch_timeout_ms: float = 10.0
    batch_max_items: int = 256
    # The attention model: a checkpoint path, "default" (the shipped one) or "none" (baselines only).
    model_checkpoint: str = "default"
    # How often the serving checkpoint's file is checked for a change (hot reload).
    model_reload_s: float = 30.0
    # Option chains: the surface is refitted at most this often (warm-started), from quotes
    # no older than surface_stale_s (exchange time).
    surface_refit_s: float = 5.0
    surface_stale_s: float = 60.0
    # Mempool features older than this (receive time) are reported as absent.
    mempool_stale_s: float = 30.0
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
        if not 0 < self.batch_timeout_ms <= 1000:
            raise ConfigError(f"batch_timeout_ms must be within (0, 1000], got {self.batch_timeout_ms}")
        if self.batch_max_items < 1:
            raise ConfigError(f"batch_max_items must be at least 1, got {self.batch_max_items}")
        for name in ("model_reload_s", "surface_refit_s", "surface_stale_s", "mempool_stale_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
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
        if not known and not self.option_underlyings():
            raise ConfigError(
                "no feed keeps an order book (binance symbols or deribit perpetuals) or an option chain: "
                "nothing to forecast"
            )
        forecast = self.underlyings()
        for chain, und in self.mempool_underlying().items():
            if und not in forecast:
                raise ConfigError(
                    f"feed {chain} feeds underlying {und}, which has no order-book feed to forecast "
                    f"(forecast: {', '.join(sorted(forecast))})"
                )

    def mempool_underlying(self) -> dict[str, str]:
        """Chain (``ethereum``, ``bitcoin``) -> the underlying its features join."""
        return {f.name: f.underlying for f in self.feeds if isinstance(f, (EthereumFeed, BitcoinFeed))}

    def option_underlyings(self) -> dict[str, str]:
        """Deribit currency -> the underlying whose live surface its option chain feeds."""
        return {
            c: f.underlying(c) for f in self.feeds if isinstance(f, DeribitFeed) and "option" in f.kinds
            for c in f.currencies
        }

    @property
    def cadence_ns(self) -> int:
        return int(round(self.cadence_s * 1e9))

    def underlyings(self) -> dict[str, tuple[str, ...]]:
        """Underlying -> instrument ids (primary first)."""
        if self.underlying_map:
            return dict(self.underlying_map)
        out: dict[str, list[str]] = {}
        for feed in self.feeds:
            for und, iid in feed.underlying_ids():
                out.setdefault(und, []).append(iid)
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
    for i, feed in enumerate(raw.get("feeds", []) if isinstance(raw.get("feeds"), list) else []):
        if isinstance(feed, dict):
            venue = feed.setdefault("venue", "binance")  # the first venue needs no tag: old configs stay valid
            if venue not in VENUES:
                raise ConfigError(f"{source}: feeds[{i}]: unknown venue {venue!r} (known: {', '.join(VENUES)})")
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
