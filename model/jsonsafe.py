"""Plain-JSON values for reports: NaN and inf become null, numpy scalars and tuples become JSON types."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_safe(x: Any) -> Any:
    """``x`` with NaN/inf floats as None and numpy scalars and tuples as plain JSON types.

    >>> json_safe({"a": float("nan"), "b": (np.float32(1.5), np.int64(2))})
    {'a': None, 'b': [1.5, 2]}
    """
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x
