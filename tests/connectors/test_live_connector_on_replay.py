"""The unmodified live connector (asyncio shell + Binance core) against the replay server.

The same recording fed frame by frame to the sans-I/O core and served over a real
websocket + REST on loopback must give the same book: principle 2 of ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors.events import BookDelta, BookSnapshot, FeedStatus, Trade
from connectors.io.ws import run_session
from connectors.record.detect import merge_recordings
from connectors.replay.server import ReplayServer
from connectors.venues.binance.protocol import BinanceProtocol

USDM = Path(__file__).resolve().parents[2] / "data" / "binance" / "hftbacktest" / "usdm"
FILES = [USDM / "btcusdt_20240808.gz", USDM / "ethusdt_20240808.gz"]


def new_protocol() -> BinanceProtocol:
    return BinanceProtocol(
        "usdm", ["BTCUSDT", "ETHUSDT"], depth_stream="depth@0ms", trade_stream="trade", book_view_depth=5
    )


def last_views(events: list) -> dict[str, BookSnapshot]:
    """The last top-5 view of each book (the connection's end then resets the books)."""
    return {e.symbol: e for e in events if isinstance(e, BookSnapshot) and e.depth == 5}


def offline_events() -> list:
    proto = new_protocol()
    events: list = []
    for frame in merge_recordings(FILES):
        events.extend(proto.feed_frame(frame))
    return events


@pytest.mark.slow
def test_live_connector_on_replay_server_ends_with_the_recorded_books():
    # Arrange
    events: list = []
    proto = new_protocol()

    async def main() -> None:
        async with ReplayServer([str(f) for f in FILES], speed=0) as server:
            await asyncio.wait_for(
                run_session(
                    proto,
                    ws_url=proto.stream_url(server.ws_url("usdm")),
                    rest_base=server.rest_url("usdm"),
                    on_events=events.extend,
                ),
                timeout=120,
            )

    # Act: returns once the server closes with "end of recording"
    asyncio.run(main())

    # Assert: every book synced once, no gap, and the final books equal the offline run's.
    offline = last_views(offline_events())
    live = last_views(events)
    assert {s: (v.seq, v.bids, v.asks) for s, v in live.items()} == {
        s: (v.seq, v.bids, v.asks) for s, v in offline.items()
    }
    assert all(i.gaps == 0 for i in proto.stats().instruments.values())
    synced = [e for e in events if isinstance(e, FeedStatus) and e.state == "synced"]
    assert sorted(e.symbol for e in synced) == ["BTCUSDT", "ETHUSDT"]
    assert sum(isinstance(e, BookDelta) for e in events) > 10_000
    assert sum(isinstance(e, Trade) for e in events) > 30_000
    assert sum(isinstance(e, BookSnapshot) and e.depth is None for e in events) == 2  # one full book each
