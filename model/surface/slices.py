"""From a list of quotes to per-expiry arrays the fitter reads: forward, k, targets, bounds, weights.

Per expiry, in this order:

1. **Drop** quotes that cannot inform a fit: expiry closer than ``min_expiry_s``;
   older than ``max_quote_age_s`` before ``now`` (stale); non-positive strike; a
   repeated instrument (the latest quote wins).
2. **Forward**: the median of the expiry's explicit ``forward`` hints, else of its
   ``underlying_price`` (Deribit values each option against the expiry's future or
   synthetic future), else put-call parity on coin mid prices near the money:
   ``(C - P) F = F - K``, so ``F = K / (1 - (C - P))``.
3. **IVs**: the venue's IVs when present; otherwise Black-76 inversions of the coin
   bid, ask and mark prices (a coin price is the normalized forward price, see
   :mod:`model.surface.black`). A quote that carries its own underlying price is
   placed at ``k = ln(K / F_quote)``, the moneyness its IV was computed at.
4. **One out-of-the-money quote per strike**: the call for ``K >= F``, the put below.
5. **Roles**: a quote somebody bids for (bid > 0) is a *fitted quote*. Its target is
   the mark IV, else the mid-price IV when it also has an ask; a bid-only quote with
   no mark is a lower bound only. A mark outside the quote's own bid/ask is stale
   against the live market, so the target is clipped into ``[bid_iv, ask_iv]`` (the
   score still compares with the mark). A quote with no bid is an upper bound (its ask)
   only: a zero bid means the market does not resolve its value, and its mark is
   the venue's extrapolation (the CBOE VIX rule also skips zero-bid options). A
   crossed quote (bid IV above ask IV) is dropped.
6. **Weights**: a fitted quote's uncertainty is its IV half-spread, floored at
   ``spread_floor`` and capped at ``spread_cap``; a bid-only quote gets
   ``one_sided_factor`` x the expiry's median half-spread. A residual in vol over the
   IV half-spread equals the price residual (vega x vol) over the price half-spread,
   so this is the vega-and-spread weighting of a price fit, expressed in vol.

>>> from connectors.events import OptionQuote
>>> q = [OptionQuote(expiry_ns=30 * DAY_NS, strike=k, is_call=k >= 100, ts_ns=0, underlying_price=100.0,
...                  bid_iv=0.5, ask_iv=0.52, mark_iv=0.51) for k in (90.0, 100.0, 110.0)]
>>> sl, dropped = build_slices(q, now_ns=0, cfg=FitConfig())
>>> sl[0].forward, sl[0].n_targets, dict(dropped)
(100.0, 3, {})
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from connectors.events import OptionQuote
from model.surface.black import implied_total_vol
from model.surface.config import DAY_NS, SECOND_NS, YEAR_NS, FitConfig

__all__ = ["Slice", "build_slices", "quote_columns"]


@dataclass(frozen=True)
class Slice:
    """One expiry's cleaned quotes (one OTM quote per strike), sorted by strike."""

    expiry_ns: int
    t: float  # years to expiry, 365-day year
    forward: float
    forward_source: str  # "forward", "underlying" or "parity"
    strike: np.ndarray
    k: np.ndarray  # ln(K / F) (per-quote forward where the quote carries one)
    is_call: np.ndarray
    target: np.ndarray  # IV the fit aims at; NaN for bound-only quotes
    ref_iv: np.ndarray  # IV the fit is scored against (mark, else mid); NaN where none
    ref_is_mark: np.ndarray  # True where ref_iv is the mark IV
    bid_iv: np.ndarray  # NaN where no bid
    ask_iv: np.ndarray  # NaN where no ask
    unc: np.ndarray  # uncertainty of the target / bound, IV (half-spread)
    symbols: tuple[str, ...]
    n_dropped: int

    @property
    def n_targets(self) -> int:
        return int(np.isfinite(self.target).sum())

    @property
    def fitted(self) -> np.ndarray:
        return np.isfinite(self.target)


_FIELDS = ("expiry_ns", "strike", "is_call", "ts_ns", "underlying_price", "forward", "bid_iv", "ask_iv",
           "mark_iv", "bid_price", "ask_price", "mark_price")


class _Columns(dict):
    """Column arrays of the quotes, each converted on first use (``None`` becomes NaN).

    Converting a column of Python floats costs tens of microseconds per thousand
    quotes, so the price columns, which only prices-only sources need, are left as
    they came unless somebody reads them.
    """

    def __init__(self, quotes: Sequence[OptionQuote]) -> None:
        super().__init__()
        # OptionQuote's fields are _FIELDS + symbol, in order
        self._raw = dict(zip(_FIELDS + ("symbol",), zip(*map(msgspec.structs.astuple, quotes)))) if quotes else {}
        self._n = len(quotes)

    def __missing__(self, name: str) -> np.ndarray:
        col = self._raw.get(name, ())
        if name == "symbol":
            out = np.array(col, dtype=object)
        elif name in ("expiry_ns", "ts_ns"):
            out = np.array(col, dtype=np.int64)
        elif name == "is_call":
            out = np.array(col, dtype=bool)
        elif col.count(None) == self._n:
            out = np.full(self._n, np.nan)
        else:
            out = np.array(col, dtype=np.float64)  # a float column turns None into NaN
        self[name] = out
        return out


def quote_columns(quotes: Sequence[OptionQuote]) -> dict[str, np.ndarray]:
    """Column arrays of the quotes by field name (and ``symbol``); ``None`` becomes NaN.

    >>> from connectors.events import OptionQuote
    >>> c = quote_columns([OptionQuote(expiry_ns=1, strike=100.0, is_call=True, ts_ns=0, bid_iv=0.5)])
    >>> c["bid_iv"].tolist(), c["ask_iv"].tolist(), c["expiry_ns"].dtype.name
    ([0.5], [nan], 'int64')
    """
    return _Columns(quotes)


def _group_median(x: np.ndarray, group: np.ndarray, use: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group median of ``x[use]`` (as ``np.median``: the mean of the two middle values); NaN for none."""
    g, v = group[use], x[use]
    order = np.lexsort((v, g))
    v = v[order]
    count = np.bincount(g, minlength=n_groups)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    out = np.full(n_groups, np.nan)
    has = count > 0
    lo, hi = start[has] + (count[has] - 1) // 2, start[has] + count[has] // 2
    out[has] = (v[lo] + v[hi]) / 2.0
    return out


def _parity_forward(strike, is_call, bid, ask) -> float:
    """``F = K / (1 - (C - P))`` on coin mids, median over the 3 strikes where |C - P| is least."""
    mid = 0.5 * (bid + ask)
    calls = {float(k): m for k, c, m in zip(strike, is_call, mid) if c and np.isfinite(m)}
    puts = {float(k): m for k, c, m in zip(strike, is_call, mid) if not c and np.isfinite(m)}
    both = sorted(set(calls) & set(puts), key=lambda k: abs(calls[k] - puts[k]))[:3]
    est = [k / (1.0 - (calls[k] - puts[k])) for k in both if calls[k] - puts[k] < 1.0]
    return float(np.median(est)) if est else math.nan


def build_slices(quotes: Sequence[OptionQuote], now_ns: int, cfg: FitConfig) -> tuple[list[Slice], Counter]:
    """Clean, group and weight the quotes; also return the count of dropped quotes by reason.

    Every step runs on all expiries at once (per-expiry values are gathered by the
    expiry's group index), so the cost is a fixed number of array operations.
    """
    dropped: Counter = Counter()
    c = quote_columns(quotes)
    n = len(c["strike"])
    if n == 0:
        return [], dropped
    keep = np.ones(n, dtype=bool)

    def drop(mask: np.ndarray, reason: str) -> None:
        hit = mask & keep
        if hit.any():
            dropped[reason] += int(hit.sum())
            keep[hit] = False

    drop(c["expiry_ns"] - now_ns < cfg.min_expiry_s * SECOND_NS, "expired_or_too_close")
    drop(c["ts_ns"] < now_ns - cfg.max_quote_age_s * SECOND_NS, "stale")
    drop(~(np.isfinite(c["strike"]) & (c["strike"] > 0)), "bad_strike")
    # the latest quote of each instrument wins
    order = np.lexsort((c["ts_ns"], c["is_call"], c["strike"], c["expiry_ns"]))
    key = np.stack([c["expiry_ns"][order], c["strike"][order].view(np.int64), c["is_call"][order]], axis=1)
    last = np.ones(n, dtype=bool)
    last[:-1] = np.any(key[1:] != key[:-1], axis=1)
    dup = np.zeros(n, dtype=bool)
    dup[order[~last]] = True
    drop(dup, "duplicate")
    if not keep.any():
        return [], dropped

    idx = np.flatnonzero(keep)
    expiries, grp = np.unique(c["expiry_ns"][idx], return_inverse=True)
    n_exp = len(expiries)
    t_exp = (expiries - now_ns).astype(np.float64) / YEAR_NS
    strike, is_call = c["strike"][idx], c["is_call"][idx]
    # Zero or negative IVs and prices mean an empty side.
    iv = {f: np.where(c[f][idx] > 0, c[f][idx], np.nan) for f in ("bid_iv", "ask_iv", "mark_iv")}

    def price(f: str) -> np.ndarray:
        return np.where(c[f][idx] > 0, c[f][idx], np.nan)

    fwd_hint, und = c["forward"][idx], c["underlying_price"][idx]
    fwd_q = np.where(np.isfinite(fwd_hint), fwd_hint, und)
    fwd_q = np.where(fwd_q > 0, fwd_q, np.nan)

    forward = _group_median(fwd_hint, grp, np.isfinite(fwd_hint) & (fwd_hint > 0), n_exp)
    source = np.where(np.isfinite(forward), "forward", "underlying").astype(object)
    from_und = _group_median(und, grp, np.isfinite(und) & (und > 0), n_exp)
    forward = np.where(np.isfinite(forward), forward, from_und)
    for e in np.flatnonzero(~np.isfinite(forward)):
        m = grp == e
        forward[e], source[e] = _parity_forward(strike[m], is_call[m], price("bid_price")[m],
                                                price("ask_price")[m]), "parity"
    no_forward = ~(np.isfinite(forward) & (forward > 0))
    if no_forward.any():
        dropped["no_forward"] += int(no_forward[grp].sum())

    f_g = forward[grp]
    fq = np.where(np.isfinite(fwd_q), fwd_q, f_g)
    with np.errstate(invalid="ignore", divide="ignore"):  # quotes of an expiry without a forward: left out below
        k = np.log(strike / fq)
    sqrt_t = np.sqrt(t_exp)[grp]

    # Venue IVs are used as they are; prices are inverted only for quotes without any
    # venue IV (prices-only sources), and only for the OTM quote of each strike.
    otm = np.where(is_call, strike >= f_g, strike < f_g)
    vendor = np.isfinite(iv["mark_iv"]) | np.isfinite(iv["bid_iv"]) | np.isfinite(iv["ask_iv"])
    invert = otm & ~vendor & ~no_forward[grp]

    bid_iv, ask_iv, mark_iv = iv["bid_iv"], iv["ask_iv"], iv["mark_iv"]
    mid_iv = np.full(len(idx), np.nan)  # only needed where there is no mark
    two = np.zeros(len(idx), dtype=bool)  # quotes whose mid IV is the inversion of their mid price
    if invert.any():
        bid_px, ask_px, mark_px = price("bid_price"), price("ask_price"), price("mark_price")

        def ivs(given: np.ndarray, px: np.ndarray) -> np.ndarray:
            need = invert & np.isfinite(px)
            if not need.any():
                return given
            out = given.copy()
            out[need] = implied_total_vol(px[need], k[need], is_call[need]) / sqrt_t[need]
            return out

        bid_iv, ask_iv, mark_iv = ivs(bid_iv, bid_px), ivs(ask_iv, ask_px), ivs(mark_iv, mark_px)
        two = invert & ~np.isfinite(mark_iv) & np.isfinite(bid_px) & np.isfinite(ask_px) & (ask_px >= bid_px)
        if two.any():
            mid_iv[two] = implied_total_vol(0.5 * (bid_px[two] + ask_px[two]), k[two], is_call[two]) / sqrt_t[two]
    two_iv = ~np.isfinite(mark_iv) & ~two & np.isfinite(bid_iv) & np.isfinite(ask_iv)
    mid_iv[two_iv] = 0.5 * (bid_iv[two_iv] + ask_iv[two_iv])

    # one OTM quote per strike (by the expiry forward)
    priced = ~no_forward[grp]
    itm = priced & ~otm
    crossed = priced & otm & np.isfinite(bid_iv) & np.isfinite(ask_iv) & (bid_iv > ask_iv)
    no_market = priced & otm & ~crossed & ~np.isfinite(bid_iv) & ~np.isfinite(ask_iv)
    sel = priced & otm & ~crossed & ~no_market
    for reason, mask in (("itm", itm), ("crossed", crossed), ("no_bid_no_ask", no_market)):
        if mask.any():
            dropped[reason] += int(mask.sum())
    n_bad = np.bincount(grp, weights=itm | crossed | no_market, minlength=n_exp).astype(int)

    s_idx = np.flatnonzero(sel)
    s_idx = s_idx[np.lexsort((strike[s_idx], grp[s_idx]))]  # by expiry, then strike
    g = grp[s_idx]
    b, a, m, md = bid_iv[s_idx], ask_iv[s_idx], mark_iv[s_idx], mid_iv[s_idx]
    has_bid, has_ask = np.isfinite(b), np.isfinite(a)
    target = np.where(has_bid & np.isfinite(m), m, np.where(has_bid & has_ask, md, np.nan))
    # a mark outside its own live market is stale against it: aim at the nearer edge
    target = np.where(has_bid & has_ask, np.clip(target, b, a), np.where(has_bid, np.maximum(target, b), target))
    ref = np.where(np.isfinite(target), np.where(np.isfinite(m), m, md), np.nan)
    half = np.where(has_bid & has_ask, 0.5 * (a - b), np.nan)
    med = _group_median(half, g, np.isfinite(half), n_exp)
    med = np.where(np.isfinite(med), med, 0.05)
    unc = np.clip(np.where(np.isfinite(half), half, cfg.one_sided_factor * med[g]), cfg.spread_floor, cfg.spread_cap)
    symbols = c["symbol"][idx][s_idx]

    slices: list[Slice] = []
    bounds = np.searchsorted(g, np.arange(n_exp + 1))
    for e in range(n_exp):
        lo, hi = bounds[e], bounds[e + 1]
        if lo == hi:
            continue
        q = s_idx[lo:hi]
        slices.append(Slice(
            expiry_ns=int(expiries[e]), t=float(t_exp[e]), forward=float(forward[e]), forward_source=str(source[e]),
            strike=strike[q], k=k[q], is_call=is_call[q], target=target[lo:hi], ref_iv=ref[lo:hi],
            ref_is_mark=np.isfinite(m[lo:hi]), bid_iv=b[lo:hi], ask_iv=a[lo:hi], unc=unc[lo:hi],
            symbols=tuple(symbols[lo:hi]), n_dropped=int(n_bad[e]),
        ))
    return slices, dropped


_ = DAY_NS  # re-exported for the doctest above
