# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled kernel of :mod:`connectors.book.l2`: the same book, its levels in C.

Built by ``setup.py`` as an optional extension; :mod:`connectors.book.l2` uses it when
it imports (and matches this source) and falls back to the identical pure-Python
:class:`~connectors.book.l2.PyL2Book` otherwise. tests/connectors/test_book_l2.py runs
both against the same oracle and against each other.

Three parts:

* :class:`L2Book` -- the API of ``PyL2Book``, each side held as an open-addressing
  hash table of C doubles (price -> size) plus the same sorted cache of best prices,
  as a C array. No Python object is made per level: per level one hash probe, and a
  bisect on doubles only for levels that appear or vanish inside the cache. ``bids``
  and ``asks`` are built as dicts when read (for tests and tools, not the hot path).
* :class:`Diff` -- a diff-depth message whose levels were parsed straight from the
  JSON text into C doubles; ``b``/``a`` build the ``(price, size)`` tuples when read
  (for a BookDelta).
* :class:`DiffDecoder` -- decodes a depth frame in one pass when it is in the exact
  compact form Binance sends: ``{"stream":"..","data":{..}}`` without whitespace, each
  payload key once, only known keys, plain integers, and levels
  ``[["<decimal>","<decimal>"],...]`` with at most 19 significant digits and 22
  fractional ones. Any other input, valid or not, is decoded by the frame's own typed
  msgspec decoder instead, so what is accepted or rejected, the values and the error
  messages never depend on this module.

Decimal strings become doubles as ``mantissa / 10**frac`` with the mantissa at most
2**53 and ``frac <= 22``: both exact, so the one IEEE division is correctly rounded --
the same double as ``float(text)`` and msgspec give (tests check both).

Domain: prices must not be NaN (the pure book would key a dict by NaN objects; this
one raises ValueError). Every other float behaves as in ``PyL2Book``, with ``-0.0``
and ``0.0`` one price as in a dict; other real numbers are converted with ``float``.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_AsDouble, PyFloat_CheckExact, PyFloat_FromDouble
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.ref cimport Py_INCREF
from libc.math cimport NAN, isnan, signbit
from libc.stdint cimport uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcmp, memcpy, memmove

cdef extern from *:
    """
    #ifndef VOLCAST_L2_SOURCE_HASH
    #define VOLCAST_L2_SOURCE_HASH ""
    #endif
    """
    const char* VOLCAST_L2_SOURCE_HASH

# SHA-256 of this file as it was compiled (setup.py passes it), so connectors.book.l2
# can refuse a stale build of an editable install and fall back to Python.
SOURCE_HASH = VOLCAST_L2_SOURCE_HASH.decode("ascii")

cdef double[23] _POW10
cdef int _i
_POW10[0] = 1.0
for _i in range(1, 23):
    _POW10[_i] = _POW10[_i - 1] * 10.0  # exact up to 1e22
cdef unsigned long long _MAX_EXACT = 1ULL << 53


# -- price -> size hash table ---------------------------------------------------------
#
# Open addressing with linear probing and backward-shift deletion (no tombstones).
# An empty slot holds a NaN key, which no stored price can be.


cdef struct Slot:
    double key
    double val


cdef struct Table:
    Slot* s
    Py_ssize_t n  # prices stored
    Py_ssize_t mask  # capacity - 1, capacity a power of two (0 when unallocated)
    int shift  # 64 - log2(capacity)


cdef inline uint64_t _bits(double x) noexcept nogil:
    cdef uint64_t u
    if x == 0.0:
        x = 0.0  # -0.0 and 0.0 are one key, as in a dict
    memcpy(&u, &x, 8)
    return u


cdef inline Py_ssize_t _home(const Table* t, double x) noexcept nogil:
    return <Py_ssize_t>((_bits(x) * <uint64_t>0x9E3779B97F4A7C15ULL) >> t.shift)


cdef int _table_init(Table* t, Py_ssize_t cap) except -1:
    """Empty table of ``cap`` slots (a power of two >= 8)."""
    cdef Py_ssize_t i
    cdef int shift = 64
    cdef Slot* s = <Slot*>PyMem_Malloc(cap * sizeof(Slot))
    if s == NULL:
        raise MemoryError()
    for i in range(cap):
        s[i].key = NAN
    i = cap
    while i > 1:
        i >>= 1
        shift -= 1
    PyMem_Free(t.s)
    t.s = s
    t.n = 0
    t.mask = cap - 1
    t.shift = shift
    return 0


cdef inline Py_ssize_t _find(const Table* t, double x) noexcept nogil:
    """Slot holding ``x``, or -1."""
    cdef Py_ssize_t i
    cdef double k
    if t.mask == 0:
        return -1
    i = _home(t, x)
    while True:
        k = t.s[i].key
        if k == x:
            return i
        if isnan(k):
            return -1
        i = (i + 1) & t.mask


cdef int _grow(Table* t) except -1:
    cdef Slot* old = t.s
    cdef Py_ssize_t cap = t.mask + 1, i, j
    t.s = NULL
    _table_init(t, max(16, 2 * cap) if old != NULL else 16)
    if old != NULL:
        for i in range(cap):
            if not isnan(old[i].key):
                j = _home(t, old[i].key)
                while not isnan(t.s[j].key):
                    j = (j + 1) & t.mask
                t.s[j] = old[i]
                t.n += 1
        PyMem_Free(old)
    return 0


cdef inline int _set(Table* t, double x, double v) except -1:
    """Store ``x -> v``; 1 if ``x`` is new, else 0."""
    cdef Py_ssize_t i
    cdef double k
    if 2 * (t.n + 1) > t.mask + 1:  # keep the load at most 1/2
        _grow(t)
    i = _home(t, x)
    while True:
        k = t.s[i].key
        if k == x:
            t.s[i].val = v
            return 0
        if isnan(k):
            t.s[i].key = x
            t.s[i].val = v
            t.n += 1
            return 1
        i = (i + 1) & t.mask


cdef inline bint _del(Table* t, double x) noexcept nogil:
    """Remove ``x``; True if it was there."""
    cdef Py_ssize_t i = _find(t, x), j, h
    if i < 0:
        return False
    # backward-shift: move later members of the probe run into the hole
    j = i
    while True:
        j = (j + 1) & t.mask
        if isnan(t.s[j].key):
            break
        h = _home(t, t.s[j].key)
        # the entry at j may move to i unless its home lies cyclically in (i, j]
        if (j > i and (h <= i or h > j)) or (j < i and (h <= i and h > j)):
            t.s[i] = t.s[j]
            i = j
    t.s[i].key = NAN
    t.n -= 1
    return True


cdef dict _as_dict(const Table* t):
    cdef dict d = {}
    cdef Py_ssize_t i
    if t.mask:
        for i in range(t.mask + 1):
            if not isnan(t.s[i].key):
                d[PyFloat_FromDouble(t.s[i].key)] = PyFloat_FromDouble(t.s[i].val)
    return d


# -- sorted arrays of doubles (the caches) -------------------------------------------------


cdef struct Cache:
    double* v  # ascending
    Py_ssize_t n
    Py_ssize_t cap


cdef int _reserve(Cache* c, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap
    cdef double* v
    if need <= c.cap:
        return 0
    cap = max(need, 2 * c.cap, 16)
    v = <double*>PyMem_Realloc(c.v, cap * sizeof(double))
    if v == NULL:
        raise MemoryError()
    c.v = v
    c.cap = cap
    return 0


cdef inline Py_ssize_t _bisect(const double* v, Py_ssize_t n, double x) noexcept nogil:
    """First index whose value is >= x (bisect_left)."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if v[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline int _insert(Cache* c, Py_ssize_t i, double x) except -1:
    if c.n == c.cap:
        _reserve(c, c.n + 1)
    memmove(&c.v[i + 1], &c.v[i], (c.n - i) * sizeof(double))
    c.v[i] = x
    c.n += 1
    return 0


cdef inline void _remove(Cache* c, Py_ssize_t i) noexcept nogil:
    c.n -= 1
    memmove(&c.v[i], &c.v[i + 1], (c.n - i) * sizeof(double))


cdef int _cmp_double(const void* a, const void* b) noexcept nogil:
    cdef double x = (<const double*>a)[0], y = (<const double*>b)[0]
    return (x > y) - (x < y)


cdef void _select(double* a, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Partially order ``a`` so that ``a[k]`` is its k-th smallest, smaller ones before it
    and larger ones after it (quickselect, median-of-three Hoare partition)."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j, mid
    cdef double pivot, t
    while hi > lo:
        mid = lo + ((hi - lo) >> 1)
        if a[mid] < a[lo]:
            t = a[mid]; a[mid] = a[lo]; a[lo] = t
        if a[hi] < a[lo]:
            t = a[hi]; a[hi] = a[lo]; a[lo] = t
        if a[hi] < a[mid]:
            t = a[hi]; a[hi] = a[mid]; a[mid] = t
        pivot = a[mid]
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                t = a[i]; a[i] = a[j]; a[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


cdef int _refill(Cache* c, const Table* t, Py_ssize_t m, bint best_high) except -1:
    """Make ``c`` the ``m`` best prices of ``t`` (highest if ``best_high``), ascending,
    unless it already holds every price."""
    cdef Py_ssize_t size = t.n, i, j = 0, start
    cdef double* tmp
    if size <= c.n:
        return 0
    tmp = <double*>PyMem_Malloc(size * sizeof(double))
    if tmp == NULL:
        raise MemoryError()
    for i in range(t.mask + 1):
        if not isnan(t.s[i].key):
            tmp[j] = t.s[i].key
            j += 1
    if m > size:
        m = size
    if best_high:
        start = size - m
        if start > 0:
            _select(tmp, size, start)
    else:
        start = 0
        if m < size:
            _select(tmp, size, m - 1)
    qsort(&tmp[start], m, sizeof(double), _cmp_double)
    try:
        _reserve(c, m)
    except MemoryError:
        PyMem_Free(tmp)
        raise
    memcpy(c.v, &tmp[start], m * sizeof(double))
    c.n = m
    PyMem_Free(tmp)
    return 0


# -- the book --------------------------------------------------------------------------------


cdef inline double _price(object x) except? -1.0:
    cdef double v = PyFloat_AS_DOUBLE(x) if PyFloat_CheckExact(x) else PyFloat_AsDouble(x)
    if isnan(v):
        raise ValueError("a price cannot be NaN")
    return v


cdef inline double _size(object x) except? -1.0:
    return PyFloat_AS_DOUBLE(x) if PyFloat_CheckExact(x) else PyFloat_AsDouble(x)


@cython.final
cdef class L2Book:
    """Compiled :class:`connectors.book.l2.PyL2Book`; see that class for the semantics.

    ``bids`` and ``asks`` are new dicts (price -> size, floats) on every read.
    """

    cdef readonly Py_ssize_t _k
    cdef Table bt, at  # price -> size per side
    cdef Cache bc  # bid cache, ascending: the best bid is the last
    cdef Cache ac  # ask cache, ascending: the best ask is the first

    def __cinit__(self):
        self._k = 64
        self.bt.s = self.at.s = NULL
        self.bt.n = self.at.n = self.bt.mask = self.at.mask = 0
        self.bc.v = self.ac.v = NULL
        self.bc.n = self.ac.n = self.bc.cap = self.ac.cap = 0

    def __init__(self, Py_ssize_t cache_size=64):
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size}")
        self._k = cache_size

    def __dealloc__(self):
        PyMem_Free(self.bt.s)
        PyMem_Free(self.at.s)
        PyMem_Free(self.bc.v)
        PyMem_Free(self.ac.v)

    @property
    def bids(self):
        """Bids as a new ``price -> size`` dict."""
        return _as_dict(&self.bt)

    @property
    def asks(self):
        """Asks as a new ``price -> size`` dict."""
        return _as_dict(&self.at)

    def __reduce__(self):
        from connectors.book.l2 import _restore

        return (_restore, (self._k, self.bids, self.asks))

    def __getstate__(self):
        return (self._k, self.bids, self.asks)

    def __setstate__(self, state):
        k, bids, asks = state
        self._k = k
        self.replace(bids.items(), asks.items())

    def __len__(self):
        return self.bt.n + self.at.n

    def __repr__(self):
        return f"L2Book(bid={self.best_bid()}, ask={self.best_ask()}, levels={len(self)})"

    def clear(self):
        """Forget every level."""
        PyMem_Free(self.bt.s)
        PyMem_Free(self.at.s)
        self.bt.s = self.at.s = NULL
        self.bt.n = self.at.n = self.bt.mask = self.at.mask = 0
        self.bc.n = self.ac.n = 0

    def replace(self, bids, asks):
        """Make the book exactly these levels (a snapshot); zero sizes are dropped."""
        cdef Table nb, na
        cdef double sz
        nb.s = na.s = NULL
        nb.n = na.n = nb.mask = na.mask = 0
        try:
            for px, s in bids:
                sz = _size(s)
                if sz != 0.0:
                    _set(&nb, _price(px), sz)
            for px, s in asks:
                sz = _size(s)
                if sz != 0.0:
                    _set(&na, _price(px), sz)
        except BaseException:
            PyMem_Free(nb.s)
            PyMem_Free(na.s)
            raise
        PyMem_Free(self.bt.s)
        PyMem_Free(self.at.s)
        self.bt = nb
        self.at = na
        self.bc.n = self.ac.n = 0
        _refill(&self.bc, &self.bt, self._k, True)
        _refill(&self.ac, &self.at, self._k, False)

    cdef int _bid(self, double px, double sz) except -1:
        cdef Cache* c = &self.bc
        cdef Py_ssize_t i
        if sz != 0.0:
            if _set(&self.bt, px, sz) and c.n and px > c.v[0]:
                # new and better than the cache's worst: it belongs in the cache
                _insert(c, _bisect(c.v, c.n, px), px)
                if c.n > self._k:
                    _remove(c, 0)
        elif _del(&self.bt, px) and c.n and px >= c.v[0]:
            i = _bisect(c.v, c.n, px)
            if i < c.n and c.v[i] == px:
                _remove(c, i)
        return 0

    cdef int _ask(self, double px, double sz) except -1:
        cdef Cache* c = &self.ac
        cdef Py_ssize_t i
        if sz != 0.0:
            if _set(&self.at, px, sz) and c.n and px < c.v[c.n - 1]:
                _insert(c, _bisect(c.v, c.n, px), px)
                if c.n > self._k:
                    c.n -= 1
        elif _del(&self.at, px) and c.n and px <= c.v[c.n - 1]:
            i = _bisect(c.v, c.n, px)
            if i < c.n and c.v[i] == px:
                _remove(c, i)
        return 0

    def apply(self, bids, asks):
        """Set each level to its absolute size; size 0 deletes it (absent levels too)."""
        for px, sz in bids:
            self._bid(_price(px), _size(sz))
        for px, sz in asks:
            self._ask(_price(px), _size(sz))

    def apply_diff(self, msg):
        """Apply a depth message's levels ``msg.b`` (bids) and ``msg.a`` (asks); a
        :class:`Diff` straight from its C doubles."""
        cdef Diff m
        cdef Py_ssize_t i
        cdef const double* lv
        if type(msg) is not Diff:
            self.apply(msg.b, msg.a)
            return
        m = <Diff>msg
        lv = m.lv
        for i in range(m.nb):
            self._bid(lv[2 * i], lv[2 * i + 1])
        for i in range(m.nb, m.nb + m.na):
            self._ask(lv[2 * i], lv[2 * i + 1])

    cdef tuple _level(self, const Table* t, double px):
        cdef Py_ssize_t i = _find(t, px)
        if i < 0:
            raise KeyError(px)
        return (PyFloat_FromDouble(px), PyFloat_FromDouble(t.s[i].val))

    def best_bid(self):
        """Highest bid as ``(price, size)``, or None if there are no bids."""
        if self.bc.n == 0:
            _refill(&self.bc, &self.bt, self._k, True)
            if self.bc.n == 0:
                return None
        return self._level(&self.bt, self.bc.v[self.bc.n - 1])

    def best_ask(self):
        """Lowest ask as ``(price, size)``, or None if there are no asks."""
        if self.ac.n == 0:
            _refill(&self.ac, &self.at, self._k, False)
            if self.ac.n == 0:
                return None
        return self._level(&self.at, self.ac.v[0])

    cpdef bint crossed(self) except -1:
        """True when the best bid is at or above the best ask."""
        if self.bc.n == 0:
            _refill(&self.bc, &self.bt, self._k, True)
        if self.ac.n == 0:
            _refill(&self.ac, &self.at, self._k, False)
        return self.bc.n > 0 and self.ac.n > 0 and self.bc.v[self.bc.n - 1] >= self.ac.v[0]

    def top(self, n):
        """The best ``n`` levels per side, best first, in O(n) from the caches."""
        cdef Py_ssize_t k = n, i, m
        if k <= 0:
            return [], []
        if self.bc.n < k:
            _refill(&self.bc, &self.bt, max(self._k, k), True)
        if self.ac.n < k:
            _refill(&self.ac, &self.at, max(self._k, k), False)
        m = min(k, self.bc.n)
        b = PyList_New(m)
        for i in range(m):
            t = self._level(&self.bt, self.bc.v[self.bc.n - 1 - i])
            Py_INCREF(t)
            PyList_SET_ITEM(b, i, t)
        m = min(k, self.ac.n)
        a = PyList_New(m)
        for i in range(m):
            t = self._level(&self.at, self.ac.v[i])
            Py_INCREF(t)
            PyList_SET_ITEM(a, i, t)
        return b, a

    def levels(self):
        """Every level per side, best first (sorts the whole book: not for the hot path)."""
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


# -- depth messages parsed from JSON text -----------------------------------------------

cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define VOLCAST_SWAR 1
    #else
    #define VOLCAST_SWAR 0
    #endif
    """
    const bint VOLCAST_SWAR


cdef inline bint _eight_digits(uint64_t v) noexcept nogil:
    """True if the 8 bytes of ``v`` are all ASCII digits (simdjson's test)."""
    return ((v & 0xF0F0F0F0F0F0F0F0ULL) | (((v + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) \
        == 0x3333333333333333ULL


cdef inline uint64_t _parse_eight(uint64_t v) noexcept nogil:
    """The value of 8 ASCII digits read little-endian (simdjson's SWAR conversion)."""
    v = ((v & 0x0F0F0F0F0F0F0F0FULL) * 2561ULL) >> 8
    v = ((v & 0x00FF00FF00FF00FFULL) * 6553601ULL) >> 16
    return ((v & 0x0000FFFF0000FFFFULL) * 42949672960001ULL) >> 32


cdef inline const char* _digits(const char* p, const char* end, uint64_t* m, int* nd) noexcept nogil:
    """Consume ``[0-9]*`` into ``m``; NULL once more than 19 digits were read."""
    cdef uint64_t v
    if VOLCAST_SWAR:
        while end - p >= 8:
            memcpy(&v, p, 8)
            if not _eight_digits(v):
                break
            if nd[0] > 11:
                return NULL
            m[0] = m[0] * 100000000ULL + _parse_eight(v)
            nd[0] += 8
            p += 8
    while p < end and c'0' <= p[0] <= c'9':
        if nd[0] == 19:
            return NULL
        m[0] = m[0] * 10 + <uint64_t>(p[0] - c'0')
        nd[0] += 1
        p += 1
    return p


cdef inline const char* _ws(const char* p, const char* end) noexcept nogil:
    while p < end and (p[0] == c' ' or p[0] == c'\n' or p[0] == c'\r' or p[0] == c'\t'):
        p += 1
    return p


cdef inline const char* _decimal(const char* p, const char* end, double* out) noexcept nogil:
    """``"<digits>[.<digits>]"`` (JSON number grammar, no sign or exponent) -> out.

    Returns the position after the closing quote, or NULL for anything else (or for
    a value this fast path cannot round exactly).
    """
    cdef uint64_t m = 0
    cdef int nd = 0, frac
    if p >= end or p[0] != c'"':
        return NULL
    p += 1
    if p >= end:
        return NULL
    if p[0] == c'0':
        p += 1
        if p < end and c'0' <= p[0] <= c'9':
            return NULL  # a leading zero is not JSON
    elif c'1' <= p[0] <= c'9':
        p = _digits(p, end, &m, &nd)
        if p == NULL:
            return NULL
    else:
        return NULL
    frac = nd
    if p < end and p[0] == c'.':
        p += 1
        if not (p < end and c'0' <= p[0] <= c'9'):
            return NULL
        p = _digits(p, end, &m, &nd)
        if p == NULL:
            return NULL
    frac = nd - frac
    if p >= end or p[0] != c'"':
        return NULL
    if m == 0:
        out[0] = 0.0
    elif m > _MAX_EXACT or frac > 22:
        return NULL
    else:
        out[0] = <double>m / _POW10[frac]
    return p + 1


cdef const char* _levels_span(const char* p, const char* end, double* out, Py_ssize_t* count) noexcept nogil:
    """Parse ``[["p","s"],...]`` at ``p`` into ``out`` (price, size pairs); the position
    after it, or NULL if not that shape or a price is not > 0 (the typed decoder then
    reports it)."""
    cdef Py_ssize_t n = 0
    if p >= end or p[0] != c'[':
        return NULL
    p = _ws(p + 1, end)
    if p < end and p[0] == c']':
        count[0] = 0
        return p + 1
    while True:
        if p >= end or p[0] != c'[':
            return NULL
        p = _decimal(_ws(p + 1, end), end, &out[2 * n])
        if p == NULL:
            return NULL
        p = _ws(p, end)
        if p >= end or p[0] != c',':
            return NULL
        p = _decimal(_ws(p + 1, end), end, &out[2 * n + 1])
        if p == NULL:
            return NULL
        p = _ws(p, end)
        if p >= end or p[0] != c']':
            return NULL
        if not out[2 * n] > 0.0:
            return NULL
        n += 1
        p = _ws(p + 1, end)
        if p < end and p[0] == c',':
            p = _ws(p + 1, end)
            continue
        if p < end and p[0] == c']':
            count[0] = n
            return p + 1
        return NULL


cdef Py_ssize_t _levels(const char* p, const char* end, double* out) noexcept nogil:
    """A whole buffer holding one level array (a ``msgspec.Raw``): its level count, or -1."""
    cdef Py_ssize_t n
    p = _levels_span(_ws(p, end), end, out, &n)
    if p == NULL or _ws(p, end) != end:
        return -1
    return n


cdef inline const char* _uint(const char* p, const char* end, long long* out) noexcept nogil:
    """A JSON integer >= 0 of at most 18 digits, or NULL."""
    cdef uint64_t m = 0
    cdef int nd = 0
    if p >= end:
        return NULL
    if p[0] == c'0':
        p += 1
        if p < end and c'0' <= p[0] <= c'9':
            return NULL
    elif c'1' <= p[0] <= c'9':
        p = _digits(p, end, &m, &nd)
        if p == NULL or nd > 18:
            return NULL
    else:
        return NULL
    if p < end and (p[0] == c'.' or p[0] == c'e' or p[0] == c'E'):
        return NULL  # a float: not for the fast path
    out[0] = <long long>m
    return p


cdef inline const char* _plain_str(const char* p, const char* end) noexcept nogil:
    """A JSON string of printable ASCII without escapes; the position after it, or NULL."""
    if p >= end or p[0] != c'"':
        return NULL
    p += 1
    while p < end and p[0] != c'"':
        if p[0] < 0x20 or p[0] > 0x7E or p[0] == c'\\':
            return NULL
        p += 1
    return p + 1 if p < end else NULL


cdef inline const char* _lit(const char* p, const char* end, const char* s, Py_ssize_t n) noexcept nogil:
    if end - p < n or memcmp(p, s, n) != 0:
        return NULL
    return p + n


cdef inline const char* _skip_uint(const char* p, const char* end) noexcept nogil:
    cdef long long ignored
    return _uint(p, end, &ignored)


# Bits of the keys a Binance depth payload may carry.
cdef enum:
    K_e = 1
    K_s = 2
    K_T = 4
    K_E = 8
    K_U = 16
    K_u = 32
    K_pu = 64
    K_b = 128
    K_a = 256
    K_REQUIRED = K_E | K_U | K_u | K_b | K_a


cdef Diff _diff_from_frame(const char* p, const char* end):
    """A whole combined-stream depth frame in the exact compact form Binance sends,
    ``{"stream":"..","data":{..}}`` with no whitespace, each key of the payload at most
    once and only the keys it has (``e``, ``E``, ``T``, ``s``, ``U``, ``u``, ``pu``, ``b``
    then ``a``), as a :class:`Diff`; None for anything else."""
    cdef long long E = 0, U = 0, u = 0, pu = 0
    cdef int seen = 0, key
    cdef Py_ssize_t nb = 0, na = 0
    cdef Diff d = Diff.__new__(Diff)
    cdef const char* q
    d.lv = <double*>PyMem_Malloc(((end - p) // 9 + 2) * 2 * sizeof(double))
    if d.lv == NULL:
        raise MemoryError()
    p = _lit(p, end, b'{"stream":', 10)
    if p == NULL:
        return None
    p = _plain_str(p, end)
    if p == NULL:
        return None
    p = _lit(p, end, b',"data":{', 9)
    if p == NULL:
        return None
    while True:
        if end - p < 4 or p[0] != c'"':
            return None
        if p[2] == c'"' and p[3] == c':':
            if p[1] == c'e':
                key = K_e
            elif p[1] == c's':
                key = K_s
            elif p[1] == c'T':
                key = K_T
            elif p[1] == c'E':
                key = K_E
            elif p[1] == c'U':
                key = K_U
            elif p[1] == c'u':
                key = K_u
            elif p[1] == c'b':
                key = K_b
            elif p[1] == c'a':
                key = K_a
            else:
                return None
            p += 4
        elif end - p >= 5 and p[1] == c'p' and p[2] == c'u' and p[3] == c'"' and p[4] == c':':
            key = K_pu
            p += 5
        else:
            return None
        if seen & key or (key == K_b and seen & K_a):
            return None  # a repeated key, or asks before bids
        seen |= key
        if key == K_e or key == K_s:
            p = _plain_str(p, end)
        elif key == K_T:
            p = _skip_uint(p, end)
        elif key == K_E:
            p = _uint(p, end, &E)
        elif key == K_U:
            p = _uint(p, end, &U)
        elif key == K_u:
            p = _uint(p, end, &u)
        elif key == K_pu:
            p = _uint(p, end, &pu)
        elif key == K_b:
            p = _levels_span(p, end, d.lv, &nb)
        else:
            p = _levels_span(p, end, d.lv + 2 * nb, &na)
        if p == NULL or p >= end:
            return None
        if p[0] == c',':
            p += 1
            continue
        if p[0] == c'}':
            break
        return None
    if (seen & K_REQUIRED) != K_REQUIRED:
        return None
    if end - p != 2 or p[1] != c'}':
        return None
    d.E = E
    d.U = U
    d.u = u
    d.pu = pu if seen & K_pu else None
    d.nb = nb
    d.na = na
    return d


cdef object _ZERO = 0.0  # one shared float for the many zero sizes (deletes)


cdef list _unpack(const double* lv, Py_ssize_t start, Py_ssize_t n):
    cdef list out = PyList_New(n)
    cdef Py_ssize_t i
    cdef double sz
    for i in range(n):
        sz = lv[2 * (start + i) + 1]
        if sz == 0.0 and not signbit(sz):
            t = (PyFloat_FromDouble(lv[2 * (start + i)]), _ZERO)
        else:
            t = (PyFloat_FromDouble(lv[2 * (start + i)]), PyFloat_FromDouble(sz))
        Py_INCREF(t)
        PyList_SET_ITEM(out, i, t)
    return out


@cython.final
@cython.freelist(64)
@cython.no_gc
cdef class Diff:
    """A diff-depth message (Binance field names) with its levels as C doubles.

    ``b``/``a`` are lists of ``(price, size)`` float tuples, built when first read.
    """

    cdef readonly object E, U, u, pu
    cdef double* lv  # bids then asks, (price, size) pairs
    cdef Py_ssize_t nb, na
    cdef list _b, _a

    def __dealloc__(self):
        PyMem_Free(self.lv)

    @property
    def b(self):
        if self._b is None:
            self._b = _unpack(self.lv, 0, self.nb)
        return self._b

    @property
    def a(self):
        if self._a is None:
            self._a = _unpack(self.lv, self.nb, self.na)
        return self._a

    @property
    def data(self):
        """The message itself (the payload of a decoded frame, as for msgspec envelopes)."""
        return self

    def __reduce__(self):
        return (diff_from_lists, (self.E, self.U, self.u, self.pu, self.b, self.a))

    def __repr__(self):
        return f"Diff(E={self.E}, U={self.U}, u={self.u}, pu={self.pu}, b={self.b}, a={self.a})"

    def __eq__(self, other):
        if type(other) is not Diff:
            return NotImplemented
        o = <Diff>other
        return (self.E, self.U, self.u, self.pu, self.b, self.a) == (o.E, o.U, o.u, o.pu, o.b, o.a)

    __hash__ = None


cdef Diff _new_diff(object E, object U, object u, object pu, Py_ssize_t cap):
    cdef Diff d = Diff.__new__(Diff)
    d.E = E
    d.U = U
    d.u = u
    d.pu = pu
    d.lv = <double*>PyMem_Malloc(max(cap, 1) * 2 * sizeof(double))
    if d.lv == NULL:
        raise MemoryError()
    return d


def diff_from_lists(E, U, u, pu, list b, list a):
    """A :class:`Diff` of levels already decoded as ``(price, size)`` float pairs."""
    cdef Py_ssize_t nb = len(b), na = len(a), i
    cdef Diff d = _new_diff(E, U, u, pu, nb + na)
    for i in range(nb):
        px, sz = b[i]
        d.lv[2 * i] = PyFloat_AsDouble(px)
        d.lv[2 * i + 1] = PyFloat_AsDouble(sz)
    for i in range(na):
        px, sz = a[i]
        d.lv[2 * (nb + i)] = PyFloat_AsDouble(px)
        d.lv[2 * (nb + i) + 1] = PyFloat_AsDouble(sz)
    d.nb = nb
    d.na = na
    d._b = b
    d._a = a
    return d


cdef Diff _diff_from_raw(object E, object U, object u, object pu, object raw_b, object raw_a):
    """A :class:`Diff` parsed from the JSON text of its level arrays, or None if either
    array is not in the plain shape :func:`_levels` reads."""
    cdef Py_buffer vb, va
    cdef Diff d = None
    cdef Py_ssize_t nb, na
    PyObject_GetBuffer(raw_b, &vb, PyBUF_SIMPLE)
    try:
        PyObject_GetBuffer(raw_a, &va, PyBUF_SIMPLE)
        try:
            # every level takes at least 9 bytes: ["0","0"]
            d = _new_diff(E, U, u, pu, (vb.len + va.len) // 9 + 2)
            nb = _levels(<const char*>vb.buf, <const char*>vb.buf + vb.len, d.lv)
            if nb < 0:
                return None
            na = _levels(<const char*>va.buf, <const char*>va.buf + va.len, d.lv + 2 * nb)
            if na < 0:
                return None
            d.nb = nb
            d.na = na
        finally:
            PyBuffer_Release(&va)
    finally:
        PyBuffer_Release(&vb)
    return d


def parse_levels(raw):
    """``[["p","s"],...]`` JSON text -> list of ``(price, size)`` floats, or None if it
    is not in the plain shape this module parses (the level grammar of
    :class:`DiffDecoder`'s one-pass parse, exposed for tests).

    >>> parse_levels(b'[["61837.63000000","0.02000000"],["1","0"]]')
    [(61837.63, 0.02), (1.0, 0.0)]
    >>> parse_levels(b'[["1e3","1"]]') is None
    True
    """
    d = _diff_from_raw(None, None, None, None, raw, b"[]")
    return None if d is None else d.b


def parse_frame(bytes data):
    """The one-pass parse of :class:`DiffDecoder` alone: a :class:`Diff`, or None where
    the decoder would use its typed decoder (exposed for tests)."""
    cdef const char* s = <const char*>data
    return _diff_from_frame(s, s + len(data))


@cython.final
cdef class DiffDecoder:
    """Decode a depth frame to a :class:`Diff`; raise exactly what ``typed`` raises.

    ``typed`` is the msgspec decoder of the message (or of its envelope, if
    ``envelope``: then the message is its ``data``), with fields ``E``, ``U``, ``u``,
    ``pu`` and ``b``/``a`` as lists of validated ``(price, size)`` floats. A whole
    envelope in Binance's exact compact form is parsed here in one pass (see
    :func:`_diff_from_frame`); every other input goes through ``typed``, so which
    frames are accepted, the values and the errors are ``typed``'s.
    """

    cdef object _typed
    cdef bint _envelope

    def __init__(self, typed, bint envelope):
        self._typed = typed
        self._envelope = envelope

    def decode(self, data):
        cdef Diff d
        cdef const char* s
        if self._envelope and type(data) is bytes:
            s = <const char*>data
            d = _diff_from_frame(s, s + len(<bytes>data))
            if d is not None:
                return d
        m = self._typed.decode(data)  # raises the canonical error for a bad frame
        if self._envelope:
            m = m.data
        return diff_from_lists(m.E, m.U, m.u, m.pu, m.b, m.a)
