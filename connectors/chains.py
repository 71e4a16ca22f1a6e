"""Option chains from files and from ticker events, as :class:`~connectors.events.OptionQuote` lists.

Pure parsing (no asyncio, no model). Three CSV layouts are recognised from the header:

``deribit_ticker``
    Deribit ``public/ticker`` rows flattened, one option per row (the layout of
    ``schepal/deribit_data_collector`` ``options_data.csv``): ``mark_iv``, ``bid_iv``,
    ``ask_iv`` **in percent** (0 = empty side), ``underlying_price`` (the expiry's
    future or synthetic future), ``timestamp`` in ms, and the instrument from
    ``instrument_name`` or ``strike``/``option_type``/``expiration_timestamp``.
    Coin prices ``best_bid_price``, ``best_ask_price``, ``mark_price`` come along.
``deribit_prices``
    Prices only, one option per row (``HudsonStreet/hs-deribit-crawler``
    ``final_data.csv``): ``bid_price``/``ask_price`` (and ``mark_price`` if present) in
    coin, ``underlying_price``, the instrument from ``instrument_name`` or
    ``strike[_price]``/``[option_]type``/``expiry[_date]``. The fitter inverts IVs.
``deribit_prices_pc``
    The same with a call and a put side by side in one row, columns suffixed ``_c``
    and ``_p`` (``formated_data_pc.csv``); each side becomes its own quote.

Times: ``timestamp``/``creation_timestamp`` in ms; a date-only ``creation_time``
(``MM-DD-YYYY`` or ``YYYY-MM-DD``) is taken as 12:00 UTC of that day, the middle of an
unknown time of day (pass ``now_ns`` to override). Expiry dates are 08:00 UTC, as
Deribit's. The valuation time of a file is the latest quote time.

>>> import io
>>> text = "instrument_name,bid_price,ask_price,underlying_price,creation_time\\n"
>>> text += "BTC-26JUL19-11000-C,0.02,0.025,10738.5,07-16-2019\\n"
>>> chain = parse_chain(io.StringIO(text), name="x.csv")
>>> chain.format, len(chain.quotes), chain.quotes[0].strike, chain.quotes[0].is_call
('deribit_prices', 1, 11000.0, True)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from connectors.errors import ConnectorError
from connectors.events import Instrument, OptionQuote, OptionTicker
from connectors.venues.deribit.parse import parse_name

__all__ = ["Chain", "ChainFormatError", "read_chain", "parse_chain", "quotes_from_tickers", "option_quote"]

_MS = 1_000_000
_EXPIRY_HOUR_UTC = 8  # Deribit options expire at 08:00 UTC
_DATE_ONLY_HOUR_UTC = 12


class ChainFormatError(ConnectorError, ValueError):
    """A chain file this module cannot read; the message is one line naming the file and the fix."""


@dataclass(frozen=True)
class Chain:
    """Quotes of one chain file, the time they are valued at, and how they were read."""

    quotes: list[OptionQuote]
    now_ns: int
    format: str
    n_rows: int
    notes: list[str] = field(default_factory=list)


def _option_terms(name: str) -> tuple[int, float, bool]:
    """``(expiry_ns, strike, is_call)`` of a Deribit option name, read by the connector's :func:`parse_name`.

    >>> _option_terms("BTC-24SEP21-8000-P")
    (1632470400000000000, 8000.0, False)
    """
    info = parse_name(name.strip())
    if info is None or info.kind != "option" or info.expiry_ms is None or info.strike is None:
        raise ValueError(f"not a Deribit option name: {name!r}")
    return info.expiry_ms * _MS, info.strike, info.option_type == "C"


def _to_ns(d: dt.datetime) -> int:
    return int(d.timestamp()) * 1_000_000_000 + d.microsecond * 1000


def _parse_date(text: str, hour: int) -> int:
    text = text.strip()
    for fmt in ("%m-%d-%Y", "%Y-%m-%d", "%m/%d/%Y", "%d%b%y"):
        try:
            d = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return _to_ns(d.replace(hour=hour, tzinfo=dt.timezone.utc))
    raise ValueError(f"unrecognised date {text!r} (expected MM-DD-YYYY or YYYY-MM-DD)")


def _num(text: str | None) -> float | None:
    """A float, or None for an empty cell; raises ValueError on junk."""
    if text is None:
        return None
    text = text.strip()
    if text == "" or text.lower() in ("nan", "none", "null"):
        return None
    x = float(text)
    return x if math.isfinite(x) else None


def _pos(x: float | None) -> float | None:
    return x if x is not None and x > 0 else None


def _first(row: Mapping[str, str], names: Sequence[str]) -> str | None:
    for n in names:
        if n in row and row[n] is not None and row[n].strip() != "":
            return row[n]
    return None


_STRIKE = ("strike", "strike_price")
_TYPE = ("option_type", "type")
_EXPIRY = ("expiration_timestamp", "expiry_date", "expiry", "expiration_date")
_TIME_MS = ("timestamp", "creation_timestamp")
_TIME_DATE = ("creation_time", "date")


def _instrument(row: Mapping[str, str]) -> tuple[int, float, bool]:
    name = _first(row, ("instrument_name",))
    if name is not None:
        return _option_terms(name)
    strike = _num(_first(row, _STRIKE))
    kind = (_first(row, _TYPE) or "").strip().lower()
    exp = _first(row, _EXPIRY)
    if strike is None or kind not in ("call", "put", "c", "p") or exp is None:
        raise ValueError("needs instrument_name or strike, option type and expiry")
    exp = exp.strip()
    expiry_ns = int(float(exp)) * _MS if re.fullmatch(r"\d{12,14}(\.0+)?", exp) else _parse_date(exp, _EXPIRY_HOUR_UTC)
    return expiry_ns, strike, kind in ("call", "c")


def _row_time(row: Mapping[str, str]) -> int | None:
    ms = _first(row, _TIME_MS)
    if ms is not None:
        return int(float(ms)) * _MS
    day = _first(row, _TIME_DATE)
    return _parse_date(day, _DATE_ONLY_HOUR_UTC) if day is not None else None


def _has_instrument(cols: set[str]) -> bool:
    return "instrument_name" in cols or (bool(cols & set(_STRIKE)) and bool(cols & set(_TYPE))
                                         and bool(cols & set(_EXPIRY)))


def _detect(cols: set[str]) -> str:
    if {"mark_iv", "bid_iv", "ask_iv"} & cols:
        return "deribit_ticker"
    if any(c.endswith("_c") for c in cols) and any(c.endswith("_p") for c in cols) and (
            {"bid_price_c", "ask_price_c"} & cols):
        return "deribit_prices_pc"
    if {"bid_price", "ask_price", "best_bid_price", "best_ask_price", "mark_price"} & cols:
        return "deribit_prices"
    raise ValueError("unknown chain format: expected Deribit ticker columns (mark_iv, bid_iv, ask_iv, "
                     "underlying_price, ...) or price columns (bid_price, ask_price, underlying_price, ...)")


def _require(fmt: str, cols: set[str]) -> None:
    missing = []
    if not _has_instrument(cols):
        missing.append("instrument_name (or strike, option_type, expiration_timestamp)")
    if fmt == "deribit_ticker":
        missing += [c for c in ("mark_iv", "bid_iv", "ask_iv") if c not in cols]
    if "underlying_price" not in cols and fmt != "deribit_prices":
        missing.append("underlying_price")
    if missing:
        raise ValueError(f"{fmt} chain lacks column(s): {', '.join(missing)}")


def _ticker_quote(row: Mapping[str, str], ts: int) -> OptionQuote:
    expiry_ns, strike, is_call = _instrument(row)

    def iv(col: str) -> float | None:
        x = _pos(_num(row.get(col)))
        return None if x is None else x / 100.0  # Deribit IVs are in percent

    return OptionQuote(
        expiry_ns=expiry_ns, strike=strike, is_call=is_call, ts_ns=ts,
        underlying_price=_pos(_num(row.get("underlying_price"))),
        bid_iv=iv("bid_iv"), ask_iv=iv("ask_iv"), mark_iv=iv("mark_iv"),
        bid_price=_pos(_num(_first(row, ("best_bid_price", "bid_price")))),
        ask_price=_pos(_num(_first(row, ("best_ask_price", "ask_price")))),
        mark_price=_pos(_num(row.get("mark_price"))),
        symbol=(row.get("instrument_name") or "").strip(),
    )


def _price_quote(row: Mapping[str, str], ts: int, is_call: bool | None = None) -> OptionQuote:
    expiry_ns, strike, call = _instrument(row)
    return OptionQuote(
        expiry_ns=expiry_ns, strike=strike, is_call=call if is_call is None else is_call, ts_ns=ts,
        underlying_price=_pos(_num(row.get("underlying_price"))),
        forward=_pos(_num(row.get("forward"))),
        bid_price=_pos(_num(_first(row, ("bid_price", "best_bid_price")))),
        ask_price=_pos(_num(_first(row, ("ask_price", "best_ask_price")))),
        mark_price=_pos(_num(row.get("mark_price"))),
        symbol=(row.get("instrument_name") or "").strip(),
    )


def parse_chain(stream: TextIO, name: str = "<chain>", now_ns: int | None = None) -> Chain:
    """Read one CSV chain from an open text stream; see the module docstring for the layouts."""
    reader = csv.DictReader(stream)
    if reader.fieldnames is None:
        raise ChainFormatError(f"{name}: empty file, not a CSV option chain")
    cols = {c.strip() for c in reader.fieldnames if c is not None}
    try:
        fmt = _detect(cols)
        if fmt == "deribit_prices_pc":
            side_cols = {c[:-2] for c in cols if c.endswith("_c")}
            _require("deribit_prices", side_cols | {"option_type"})
        else:
            _require(fmt, cols)
    except ValueError as exc:
        raise ChainFormatError(f"{name}: {exc}") from None

    quotes: list[OptionQuote] = []
    pending: list[tuple[Mapping[str, str], bool | None]] = []
    times: list[int] = []
    n_rows = 0
    for line, raw in enumerate(reader, start=2):
        n_rows += 1
        row = {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in raw.items()}
        sides: list[tuple[Mapping[str, str], bool | None]]
        if fmt == "deribit_prices_pc":
            sides = [({k[:-2]: v for k, v in row.items() if k.endswith(sfx)} | {"option_type": kind}, flag)
                     for sfx, flag, kind in (("_c", True, "call"), ("_p", False, "put"))]
            sides = [(s, f) for s, f in sides if _first(s, _STRIKE + ("instrument_name",)) is not None]
        else:
            sides = [(row, None)]
        for side, flag in sides:
            try:
                ts = _row_time(side)
                if ts is not None:
                    times.append(ts)
                pending.append((side, flag))
                if fmt == "deribit_ticker":
                    _instrument(side)
            except ValueError as exc:
                raise ChainFormatError(f"{name} line {line}: {exc}") from None
    if now_ns is None:
        if not times and pending:
            raise ChainFormatError(f"{name}: no timestamp or creation_time column; pass the valuation time")
        now_ns = max(times) if times else 0
    for line, (side, flag) in enumerate(pending, start=2):
        try:
            ts = _row_time(side)
            ts = now_ns if ts is None else ts
            if fmt == "deribit_ticker":
                quotes.append(_ticker_quote(side, ts))
            else:
                quotes.append(_price_quote(side, ts, flag))
        except ValueError as exc:
            raise ChainFormatError(f"{name} row {line - 1}: {exc}") from None
    notes = []
    if fmt != "deribit_ticker" and not any(_first(s, _TIME_MS) for s, _ in pending):
        notes.append("date-only times: valued at 12:00 UTC of the file's date")
    return Chain(quotes=quotes, now_ns=int(now_ns), format=fmt, n_rows=n_rows, notes=notes)


def read_chain(path: str | Path, now_ns: int | None = None) -> Chain:
    """Read a CSV option chain file (any layout in the module docstring).

    Raises :class:`ChainFormatError` with a one-line message for an unknown layout,
    missing columns or a bad cell, and ``FileNotFoundError`` for a missing file.
    """
    p = Path(path)
    with open(p, newline="", encoding="utf-8-sig") as f:
        head = f.read(4096)
        if "\x00" in head:
            raise ChainFormatError(f"{p.name}: binary file, not a CSV option chain")
        f.seek(0)
        return parse_chain(f, name=p.name, now_ns=now_ns)


def quotes_from_tickers(
    tickers: Iterable[OptionTicker],
    instruments: Mapping[str, Instrument] | Iterable[Instrument] | None = None,
) -> list[OptionQuote]:
    """The latest quote of each option in ``tickers``.

    Strike, expiry and type come from ``instruments`` (keyed by symbol, or a list of
    ``Instrument`` events) and otherwise from the Deribit instrument name. Ticker IVs
    are already decimal and ``None`` for an empty side; a zero best price is an empty
    side too.

    >>> t = OptionTicker(venue="deribit", symbol="BTC-24SEP21-8000-P", ts_exchange_ns=5, ts_recv_ns=6,
    ...     underlying_price=32366.75, underlying_index="BTC-24SEP21", index_price=32201.67,
    ...     mark_price=0.00090376, mark_iv=1.4278, bid_iv=1.33, ask_iv=1.5271, best_bid_price=0.0005,
    ...     best_bid_size=153.1, best_ask_price=0.0015, best_ask_size=94.7)
    >>> q = quotes_from_tickers([t])[0]
    >>> q.strike, q.is_call, q.mark_iv, q.ts_ns
    (8000.0, False, 1.4278, 5)
    """
    by_symbol: dict[str, Instrument] = {}
    if instruments is not None:
        items = instruments.values() if isinstance(instruments, Mapping) else instruments
        by_symbol = {i.symbol: i for i in items}
    latest: dict[str, OptionTicker] = {}
    for t in tickers:
        ts = t.ts_exchange_ns if t.ts_exchange_ns is not None else t.ts_recv_ns
        prev = latest.get(t.symbol)
        if prev is None or ts >= (prev.ts_exchange_ns if prev.ts_exchange_ns is not None else prev.ts_recv_ns):
            latest[t.symbol] = t
    quotes = (option_quote(t, by_symbol.get(sym)) for sym, t in latest.items())
    return [q for q in quotes if q is not None]


def option_quote(t: OptionTicker, instrument: Instrument | None = None) -> OptionQuote | None:
    """One ticker as a quote; strike, expiry and type from its listing, else its name (None if neither tells)."""
    if instrument is not None and instrument.strike is not None and instrument.expiry_ns is not None \
            and instrument.option_type:
        expiry_ns, strike, is_call = instrument.expiry_ns, instrument.strike, instrument.option_type == "C"
    else:
        try:
            expiry_ns, strike, is_call = _option_terms(t.symbol)
        except ValueError:
            return None
    return OptionQuote(
        expiry_ns=expiry_ns, strike=strike, is_call=is_call,
        ts_ns=t.ts_exchange_ns if t.ts_exchange_ns is not None else t.ts_recv_ns,
        underlying_price=_pos(t.underlying_price), bid_iv=_pos(t.bid_iv), ask_iv=_pos(t.ask_iv),
        mark_iv=_pos(t.mark_iv), bid_price=_pos(t.best_bid_price), ask_price=_pos(t.best_ask_price),
        mark_price=_pos(t.mark_price), symbol=t.symbol,
    )


_ = io  # io.StringIO is what the doctest feeds parse_chain
