"""Forecast horizons and the duration labels used in records and reasons.

Durations are integer nanoseconds (ARCHITECTURE.md, units). A horizon's ``name`` is
its compact label ("5m", "4h") and is what records and metrics carry.

>>> Horizon.parse("15m").ns
900000000000
>>> [h.name for h in DEFAULT_HORIZONS]
['5m', '15m', '1h', '4h']
"""

from __future__ import annotations

import re

import msgspec

SECOND_NS = 1_000_000_000
MINUTE_NS = 60 * SECOND_NS
HOUR_NS = 60 * MINUTE_NS
DAY_NS = 24 * HOUR_NS

# Largest unit first, so format_duration picks the coarsest exact unit.
_UNITS: tuple[tuple[str, int], ...] = (
    ("d", DAY_NS),
    ("h", HOUR_NS),
    ("m", MINUTE_NS),
    ("s", SECOND_NS),
    ("ms", 1_000_000),
    ("ns", 1),
)
_SIZES = dict(_UNITS)
_TERM = re.compile(r"(\d+)(ms|ns|d|h|m|s)")


def parse_duration(text: str) -> int:
    """Nanoseconds in a label such as ``"500ms"``, ``"5m"``, ``"4h"``, ``"1d"`` or ``"9m59s"``.

    >>> parse_duration("4h") == 4 * HOUR_NS, parse_duration("1m30s") == 90 * SECOND_NS
    (True, True)
    """
    text = text.strip()
    terms = _TERM.findall(text)
    ns = sum(int(number) * _SIZES[unit] for number, unit in terms)
    if not terms or "".join(a + b for a, b in terms) != text or ns <= 0:
        raise ValueError(f"duration {text!r} must be positive integers each followed by one of d, h, m, s, ms, ns")
    return ns


def format_duration(ns: int) -> str:
    """Compact label: the coarsest exact unit, else the two coarsest units, rounded down.

    >>> format_duration(6 * MINUTE_NS), format_duration(599 * SECOND_NS), format_duration(DAY_NS)
    ('6m', '9m59s', '1d')
    """
    if ns <= 0:
        return "0s"
    for i, (unit, size) in enumerate(_UNITS):
        if ns % size == 0:
            return f"{ns // size}{unit}"
        if ns >= size:
            # Not exact in the coarsest unit that fits: add the next unit down.
            rest_unit, rest_size = _UNITS[i + 1]
            return f"{ns // size}{unit}{ns % size // rest_size}{rest_unit}"
    return f"{ns}ns"


class Horizon(msgspec.Struct, frozen=True):
    """A forecast horizon: the label records carry and its length in nanoseconds."""

    name: str
    ns: int

    def __post_init__(self) -> None:
        if self.ns <= 0:
            raise ValueError(f"horizon {self.name!r} must be positive, got {self.ns} ns")

    @classmethod
    def parse(cls, text: str) -> Horizon:
        """Build a horizon from its label.

        >>> Horizon.parse("1h")
        Horizon(name='1h', ns=3600000000000)
        """
        ns = parse_duration(text)
        return cls(format_duration(ns), ns)


DEFAULT_HORIZONS: tuple[Horizon, ...] = tuple(Horizon.parse(h) for h in ("5m", "15m", "1h", "4h"))
