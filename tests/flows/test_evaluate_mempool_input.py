"""``volcast evaluate --mempool``'s input: real mempool recordings through the venue core onto bars.

Data: ``tests/data/mempool_space/mempool-space-fixtures.vcr.gz`` (real mempool.space
messages), ``tests/data/ethereum/anvil-mempool.vcr.gz`` (real anvil output on a dev
chain) and a real Binance capture; see their PROVENANCE.md. The bar grids are SYNTHETIC
timestamps chosen to cover the recordings' periods.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flows.errors import DataError
from flows.mempool_input import mempool_on_bars
from model.mempool import INDEX

DATA = Path(__file__).resolve().parents[1] / "data"
BITCOIN = DATA / "mempool_space" / "mempool-space-fixtures.vcr.gz"
ETHEREUM = DATA / "ethereum" / "anvil-mempool.vcr.gz"
S = 1_000_000_000


def test_a_mempool_space_recording_lands_on_the_bar_whose_close_ends_its_step():
    """SYNTHETIC 10 s bar grid over the recording's first session (its mempoolInfo arrived at ...957 s)."""
    ts = np.arange(1_711_854_900, 1_711_855_100, 10) * S
    mem = mempool_on_bars([BITCOIN], ts, 10 * S)
    at = int(np.flatnonzero(ts == 1_711_854_960 * S)[0])  # the step [950 s, 960 s) holds the message
    assert mem.present[at, INDEX["pending_count"]] and mem.values[at, INDEX["pending_count"]] == 112686.0
    assert not mem.present[:at].any()  # nothing before the message was received
    assert np.isnan(mem.values[~mem.present]).all()
    assert mem.source["chain"] == "bitcoin" and mem.source["bars_with_a_row"] == 1


def test_recordings_of_two_chains_are_refused():
    ts = np.arange(1, 10) * S
    with pytest.raises(DataError, match="must be of one chain, got .*anvil-mempool.vcr.gz \\(ethereum\\), "
                                        ".*mempool-space-fixtures.vcr.gz \\(bitcoin\\)"):
        mempool_on_bars([ETHEREUM, BITCOIN], ts, S)


def test_a_market_recording_is_not_a_mempool_recording():
    with pytest.raises(DataError, match="a binance recording, not an Ethereum node's or mempool.space's"):
        mempool_on_bars([DATA / "cryptofeed" / "BINANCE.ws.1.0"], np.arange(1, 10) * S, S)


def test_a_recording_outside_the_bars_names_both_spans():
    """SYNTHETIC one-minute bars in 2017; the anvil recording is from 2026."""
    ts = (1_507_939_200 + 60 * np.arange(1, 100)) * S
    with pytest.raises(DataError, match=r"\(ethereum, 2026-11-24T16:56:25Z to 2026-11-24T16:56:54Z\) do not overlap "
                                        r"the bars \(2017-10-14T00:00:00Z to 2017-10-14T01:39:00Z\)"):
        mempool_on_bars([ETHEREUM], ts, 60 * S)
