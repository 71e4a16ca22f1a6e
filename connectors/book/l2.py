"""A price-level (L2) order book with O(N) access to its best N levels.

The book is the hot path of every diff-depth feed: a plain class over two dicts
(price -> size) and, per side, a small sorted cache of the best prices, so the best
levels come without sorting the book.

Cache invariant, per side: the cache holds exactly the best ``len(cache)`` prices of
that side. Hence a level at or better than the cache's worst price is in the cache
if and only if it is in the dict, and a level worse than it never concerns the
cache: per applied level the cache costs one float comparison, plus a ``bisect``
only for levels that appear or vanish inside it. The cache may shrink below what a
caller needs (deletes at the top as the price moves); it is then rebuilt from one
sort of the dict's keys.

Measured on real Binance BTCUSDT diffs, a plain per-level loop with ``in``/``del``
beats ``dict.update`` followed by removing the zero sizes: inserting then deleting
keys churns the dict.

:class:`PyL2Book` is the pure-Python book. ``L2Book`` is the compiled one from
``connectors/book/_l2fast.pyx`` (same semantics, the per-level loop in C, and
:meth:`~PyL2Book.apply_diff` fed levels parsed straight from the JSON text) when that
optional extension is built and matches its source, else :class:`PyL2Book`.
``COMPILED`` says which; ``VOLCAST_PURE_PYTHON=1`` in the environment forces Python.

>>> book = L2Book()
>>> book.replace(bids=[(100.0, 1.0), (99.5, 2.0)], asks=[(100.5, 3.0), (101.0, 1.0)])
>>> book.apply(bids=[(100.0, 0.0), (99.8, 4.0)], asks=[(100.2, 1.5)])
>>> book.best_bid(), book.best_ask()
((99.8, 4.0), (100.2, 1.5))
>>> book.top(2)
([(99.8, 4.0), (99.5, 2.0)], [(100.2, 1.5), (100.5, 3.0)])
"""

from __future__ import annotations

import hashlib
import os
import warnings
from bisect import bisect_left, insort
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from connectors.events import Level

_INF = float("inf")


class PyL2Book:
    """Bids and asks as ``price -> size`` dicts with a sorted cache of the best prices.

    Parameters
    ----------
    cache_size
        How many best prices each side's cache keeps (default 64). Asking
        :meth:`top` for more levels grows a cache to that depth.
    """

    __slots__ = ("bids", "asks", "_bc", "_ac", "_k")

    def __init__(self, cache_size: int = 64) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self._k = cache_size
        self.bids: dict[float, float] = {}  # price -> size; read-only outside this class
        self.asks: dict[float, float] = {}
        # Both caches ascending, so one bisect serves both sides: the best bid is
        # the bid cache's last item, the best ask the ask cache's first.
        self._bc: list[float] = []
        self._ac: list[float] = []

    def __reduce__(self) -> tuple[Any, tuple[int, dict[float, float], dict[float, float]]]:
        """Pickle the levels only, loadable by either implementation (see :func:`_restore`)."""
        return (_restore, (self._k, self.bids, self.asks))

    def __getstate__(self) -> tuple[int, dict[float, float], dict[float, float]]:
        """The levels only; the caches are rebuilt on load."""
        return (self._k, self.bids, self.asks)

    def __setstate__(self, state: tuple[int, dict[float, float], dict[float, float]]) -> None:
        """Restore what :meth:`__getstate__` saved."""
        k, bids, asks = state
        self._k = k
        self.replace(bids.items(), asks.items())

    def __len__(self) -> int:
        """Number of price levels on both sides."""
        return len(self.bids) + len(self.asks)

    def __repr__(self) -> str:
        return f"L2Book(bid={self.best_bid()}, ask={self.best_ask()}, levels={len(self)})"

    def clear(self) -> None:
        """Forget every level."""
        self.bids, self.asks, self._bc, self._ac = {}, {}, [], []

    def replace(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Make the book exactly these levels (a snapshot); zero sizes are dropped."""
        self.bids = {px: sz for px, sz in bids if sz}
        self.asks = {px: sz for px, sz in asks if sz}
        self._bc, self._ac = [], []
        self._refill_bids(self._k)
        self._refill_asks(self._k)

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        """Set each level to its absolute size; size 0 deletes it (absent levels too)."""
        k = self._k
        d = self.bids
        cache = self._bc
        worst = cache[0] if cache else _INF  # nothing is "better than" an empty cache
        for px, sz in bids:
            if sz:
                if px > worst and px not in d:
                    insort(cache, px)
                    if len(cache) > k:
                        del cache[0]
                        worst = cache[0]
                d[px] = sz
            elif px in d:
                del d[px]
                if px >= worst:
                    del cache[bisect_left(cache, px)]
                    worst = cache[0] if cache else _INF
        d = self.asks
        cache = self._ac
        worst = cache[-1] if cache else -_INF
        for px, sz in asks:
            if sz:
                if px < worst and px not in d:
                    insort(cache, px)
                    if len(cache) > k:
                        del cache[-1]
                        worst = cache[-1]
                d[px] = sz
            elif px in d:
                del d[px]
                if px <= worst:
                    del cache[bisect_left(cache, px)]
                    worst = cache[-1] if cache else -_INF

    def apply_diff(self, msg: Any) -> None:
        """Apply a depth message's levels ``msg.b`` (bids) and ``msg.a`` (asks)."""
        self.apply(msg.b, msg.a)

    def best_bid(self) -> Level | None:
        """Highest bid as ``(price, size)``, or None if there are no bids."""
        if not self._bc:
            self._refill_bids(self._k)
            if not self._bc:
                return None
        px = self._bc[-1]
        return (px, self.bids[px])

    def best_ask(self) -> Level | None:
        """Lowest ask as ``(price, size)``, or None if there are no asks."""
        if not self._ac:
            self._refill_asks(self._k)
            if not self._ac:
                return None
        px = self._ac[0]
        return (px, self.asks[px])

    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask."""
        if not self._bc:
            self._refill_bids(self._k)
        if not self._ac:
            self._refill_asks(self._k)
        return bool(self._bc) and bool(self._ac) and self._bc[-1] >= self._ac[0]

    def top(self, n: int) -> tuple[list[Level], list[Level]]:
        """The best ``n`` levels per side, best first, in O(n) from the caches."""
        if n <= 0:
            return [], []
        if len(self._bc) < n:
            self._refill_bids(n)
        if len(self._ac) < n:
            self._refill_asks(n)
        bids, asks = self.bids, self.asks
        # Measured faster than list(zip(prices, map(bids.__getitem__, prices))).
        b = [(px, bids[px]) for px in self._bc[: -n - 1 : -1]]
        a = [(px, asks[px]) for px in self._ac[:n]]
        return b, a

    def levels(self) -> tuple[list[Level], list[Level]]:
        """Every level per side, best first (sorts the whole book: not for the hot path)."""
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())

    def _refill_bids(self, n: int) -> None:
        """Rebuild a bid cache that holds fewer than ``n`` prices, if the dict has more."""
        if len(self.bids) > len(self._bc):
            # One C sort, near-linear in practice: the dict keeps insertion order,
            # i.e. the snapshot's sorted run plus a tail of newer prices.
            self._bc = sorted(self.bids)[-max(self._k, n) :]

    def _refill_asks(self, n: int) -> None:
        """Rebuild an ask cache that holds fewer than ``n`` prices, if the dict has more."""
        if len(self.asks) > len(self._ac):
            self._ac = sorted(self.asks)[: max(self._k, n)]


def _restore(cache_size: int, bids: dict[float, float], asks: dict[float, float]) -> Any:
    """Unpickle a book of either implementation as the one in use here."""
    book = L2Book(cache_size)
    book.replace(bids.items(), asks.items())
    return book


def _load_kernel() -> ModuleType | None:
    """The compiled kernel, or None: not built, disabled, or built from other source."""
    if os.environ.get("VOLCAST_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from connectors.book import _l2fast
    except ImportError:
        return None
    # An editable install keeps an old build after the .pyx changes; never run that.
    pyx = Path(__file__).with_name("_l2fast.pyx")
    if pyx.is_file():
        source_hash = hashlib.sha256(pyx.read_bytes()).hexdigest()
        if source_hash != _l2fast.SOURCE_HASH:
            warnings.warn(
                "connectors/book/_l2fast is stale (built from another _l2fast.pyx); using the "
                "pure-Python book. Rebuild: pip install -e . (or python setup.py build_ext --inplace)",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
    return _l2fast


kernel = _load_kernel()
COMPILED = kernel is not None
L2Book: type[PyL2Book] = kernel.L2Book if kernel is not None else PyL2Book
