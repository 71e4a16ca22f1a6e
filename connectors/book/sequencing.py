"""Pure decisions on diff-depth update ids: apply, skip or resync.

Each rule takes the id the local book is at (``last``) and the diff's ids
(``first`` = Binance ``U``, ``final`` = ``u``, ``prev`` = futures ``pu``) and
returns one of :data:`APPLY`, :data:`SKIP` or :data:`GAP`. No logging, no state:
the caller decides what a gap does to which book (only that instrument resyncs).

The rules are Binance's "How to manage a local order book correctly" (spot,
``web-socket-streams.md``) and its futures variant (the ``pu`` chain); see
research/protocols.md §2.1-2.2.

>>> spot_rule(last=100, first=101, final=105, prev=None)
'apply'
>>> futures_rule(last=100, first=90, final=105, prev=99)
'gap'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

Action = Literal["apply", "skip", "gap"]
APPLY: Action = "apply"
SKIP: Action = "skip"
GAP: Action = "gap"

# (last, first, final, prev) -> action
Rule = Callable[[int, int, int, "int | None"], Action]


def spot_rule(last: int, first: int, final: int, prev: int | None) -> Action:
    """Spot: skip ``u <= last``, gap if ``U > last + 1``, else apply.

    The same rule bridges the REST snapshot (``last = lastUpdateId``): the first diff
    kept must satisfy ``U <= lastUpdateId + 1 <= u``; a ``U`` beyond it means the
    snapshot is older than the stream.

    >>> spot_rule(100, 90, 100, None), spot_rule(100, 99, 103, None), spot_rule(100, 102, 103, None)
    ('skip', 'apply', 'gap')
    """
    if final <= last:
        return SKIP
    if first > last + 1:
        return GAP
    return APPLY


def futures_bridge_rule(last: int, first: int, final: int, prev: int | None) -> Action:
    """Futures, first diff after the snapshot: skip ``u < last``, need ``U <= last <= u``.

    >>> futures_bridge_rule(100, 90, 99, 89), futures_bridge_rule(100, 95, 104, 94)
    ('skip', 'apply')
    >>> futures_bridge_rule(100, 101, 104, 100)
    'gap'
    """
    if final < last:
        return SKIP
    if first > last:
        return GAP
    return APPLY


def futures_rule(last: int, first: int, final: int, prev: int | None) -> Action:
    """Futures, in sync: each diff's ``pu`` must equal the previous diff's ``u``.

    A diff entirely at or below ``last`` (a repeat) is skipped; any other break in
    the chain is a gap.

    >>> futures_rule(100, 101, 104, 100), futures_rule(100, 95, 100, 94)
    ('apply', 'skip')
    """
    if prev == last:
        return APPLY
    if final <= last:
        return SKIP
    return GAP
