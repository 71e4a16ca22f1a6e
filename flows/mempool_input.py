"""Mempool recordings on a bar file's bars, for ``volcast evaluate --mempool``.

The one feature path (ARCHITECTURE.md, principle 1): each recording's frames go through
the venue's sans-I/O core (:class:`EthereumProtocol` or :class:`BitcoinMempoolProtocol`)
into normalized events, and those through :class:`model.mempool.MempoolFeatures` with the
bar length as cadence, exactly as the live flow does at its own cadence; the rows are
then placed on the bars by :func:`model.mempool.rows_on_bars`. The recordings must all
be of one chain (the features of two chains share channels such as ``arrivals_per_s``).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence

import numpy as np

from connectors.record.detect import detect_venue, merge_recordings, open_recording
from connectors.venues.bitcoin import BitcoinMempoolProtocol
from connectors.venues.ethereum import EthereumProtocol
from flows.errors import DataError
from model.evaluate import MempoolInput
from model.mempool import Chain, MempoolFeatures, MempoolRow, rows_on_bars


def recording_chain(path: str | os.PathLike[str]) -> Chain:
    """The chain of a mempool recording, from its first frame whose URL or payload tells it."""
    for frame in open_recording(path):
        where = detect_venue(frame)
        if where is None:
            continue
        if where[0] in ("ethereum", "bitcoin"):
            return where[0]  # type: ignore[return-value]
        raise DataError(f"{os.fspath(path)}: a {where[0]} recording, not an Ethereum node's or mempool.space's")
    raise DataError(f"{os.fspath(path)}: no frame tells its venue; not a mempool recording")


def _utc(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mempool_on_bars(paths: Sequence[str | os.PathLike[str]], bar_ts_ns: np.ndarray, bar_ns: int) -> MempoolInput:
    """The recordings' mempool features on the bars ending at ``bar_ts_ns``; DataError where they cannot serve.

    Refused: recordings of two chains, a recording of a market venue, recordings
    without events, and recordings whose receive times do not overlap the bars'
    span ``(first bar's start, last bar's end]`` (the error names both spans).
    """
    chains = {os.fspath(p): recording_chain(p) for p in paths}
    if len(set(chains.values())) > 1:
        listed = ", ".join(f"{p} ({c})" for p, c in chains.items())
        raise DataError(f"--mempool recordings must be of one chain, got {listed}")
    chain = next(iter(chains.values()))
    proto = EthereumProtocol() if chain == "ethereum" else BitcoinMempoolProtocol()
    features = MempoolFeatures(chain, cadence_ns=bar_ns)
    rows: list[MempoolRow] = []
    first = last = None
    for frame in merge_recordings(paths):
        for ev in proto.feed_frame(frame):
            first = ev.ts_recv_ns if first is None else first
            last = ev.ts_recv_ns
            rows.extend(features.on_event(ev))
    # The step the last event fell in is unfinished: no row for it, as in the live flow.
    if first is None or last is None:
        raise DataError(f"--mempool recordings ({', '.join(chains)}) hold no {chain} mempool event")
    bars_from, bars_to = int(bar_ts_ns[0]) - bar_ns, int(bar_ts_ns[-1])
    if last <= bars_from or first > bars_to:
        raise DataError(
            f"--mempool recordings ({chain}, {_utc(first)} to {_utc(last)}) do not overlap the bars "
            f"({_utc(bars_from)} to {_utc(bars_to)})"
        )
    values, present = rows_on_bars(rows, bar_ts_ns)
    return MempoolInput(values, present, source={
        "chain": chain, "recordings": list(chains), "first_event_utc": _utc(first), "last_event_utc": _utc(last),
        "rows": len(rows), "bars_with_a_row": int(present.any(axis=1).sum()),
    })
