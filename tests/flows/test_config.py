"""The daemon's configuration: every venue's feed, the underlyings they feed, and refusals that name the problem."""

from __future__ import annotations

import re
import threading

import pytest

from flows.config import ConfigError, DeribitFeed, load_config_text
from flows.sources import FeedSource, build_protocol

BOOKS = '[[feeds]]\nmarket = "usdm"\nsymbols = ["btcusdt", "ethusdt"]\n'


def test_every_venue_in_one_config():
    cfg = load_config_text(BOOKS + '''
[[feeds]]
venue = "deribit"
currencies = ["btc", "eth"]
shards = 2
[[feeds]]
venue = "ethereum"
ws_url = "ws://127.0.0.1:8546"
[[feeds]]
venue = "bitcoin"
ws_url = "ws://127.0.0.1:8999/api/v1/ws"
''')
    assert cfg.underlyings() == {
        "BTC": ("binance_usdm:BTCUSDT", "deribit:BTC-PERPETUAL"),
        "ETH": ("binance_usdm:ETHUSDT", "deribit:ETH-PERPETUAL"),
    }
    assert cfg.option_underlyings() == {"BTC": "BTC", "ETH": "ETH"}
    assert cfg.mempool_underlying() == {"ethereum": "ETH", "bitcoin": "BTC"}
    source = FeedSource(cfg, threading.Event())
    assert source.list_parts() == ["binance_usdm", "deribit_0", "deribit_1", "ethereum", "bitcoin"]


def test_each_deribit_shard_gets_its_own_core():
    feed = DeribitFeed(currencies=("BTC",), shards=3)
    cores = [build_protocol(feed, book_view_depth=5, shard=i) for i in range(3)]
    assert [(c.shard, c.shards) for c in cores] == [(0, 3), (1, 3), (2, 3)]
    assert cores[0].config.option_channels == ("ticker",) and cores[0].config.book_view_depth == 5


def test_a_config_without_venue_is_binance_as_before():
    cfg = load_config_text(BOOKS)
    assert cfg.feeds[0].name == "binance_usdm"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[feeds]]\nvenue = "kraken"\n', "feeds[1]: unknown venue 'kraken' (known: binance, deribit, ethereum, bitcoin)"),
        ('[[feeds]]\nvenue = "ethereum"\n', "Object missing required field `ws_url`"),
        ('[[feeds]]\nvenue = "ethereum"\nws_url = "ws://x"\nunderlying = "SOL"\n',
         "feed ethereum feeds underlying SOL, which has no order-book feed to forecast (forecast: BTC, ETH)"),
        ('[[feeds]]\nvenue = "deribit"\nunderlying_names = {ETH = "X"}\n',
         "feed deribit: underlying_names names ETH, which is not in currencies"),
        ('[[feeds]]\nvenue = "deribit"\nshards = 0\n', "shards must be within 1..16"),
        ("batch_timeout_ms = 0\n", "batch_timeout_ms must be within (0, 1000]"),
    ],
)
def test_refusals_name_the_problem(extra, message):
    text = extra + BOOKS if not extra.startswith("[[") else BOOKS + extra
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config_text(text)


def test_an_option_chain_without_a_book_is_a_surface_only_underlying():
    cfg = load_config_text(BOOKS + '[[feeds]]\nvenue = "deribit"\ncurrencies = ["btc"]\nkinds = ["option"]\n'
                           'underlying_names = {BTC = "BTCOPT"}\n')
    assert cfg.option_underlyings() == {"BTC": "BTCOPT"}
    assert "BTCOPT" not in cfg.underlyings()


def test_mempool_alone_is_not_a_daemon():
    with pytest.raises(ConfigError, match="no feed keeps an order book"):
        load_config_text('[[feeds]]\nvenue = "bitcoin"\n')
