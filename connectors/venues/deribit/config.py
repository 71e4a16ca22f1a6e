"""What a Deribit connector subscribes, as one frozen, checkable record.

A flow can embed :class:`DeribitConfig` in its own msgspec configuration (it forbids
unknown fields) and build one core per shard with
``DeribitProtocol(config, shard=i)``.

>>> cfg = DeribitConfig(currencies=["btc"], kinds=["perpetual"], shards=2).checked()
>>> cfg.currencies, cfg.kinds, cfg.listing_keys(), cfg.currency_channels()
(('BTC',), ('perpetual',), [('BTC', 'future')], \
['deribit_volatility_index.btc_usd', 'deribit_price_index.btc_usd', 'instrument.state.future.BTC'])
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from connectors.errors import ConfigError

KINDS = ("option", "future", "perpetual")
OPTION_CHANNELS = ("ticker", "book", "trades")
FUTURE_CHANNELS = ("book", "trades")
INTERVALS = ("100ms", "raw", "agg2")  # "raw" needs an authorized session today


class DeribitConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Parameters of :class:`~connectors.venues.deribit.protocol.DeribitProtocol`.

    Sequences may be given as lists; :meth:`checked` returns the normalized copy
    (upper-case currencies, tuples, duplicates dropped) or raises ``ConfigError``.
    """

    # Deribit currencies whose instruments to list (BTC, ETH; USDC for linear ones).
    currencies: Sequence[str] = ("BTC", "ETH")
    # Kinds kept from the listings: option, future (dated), perpetual.
    kinds: Sequence[str] = KINDS
    # If set, only these instrument names (still listed first, for their metadata);
    # one the listings lack is reported as FeedStatus("error").
    instruments: Sequence[str] | None = None
    # Per-option channels: ticker (IV, greeks, best bid/ask), book, trades.
    option_channels: Sequence[str] = ("ticker",)
    # Per-future/perpetual channels: book, trades.
    future_channels: Sequence[str] = ("book", "trades")
    # 100ms (what an unauthenticated session may have), raw, agg2.
    interval: str = "100ms"
    # Price indices of the currency channels; default <currency>_usd.
    index_names: Sequence[str] | None = None
    # deribit_volatility_index / deribit_price_index / markprice.options of each index
    # (shard 0 only).
    dvol: bool = True
    price_index: bool = True
    markprice: bool = False
    # instrument.state.{option|future}.{currency}: listings and expiries (every shard).
    instrument_state: bool = True
    # public/set_heartbeat interval (Deribit's minimum is 10); no frame for twice this
    # long means the connection is dead.
    heartbeat_s: int = 30
    # This core's part: the instruments with shard_of(name, shards) == shard.
    shard: int = 0
    shards: int = 1
    # If N, a BookSnapshot(depth=N) of the validated book after every applied change.
    book_view_depth: int | None = None
    # A BookDelta per applied change.
    emit_deltas: bool = True
    # Channels per public/subscribe call.
    max_channels_per_request: int = 500
    # public/subscribe + unsubscribe pacing (Deribit: ~3.3/s sustained, a burst of 10).
    subscribe_burst: int = 10
    subscribe_per_s: float = 3.0
    # public/get_instruments pacing (Deribit: 1/s sustained).
    instruments_per_s: float = 1.0
    # Least wait before reconnecting after too_many_requests (10028); doubles with
    # each consecutive one, capped at 300 s.
    rate_limit_backoff_s: float = 10.0

    def checked(self) -> DeribitConfig:
        """A normalized copy; ``ConfigError`` naming the first rule broken."""
        curs = tuple(c.upper() for c in self.currencies)
        if not curs or len(set(curs)) != len(curs) or not all(c.replace("_", "").isalnum() for c in curs):
            raise ConfigError(f"currencies must be distinct Deribit currencies (BTC, ETH, ...), got {curs}")
        kinds = tuple(dict.fromkeys(self.kinds))
        if not kinds or not set(kinds) <= set(KINDS):
            raise ConfigError(f"kinds must be a non-empty subset of {KINDS}, got {kinds}")
        opt = tuple(dict.fromkeys(self.option_channels))
        if not set(opt) <= set(OPTION_CHANNELS):
            raise ConfigError(f"option_channels must be a subset of {OPTION_CHANNELS}, got {opt}")
        fut = tuple(dict.fromkeys(self.future_channels))
        if not set(fut) <= set(FUTURE_CHANNELS):
            raise ConfigError(f"future_channels must be a subset of {FUTURE_CHANNELS}, got {fut}")
        if self.interval not in INTERVALS:
            raise ConfigError(f"interval must be one of {INTERVALS}, got {self.interval!r}")
        if not isinstance(self.heartbeat_s, int) or self.heartbeat_s < 1:
            raise ConfigError(f"heartbeat_s must be an int >= 1 (Deribit's minimum is 10), "
                              f"got {self.heartbeat_s!r}")
        if self.shards < 1 or not 0 <= self.shard < self.shards:
            raise ConfigError(f"need shards >= 1 and 0 <= shard < shards, "
                              f"got shard={self.shard}, shards={self.shards}")
        if self.book_view_depth is not None and self.book_view_depth < 1:
            raise ConfigError(f"book_view_depth must be >= 1 or None, got {self.book_view_depth}")
        if self.max_channels_per_request < 1 or self.subscribe_burst < 1:
            raise ConfigError("max_channels_per_request and subscribe_burst must be >= 1")
        if self.subscribe_per_s <= 0 or self.instruments_per_s <= 0 or self.rate_limit_backoff_s < 0:
            raise ConfigError("subscribe_per_s and instruments_per_s must be > 0, "
                              "rate_limit_backoff_s >= 0")
        names = None if self.instruments is None else tuple(dict.fromkeys(self.instruments))
        if names is not None and not names:
            raise ConfigError("instruments, when given, must name at least one instrument")
        indices = (tuple(f"{c.lower()}_usd" for c in curs) if self.index_names is None
                   else tuple(dict.fromkeys(self.index_names)))
        return msgspec.structs.replace(
            self, currencies=curs, kinds=kinds, option_channels=opt, future_channels=fut,
            instruments=names, index_names=indices)

    def listing_keys(self) -> list[tuple[str, str]]:
        """``(currency, kind)`` of each ``public/get_instruments`` call (kind ``option`` or
        ``future``, which also lists perpetuals)."""
        kinds = []
        if "option" in self.kinds:
            kinds.append("option")
        if "future" in self.kinds or "perpetual" in self.kinds:
            kinds.append("future")
        return [(c, k) for c in self.currencies for k in kinds]

    def currency_channels(self) -> list[str]:
        """Channels not tied to one instrument, in subscription order."""
        out: list[str] = []
        if self.shard == 0:
            for idx in self.index_names or ():
                if self.dvol:
                    out.append(f"deribit_volatility_index.{idx}")
                if self.price_index:
                    out.append(f"deribit_price_index.{idx}")
                if self.markprice:
                    out.append(f"markprice.options.{idx}")
        if self.instrument_state:
            out += [f"instrument.state.{k}.{c}" for c, k in self.listing_keys()]
        return out

    def channels_of(self, name: str, kind: str) -> list[str]:
        """The channels of one instrument of ``kind``."""
        chans = self.option_channels if kind == "option" else self.future_channels
        return [f"{c}.{name}.{self.interval}" for c in chans]
