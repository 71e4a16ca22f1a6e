"""Deribit ticker rows saved as CSV (``public/ticker`` output, flattened), read as a recording.

Collectors such as schepal/deribit_data_collector poll ``public/ticker`` for every
option and save one CSV row per answer (the columns of
``tests/data/deribit/schepal_options_data.csv``). Each row becomes the
``ticker.{instrument}.100ms`` subscription notification Deribit would have pushed
with the same fields, received at the row's own ``timestamp``; so the replay
server, ``volcast inspect`` and the live connector read such a file like any
recording. Nothing is invented: fields the row lacks are left out, as Deribit
leaves out what it does not know, and the rows' times are kept; frames come in
time order (a collector saves rows in its polling order, not always by time).

>>> from pathlib import Path
>>> csv_path = Path(__file__).parents[2] / "tests/data/deribit/schepal_options_data.csv"
>>> frames = list(read_ticker_csv(csv_path))
>>> len(frames), frames[0].kind, frames[0].ts_recv_ns
(326, 'recv', 1590103193775000000)
>>> frames[0].payload[:90]
b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-22MAY20-9250-P.10'
"""

from __future__ import annotations

import ast
import csv
import os
from collections.abc import Generator
from typing import Any

import msgspec

from connectors.record.frames import Frame, RecordingFormatError

CONN_ID = "deribit-ticker-csv"
INTERVAL = "100ms"
# A header with these columns is a ticker CSV (sniffed by connectors.record.detect).
REQUIRED = frozenset({"instrument_name", "timestamp", "mark_price", "mark_iv", "index_price"})
_NUMBERS = (
    "mark_price", "mark_iv", "bid_iv", "ask_iv", "index_price", "underlying_price", "best_bid_price",
    "best_bid_amount", "best_ask_price", "best_ask_amount", "open_interest", "interest_rate",
    "settlement_price", "min_price", "max_price", "last_price", "estimated_delivery_price",
)
_DICTS = ("greeks", "stats")  # saved as Python dict literals: {'delta': -0.73, ...}
_encoder = msgspec.json.Encoder()


def is_ticker_csv_header(line: bytes) -> bool:
    """Whether a file's first line is the header of a ticker CSV."""
    try:
        columns = next(csv.reader([line.decode("utf-8-sig")]))
    except (UnicodeDecodeError, StopIteration, csv.Error):
        return False
    return REQUIRED <= {c.strip() for c in columns}


def _number(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _ticker(row: dict[str, str], where: str) -> tuple[int, dict[str, Any]]:
    try:
        ts_ms = int(float(row["timestamp"]))
    except (KeyError, ValueError):
        raise RecordingFormatError(f"{where}: timestamp {row.get('timestamp')!r} is not epoch milliseconds") from None
    name = (row.get("instrument_name") or "").strip()
    if not name:
        raise RecordingFormatError(f"{where}: no instrument_name")
    data: dict[str, Any] = {"timestamp": ts_ms, "instrument_name": name}
    for key in _NUMBERS:
        value = _number(row.get(key))
        if value is not None:
            data[key] = value
    for key in ("underlying_index", "state"):
        if row.get(key):
            data[key] = row[key]
    for key in _DICTS:
        text = row.get(key)
        if text:
            try:
                value = ast.literal_eval(text)  # literals only: a saved dict, never code
            except (ValueError, SyntaxError):
                raise RecordingFormatError(f"{where}: column {key} is not a dict literal: {text[:60]!r}") from None
            if isinstance(value, dict):
                data[key] = value
    return ts_ms, data


def read_ticker_csv(path: str | os.PathLike[str]) -> Generator[Frame, None, None]:
    """The rows of a ticker CSV as ``recv`` frames of ticker notifications, in time order.

    A chain snapshot is small (hundreds of rows), so the rows are read whole and sorted.
    """
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = REQUIRED - {c.strip() for c in reader.fieldnames or ()}
        if missing:
            raise RecordingFormatError(f"{path}: not a Deribit ticker CSV: no column {', '.join(sorted(missing))}")
        tickers = [_ticker(row, f"{path}:{line}") for line, row in enumerate(reader, start=2)]
    tickers.sort(key=lambda t: t[0])  # stable: equal times keep the file's order
    for ts_ms, data in tickers:
        note = {
            "jsonrpc": "2.0",
            "method": "subscription",
            "params": {"channel": f"ticker.{data['instrument_name']}.{INTERVAL}", "data": data},
        }
        yield Frame(ts_ms * 1_000_000, CONN_ID, "recv", _encoder.encode(note))
