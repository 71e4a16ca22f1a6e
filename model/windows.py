"""Rolling windows of feature rows: the attention model's input, one per instrument.

A fixed-size numpy ring of float32 values and a bool presence mask. ``view()``
returns copies in time order (oldest first), model-ready: absent entries are 0.0
with mask False, so the mask, not the value, says what was observed. Steps never
pushed (before the first row, or skipped across a gap) are absent.

>>> from model.features import FeatureRow
>>> w = RollingWindow(length=3, n_features=12)
>>> for t in (1, 2, 3, 4):
...     w.push(FeatureRow.from_dict("x:Y", t, {"trade_count": float(t)}))
>>> values, mask = w.view()
>>> values[:, 8].tolist(), w.filled
([2.0, 3.0, 4.0], 3)
"""

from __future__ import annotations

import numpy as np

from model.features import FeatureRow


class RollingWindow:
    """The last ``length`` rows of one instrument as ``(values[T, F], mask[T, F])``.

    Parameters
    ----------
    length : int
        Rows kept (T).
    n_features : int
        Columns (F); every pushed row must have this many.
    cadence_ns : int or None
        When given, a row more than one cadence after the previous one first pushes
        absent rows for the missing steps, so position in the window is time.

    >>> RollingWindow(100, 12, cadence_ns=1_000_000_000).length
    100
    """

    def __init__(self, length: int, n_features: int, cadence_ns: int | None = None) -> None:
        if length < 1 or n_features < 1:
            raise ValueError(f"length and n_features must be positive, got {length} and {n_features}")
        if cadence_ns is not None and cadence_ns <= 0:
            raise ValueError(f"cadence_ns must be positive, got {cadence_ns}")
        self.length = length
        self.n_features = n_features
        self.cadence_ns = cadence_ns
        self._values = np.zeros((length, n_features), dtype=np.float32)
        self._mask = np.zeros((length, n_features), dtype=bool)
        self._next = 0  # slot the next row goes to; also the oldest row once full
        self._count = 0  # rows pushed, including absent gap rows
        self.last_ts_ns: int | None = None

    @property
    def filled(self) -> int:
        """Rows held, at most ``length``."""
        return min(self._count, self.length)

    def push(self, row: FeatureRow) -> None:
        """Append a row; the oldest drops out once the window is full."""
        if row.values.shape != (self.n_features,):
            raise ValueError(f"row has {row.values.shape} values, window expects ({self.n_features},)")
        if self.last_ts_ns is not None and row.ts_ns <= self.last_ts_ns:
            raise ValueError(f"row at {row.ts_ns} is not after the window's last row at {self.last_ts_ns}")
        if self.cadence_ns is not None and self.last_ts_ns is not None:
            missing = (row.ts_ns - self.last_ts_ns) // self.cadence_ns - 1
            for _ in range(min(missing, self.length)):
                self._write(np.zeros(self.n_features, dtype=np.float32), np.zeros(self.n_features, dtype=bool))
            # Rows beyond the window length would only have overwritten each other.
            self._count += max(missing - self.length, 0)
        self._write(np.where(row.present, row.values, 0.0).astype(np.float32), row.present)
        self.last_ts_ns = row.ts_ns

    def _write(self, values: np.ndarray, mask: np.ndarray) -> None:
        self._values[self._next] = values
        self._mask[self._next] = mask
        self._next = (self._next + 1) % self.length
        self._count += 1

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies ``(values[T, F] float32, mask[T, F] bool)``, oldest row first."""
        order = np.roll(np.arange(self.length), -self._next)
        return self._values[order], self._mask[order]
