"""What the attention model's input rows and outputs mean: the :class:`ModelSpec` a checkpoint carries.

The network reads windows of *bar rows* (:mod:`model.nn.inputs`): one row per
bar of ``bar_ns``, built from an OHLCV bar file or from 1-minute aggregates of the
live feature rows (:class:`model.bars.BarAggregator`). The spec names every row
channel, the bar length, the window length, the HAR lags the rows carry and the
forecast horizons; principle 5: a checkpoint carries it and a flow whose rows
differ is refused with the first difference.

Horizons and lags follow the bar length (:func:`horizons_for`, :func:`lags_for`):

* horizons are the defaults 5m, 15m, 1h, 4h when all are whole multiples of the
  bar; otherwise the first four of the ladder 1m, 5m, 15m, 1h, 4h, 12h, 1d, 3d,
  7d, 14d, 28d that are (1-hour bars: 1h, 4h, 12h, 1d; daily bars: 1d, 3d, 7d, 14d);
* HAR lags cascade from the first horizon ``h1`` as ``h1 x (1, 6, 48, 288)``,
  Corsi's day/week/month spacing scaled down (1-minute bars: 5m, 30m, 4h, 1d;
  1-hour bars: 1h, 6h, 2d, 12d). The third lag is the *reference*: row channels
  and targets are log variances relative to it, so the model is scale-free
  across assets, venues and years.

>>> [h.name for h in horizons_for(60 * SECOND_NS)], [h.name for h in horizons_for(HOUR_NS)]
(['5m', '15m', '1h', '4h'], ['1h', '4h', '12h', '1d'])
>>> [lag.name for lag in lags_for(horizons_for(HOUR_NS))]
['1h', '6h', '2d', '12d']
"""

from __future__ import annotations

import msgspec

from model.features import FeatureSpec
from model.horizons import DEFAULT_HORIZONS, HOUR_NS, SECOND_NS, Horizon

LADDER: tuple[Horizon, ...] = tuple(
    Horizon.parse(x) for x in ("1m", "5m", "15m", "1h", "4h", "12h", "1d", "3d", "7d", "14d", "28d")
)
LAG_MULTIPLES: tuple[int, ...] = (1, 6, 48, 288)
REFERENCE_LAG = 2  # index into the lags: the level every log variance is taken relative to
QUANTILES: tuple[float, float, float] = (0.1, 0.5, 0.9)

# Row channels: (name, definition). "ref" is the per-bar variance over the reference
# lag; v_L is the per-bar variance over lag L (coverage-rescaled sum / bars).
BOOK_CHANNELS: tuple[tuple[str, str], ...] = (
    ("log_spread", "ln of the bar's mean spread_bps (live rows only)"),
    ("imbalance_l1", "bar mean of imbalance_l1 (live rows only)"),
    ("ofi", "bar mean of the per-step ofi (live rows only)"),
    ("log_trades", "ln(1 + trade_count in the bar) minus its mean over the reference lag (live rows only)"),
    ("signed_share", "signed_volume / trade volume in the bar (live rows only)"),
)


def channel_table(lags: tuple[Horizon, ...]) -> tuple[tuple[str, str], ...]:
    """Names and definitions of the row channels for these lags (order = column order).

    >>> [name for name, _ in channel_table(lags_for(DEFAULT_HORIZONS))][:4]
    ['ret', 'log_r2', 'log_range', 'rv_5m']
    """
    ref = lags[REFERENCE_LAG].name
    rv_lags = [lag for i, lag in enumerate(lags) if i != REFERENCE_LAG]
    return (
        ("ret", "bar close-to-close log return / sqrt(ref), clipped to +-10"),
        ("log_r2", "ln(r^2 / ref + 0.01), r the bar log return"),
        ("log_range", "ln(P / ref + 0.01), P = ln(high/low)^2 / (4 ln 2), Parkinson (1980)"),
        *((f"rv_{lag.name}", f"ln(v_{lag.name} / ref + 0.001): squared returns over {lag.name}") for lag in rv_lags),
        *((f"range_{lag.name}", f"ln(P_{lag.name} / ref + 0.001): Parkinson variance over {lag.name}") for lag in lags),
        ("log_volume", f"ln(volume / mean bar volume over {ref} + 0.01)"),
        ("tod_sin", "sin(2 pi time-of-day), UTC, at the bar end"),
        ("tod_cos", "cos(2 pi time-of-day)"),
        *BOOK_CHANNELS,
    )


def horizons_for(bar_ns: int) -> tuple[Horizon, ...]:
    """Forecast horizons for bars of ``bar_ns`` (see the module docstring).

    >>> [h.name for h in horizons_for(86_400 * SECOND_NS)]
    ['1d', '3d', '7d', '14d']
    """
    if all(h.ns % bar_ns == 0 and h.ns >= bar_ns for h in DEFAULT_HORIZONS):
        return DEFAULT_HORIZONS
    usable = [h for h in LADDER if h.ns >= bar_ns and h.ns % bar_ns == 0]
    if len(usable) < 4:
        raise ValueError(f"no four ladder horizons are whole multiples of a {bar_ns} ns bar")
    return tuple(usable[:4])


def lags_for(horizons: tuple[Horizon, ...]) -> tuple[Horizon, ...]:
    """HAR lags ``h1 x (1, 6, 48, 288)``, ``h1`` the first horizon.

    >>> [lag.name for lag in lags_for(DEFAULT_HORIZONS)]
    ['5m', '30m', '4h', '1d']
    """
    h1 = horizons[0].ns
    return tuple(Horizon.parse(_label(h1 * m)) for m in LAG_MULTIPLES)


def _label(ns: int) -> str:
    from model.horizons import format_duration

    return format_duration(ns)


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Input rows, window and outputs of an attention checkpoint (principle 5).

    ``outputs`` names the heads (``"rv"``: log realized-variance mean and
    quantiles per horizon); heads for ATM IV, RR25 and BF25 changes get their own
    names when surface data exists, and a flow serves any head a checkpoint lacks
    from a named baseline.
    """

    bar_ns: int
    window: int
    horizons: tuple[str, ...]
    lags: tuple[str, ...]
    channels: tuple[str, ...]
    descriptions: tuple[str, ...]
    outputs: tuple[str, ...] = ("rv",)
    quantiles: tuple[float, ...] = QUANTILES
    version: int = 1

    @property
    def horizon_objs(self) -> tuple[Horizon, ...]:
        return tuple(Horizon.parse(h) for h in self.horizons)

    @property
    def lag_objs(self) -> tuple[Horizon, ...]:
        return tuple(Horizon.parse(lag) for lag in self.lags)

    def check_compatible(self, other: ModelSpec) -> None:
        """Raise ``ValueError`` naming the first difference from ``other`` (``other``: the one expected).

        >>> model_spec(60 * SECOND_NS).check_compatible(model_spec(60 * SECOND_NS))
        """
        for field in ("version", "bar_ns", "window", "horizons", "lags", "channels", "quantiles"):
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine != theirs:
                raise ValueError(f"model spec mismatch on {field}: checkpoint has {mine!r}, expected {theirs!r}")
        missing = set(other.outputs) - set(self.outputs)
        if missing:
            raise ValueError(f"model spec mismatch on outputs: checkpoint lacks {sorted(missing)}")

    def check_rows(self, rows: FeatureSpec) -> None:
        """Raise ``ValueError`` unless feature rows of spec ``rows`` can be aggregated into this spec's bars.

        >>> from model.features import FEATURE_SPEC
        >>> model_spec(60 * SECOND_NS).check_rows(FEATURE_SPEC)
        """
        from model.bars import BOOK_AGGREGATES

        needed = {"mid", "trade_volume"} | {column for _, column, _ in BOOK_AGGREGATES}
        absent = sorted(needed - set(rows.names))
        if absent:
            raise ValueError(f"feature rows lack {absent}, which the checkpoint's bar rows are built from")
        if self.bar_ns % rows.cadence_ns:
            raise ValueError(
                f"checkpoint bars of {self.bar_ns} ns cannot be built from feature rows every {rows.cadence_ns} ns"
            )


def model_spec(bar_ns: int, window: int = 16) -> ModelSpec:
    """The spec of bar rows of ``bar_ns`` with the horizon and lag rules above.

    >>> s = model_spec(60 * SECOND_NS); s.horizons, s.lags[2], len(s.channels)
    (('5m', '15m', '1h', '4h'), '4h', 18)
    """
    if window < 2:
        raise ValueError(f"window must be at least 2 rows, got {window}")
    horizons = horizons_for(bar_ns)
    lags = lags_for(horizons)
    table = channel_table(lags)
    return ModelSpec(
        bar_ns=bar_ns,
        window=window,
        horizons=tuple(h.name for h in horizons),
        lags=tuple(lag.name for lag in lags),
        channels=tuple(name for name, _ in table),
        descriptions=tuple(doc for _, doc in table),
    )


__all__ = ["HOUR_NS", "SECOND_NS", "ModelSpec", "horizons_for", "lags_for", "model_spec"]
