"""Which Deribit instruments a core handles, what the listings say of them, and when
they expire.

Sans-I/O and clock-free: expiries are checked against the *exchange's* time (the
latest ``timestamp`` or ``usOut`` the core has seen), so a recording from 2021 replayed
today expires its instruments when the recording says, not all at once.

>>> chain = Chain(kinds=("option",), allow=None, shard=0, shards=1)
>>> infos = parse.INSTRUMENTS.decode(b'[{"instrument_name":"BTC-24SEP21-8000-P","kind":"option",'
...     b'"base_currency":"BTC","quote_currency":"BTC","expiration_timestamp":1632470400000,'
...     b'"strike":8000.0,"option_type":"put","contract_size":1.0}]')
>>> events, new, gone = chain.listing(("BTC", "option"), infos, ts=1, ts_exchange_ns=None, now_ms=0)
>>> new, chain.due(1632470400000), chain.retire("BTC-24SEP21-8000-P", 2, 1632470400000).is_active
(['BTC-24SEP21-8000-P'], ['BTC-24SEP21-8000-P'], False)
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

import msgspec

from connectors.events import Instrument, SizeUnit
from connectors.venues.deribit import parse
from connectors.venues.deribit.parse import MS, InstrumentKind, shard_of
from connectors.venues.deribit.schemas import InstrumentInfo

ListingKey = tuple[str, "str | None"]  # (currency, kind asked; None: every kind)


class Chain:
    """The instruments one core handles.

    Parameters
    ----------
    kinds
        ``option``, ``future`` (dated), ``perpetual``: the kinds kept.
    allow
        If given, only these instrument names.
    shard, shards
        Only the names with ``shard_of(name, shards) == shard``.
    """

    def __init__(self, kinds: Iterable[str], allow: frozenset[str] | None, shard: int,
                 shards: int) -> None:
        self.kinds = tuple(kinds)
        self.allow = allow
        self.shard, self.shards = shard, shards
        self.meta: dict[str, Instrument] = {}  # listed, kept, not expired
        self.expired: set[str] = set()
        self._listed: dict[ListingKey, set[str]] = {}  # per listing: what it held last time
        self._expiries: list[tuple[int, str]] = []  # heap of (expiry ms, name)

    def owns(self, name: str) -> bool:
        """Whether ``name`` is in this core's selection and shard."""
        if self.allow is not None and name not in self.allow:
            return False
        return self.shards == 1 or shard_of(name, self.shards) == self.shard

    def wants(self, name: str) -> bool:
        """Whether a new listing of ``name`` (instrument.state ``created``) concerns us."""
        if name in self.meta or name in self.expired or not self.owns(name):
            return False
        info = parse.parse_name(name)
        return info is not None and info.kind in self.kinds

    def kind_of(self, name: str) -> tuple[InstrumentKind, SizeUnit] | None:
        """Kind and amount unit of ``name``: from its listing, else from its name (then its
        expiry is tracked too); None for names this connector does not trade."""
        meta = self.meta.get(name)
        if meta is not None and meta.instrument_kind != "spot":
            kind = meta.instrument_kind
            linear = meta.quote not in ("USD", meta.base)
            return kind, parse.size_unit_of(kind, linear, meta.contract_size)
        info = parse.parse_name(name)
        if info is None:
            return None
        if info.expiry_ms is not None and name not in self.expired:
            heapq.heappush(self._expiries, (info.expiry_ms, name))
        return info.kind, parse.size_unit_of(info.kind, info.linear)

    def listing(self, key: ListingKey, infos: list[InstrumentInfo], ts: int,
                ts_exchange_ns: int | None, now_ms: int) -> tuple[list[Instrument], list[str], list[str]]:
        """A ``get_instruments`` answer: ``(Instrument events, new names, names gone)``.

        Kept: active instruments of our kinds, selection and shard, not expired at
        ``now_ms`` (exchange time; 0 when unknown). "Gone" are the names the previous
        answer to the same request held and this one does not (delisted).
        """
        kind_asked = key[1]
        events: list[Instrument] = []
        seen: set[str] = set()
        new: list[str] = []
        for info in infos:
            kind = parse.instrument_kind(info)
            if kind is None or kind not in self.kinds:
                continue
            if kind_asked is not None and info.kind != kind_asked:
                continue
            name = info.instrument_name
            if not info.is_active or name in self.expired or not self.owns(name):
                continue
            exp = info.expiration_timestamp
            if kind != "perpetual" and exp is not None and now_ms and exp <= now_ms:
                continue  # expired before this answer was sent
            seen.add(name)
            ev = parse.instrument(info, ts, ts_exchange_ns)
            if name not in self.meta:
                new.append(name)
                if ev.expiry_ns is not None:
                    heapq.heappush(self._expiries, (ev.expiry_ns // MS, name))
            self.meta[name] = ev
            events.append(ev)
        gone = sorted(n for n in self._listed.get(key, set()) - seen if n in self.meta)
        self._listed[key] = seen
        return events, new, gone

    def next_expiry_ms(self) -> int | None:
        """The earliest expiry tracked (perhaps of an instrument already retired)."""
        return self._expiries[0][0] if self._expiries else None

    def due(self, now_ms: int) -> list[str]:
        """Names whose expiry is at or before ``now_ms`` (exchange time), each once."""
        out = []
        heap = self._expiries
        while heap and heap[0][0] <= now_ms:
            _, name = heapq.heappop(heap)
            if name not in self.expired and name not in out:
                out.append(name)
        return out

    def retire(self, name: str, ts: int, now_ms: int) -> Instrument | None:
        """Mark ``name`` expired; its ``Instrument(is_active=False)`` (None if already
        retired or not an instrument name)."""
        if name in self.expired:
            return None
        meta = self.meta.pop(name, None)
        if meta is None:
            info = parse.parse_name(name)
            if info is None:
                return None
            meta = parse.instrument_from_name(info, name, ts)
        self.expired.add(name)
        ex = now_ms * MS if now_ms else None
        return msgspec.structs.replace(meta, is_active=False, ts_recv_ns=ts, ts_exchange_ns=ex)

    def unlisted(self) -> list[str]:
        """Names asked for (``allow``) that no listing held."""
        if self.allow is None:
            return []
        return sorted(n for n in self.allow
                      if n not in self.meta and n not in self.expired and self.owns(n))
