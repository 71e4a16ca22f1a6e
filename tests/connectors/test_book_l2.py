"""L2Book against a naive sorted oracle, plus its edge cases.

Every test runs on the pure-Python book and, where it is built, on the compiled one
(connectors/book/_l2fast.pyx); a last test drives both with the same random
operations and compares every answer.
"""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.book import l2
from connectors.book.l2 import PyL2Book

IMPLS = [PyL2Book] + ([l2.kernel.L2Book] if l2.kernel is not None else [])
IMPL_IDS = ["python", "compiled"][: len(IMPLS)]


@pytest.fixture(params=IMPLS, ids=IMPL_IDS)
def L2Book(request):
    """Each book implementation in turn."""
    return request.param

# Few distinct prices so random deltas hit existing levels, the cache edge and
# the best price often; sizes include 0 (delete).
prices = st.sampled_from([round(100 + 0.5 * i, 1) for i in range(-40, 41)])
sizes = st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.25, 7.0])
levels = st.lists(st.tuples(prices, sizes), max_size=30)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("replace"), levels, levels),
        st.tuples(st.just("apply"), levels, levels),
        st.tuples(st.just("apply"), levels, levels),
        st.tuples(st.just("apply"), levels, levels),
    ),
    min_size=1,
    max_size=40,
)


class Oracle:
    """The obvious book: two dicts, sorted on every read."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def replace(self, bids, asks) -> None:
        self.bids = {p: s for p, s in bids if s}
        self.asks = {p: s for p, s in asks if s}

    def apply(self, bids, asks) -> None:
        for side, lv in ((self.bids, bids), (self.asks, asks)):
            for p, s in lv:
                if s:
                    side[p] = s
                else:
                    side.pop(p, None)

    def top(self, n):
        return (sorted(self.bids.items(), reverse=True)[:n], sorted(self.asks.items())[:n])


def check(book, oracle: Oracle, n: int) -> None:
    b, a = oracle.top(n)
    assert book.top(n) == (b, a)
    assert book.best_bid() == (b[0] if b else None)
    assert book.best_ask() == (a[0] if a else None)
    assert len(book) == len(oracle.bids) + len(oracle.asks)
    assert book.bids == oracle.bids and book.asks == oracle.asks
    assert book.crossed() == bool(b and a and b[0][0] >= a[0][0])


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@settings(max_examples=400, deadline=None)
@given(ops=ops, cache_size=st.sampled_from([1, 2, 3, 8, 64]), n=st.integers(1, 12))
def test_matches_oracle_after_every_operation(impl, ops, cache_size, n):
    # Arrange
    book, oracle = impl(cache_size), Oracle()
    for op, bids, asks in ops:
        # Act
        getattr(book, op)(bids, asks)
        getattr(oracle, op)(bids, asks)
        # Assert
        check(book, oracle, n)


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@settings(max_examples=200, deadline=None)
@given(ops=ops)
def test_reads_between_applies_do_not_change_results(impl, ops):
    # Reads refill the caches; interleaving them must not change any later answer.
    book, quiet, oracle = impl(4), impl(4), Oracle()
    for op, bids, asks in ops:
        getattr(book, op)(bids, asks)
        getattr(quiet, op)(bids, asks)
        getattr(oracle, op)(bids, asks)
        book.top(3)
        book.best_bid()
    check(book, oracle, 20)
    check(quiet, oracle, 20)


def test_delete_of_absent_level_is_harmless(L2Book):
    book = L2Book()
    book.replace([(10.0, 1.0)], [(11.0, 1.0)])
    book.apply([(9.0, 0.0), (10.0, 0.0), (10.0, 0.0)], [(12.0, 0.0)])
    assert book.best_bid() is None
    assert book.best_ask() == (11.0, 1.0)
    assert book.top(5) == ([], [(11.0, 1.0)])


def test_last_write_wins_within_one_delta(L2Book):
    book = L2Book(2)
    book.apply([(10.0, 0.0), (10.0, 3.0), (11.0, 1.0), (11.0, 0.0)], [])
    assert book.top(5) == ([(10.0, 3.0)], [])


def test_replace_drops_every_previous_level(L2Book):
    # Ghost levels after a resnapshot (research/protocols.md §5.2.3).
    book = L2Book()
    book.replace([(10.0, 1.0), (9.0, 1.0)], [(11.0, 1.0)])
    book.replace([(8.0, 2.0)], [(12.0, 2.0)])
    assert book.top(10) == ([(8.0, 2.0)], [(12.0, 2.0)])


def test_top_deeper_than_cache_and_empty_requests(L2Book):
    book = L2Book(cache_size=2)
    book.replace([(float(p), 1.0) for p in range(1, 11)], [(float(p), 1.0) for p in range(11, 21)])
    bids, asks = book.top(6)
    assert [p for p, _ in bids] == [10.0, 9.0, 8.0, 7.0, 6.0, 5.0]
    assert [p for p, _ in asks] == [11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    assert book.top(0) == ([], [])


def test_crossed_and_clear(L2Book):
    book = L2Book()
    book.replace([(10.0, 1.0)], [(11.0, 1.0)])
    assert not book.crossed()
    book.apply([(11.0, 1.0)], [])
    assert book.crossed()
    book.clear()
    assert not book.crossed() and len(book) == 0 and book.best_bid() is None


def test_pickle_round_trip_keeps_levels_and_order(L2Book):
    book = L2Book(cache_size=3)
    book.replace([(10.0, 1.0), (9.5, 2.0), (9.0, 3.0), (8.0, 4.0)], [(11.0, 1.0), (12.0, 2.0)])
    book.apply([(10.0, 0.0), (9.7, 5.0)], [(11.5, 1.0)])
    clone = pickle.loads(pickle.dumps(book))
    assert clone.top(10) == book.top(10)
    clone.apply([(9.7, 0.0)], [])
    assert clone.best_bid() == (9.5, 2.0)
    assert book.best_bid() == (9.7, 5.0)


def test_levels_lists_whole_book_best_first(L2Book):
    book = L2Book(cache_size=1)
    book.replace([(9.0, 1.0), (10.0, 2.0)], [(12.0, 1.0), (11.0, 2.0)])
    assert book.levels() == ([(10.0, 2.0), (9.0, 1.0)], [(11.0, 2.0), (12.0, 1.0)])
    assert "bid=(10.0, 2.0)" in repr(book)


def test_rejects_empty_cache(L2Book):
    with pytest.raises(ValueError, match="cache_size"):
        L2Book(0)


def test_pickles_load_as_the_book_in_use():
    # A pickle names no implementation, so it loads with or without the extension.
    for impl in IMPLS:
        book = impl(cache_size=5)
        book.replace([(10.0, 1.0)], [(11.0, 2.0)])
        clone = pickle.loads(pickle.dumps(book))
        assert type(clone) is l2.L2Book
        assert clone.top(3) == book.top(3) and clone._k == 5


def test_apply_diff_reads_b_and_a():
    msg = SimpleNamespace(b=[(10.0, 1.0), (9.0, 2.0)], a=[(11.0, 3.0)])
    for impl in IMPLS:
        book = impl()
        book.apply_diff(msg)
        assert book.top(5) == ([(10.0, 1.0), (9.0, 2.0)], [(11.0, 3.0)])


# -- compiled kernel == pure Python ----------------------------------------------------

# Wider prices than above: real-looking decimals, finite float edge cases, a dense
# cluster (so levels hit the caches' edges), and sizes with both zeros. Finite: the
# decoders admit nothing else (and PyL2Book cannot delete an infinite bid from an
# empty cache).
wide_prices = st.one_of(
    prices,
    st.floats(min_value=1e-8, max_value=1e7, allow_nan=False),
    st.sampled_from([0.0, -0.0, -5.5, 5e-324, 1.7976931348623157e308]),
    st.integers(6183000, 6184000).map(lambda c: c / 100),
)
wide_sizes = st.one_of(sizes, st.sampled_from([-0.0, 0.0, 1e-8, 3.5e6, 1e299]),
                       st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
wide_levels = st.lists(st.tuples(wide_prices, wide_sizes), max_size=60)
book_ops = st.lists(
    st.one_of(
        st.tuples(st.just("apply"), wide_levels, wide_levels),
        st.tuples(st.just("apply"), wide_levels, wide_levels),
        st.tuples(st.just("apply"), wide_levels, wide_levels),
        st.tuples(st.just("replace"), wide_levels, wide_levels),
        st.tuples(st.just("top"), st.integers(-1, 80)),
        st.tuples(st.just("best_bid")),
        st.tuples(st.just("best_ask")),
        st.tuples(st.just("crossed")),
        st.tuples(st.just("clear")),
        st.tuples(st.just("pickle")),
    ),
    min_size=1,
    max_size=60,
)


def observe(book):
    return (book.top(3), book.best_bid(), book.best_ask(), book.crossed(), len(book),
            book.bids, book.asks, book.levels(), repr(book))


@pytest.mark.skipif(l2.kernel is None, reason="compiled book kernel not built")
@settings(max_examples=500, deadline=None)
@given(ops=book_ops, cache_size=st.sampled_from([1, 2, 5, 64, 128]))
def test_compiled_book_matches_python_book(ops, cache_size):
    py, c = PyL2Book(cache_size), l2.kernel.L2Book(cache_size)
    for op, *args in ops:
        if op == "pickle":
            py, c = pickle.loads(pickle.dumps(py)), pickle.loads(pickle.dumps(c))
            continue
        assert getattr(c, op)(*args) == getattr(py, op)(*args), (op, args)
        assert observe(c) == observe(py), (op, args)


@pytest.mark.skipif(l2.kernel is None, reason="compiled book kernel not built")
def test_compiled_book_refuses_nan_prices():
    book = l2.kernel.L2Book()
    with pytest.raises(ValueError, match="NaN"):
        book.apply([(float("nan"), 1.0)], [])
