"""The live surface nowcaster: throttled warm-started refits, clear statuses for thin chains, features."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from connectors.chains import read_chain
from model.surface.live import LiveSurface
from model.surface.report import report

CHAIN = Path(__file__).resolve().parents[1] / "data" / "deribit" / "schepal_options_data.csv"
S = 1_000_000_000


@pytest.fixture(scope="module")
def chain():
    return read_chain(CHAIN)


def test_the_nowcast_equals_the_offline_fit_of_the_same_chain(chain):
    block = LiveSurface().nowcast(chain.quotes, chain.now_ns)
    offline = report(chain.quotes, chain.now_ns)
    assert block["status"] == "ok" and block["n_input_quotes"] == len(chain.quotes)
    assert block["rmse_vol_pts"] == offline["rmse_vol_pts"]
    assert block["atm"] == offline["atm"] and block["rr25"] == offline["rr25"]
    assert block["iv"] == offline["grid"]["iv"]


def test_refits_wait_for_the_interval_and_for_a_change(chain):
    live = LiveSurface(refit_every_ns=5 * S)
    live.nowcast(chain.quotes, chain.now_ns)
    live.nowcast(chain.quotes, chain.now_ns + 1 * S)  # not due
    live.nowcast(chain.quotes, chain.now_ns + 10 * S)  # due, but nothing changed
    assert live.refits == 1
    moved = [msgspec.structs.replace(q, ts_ns=chain.now_ns + 11 * S) for q in chain.quotes]
    block = live.nowcast(moved, chain.now_ns + 12 * S)
    assert live.refits == 2 and block["ts_ns"] == chain.now_ns + 12 * S


def test_an_empty_and_a_one_sided_chain_give_a_status_not_a_crash(chain):
    assert LiveSurface().nowcast([], chain.now_ns)["status"] == "empty: no quotes"
    no_bids = [msgspec.structs.replace(q, bid_iv=None, bid_price=None) for q in chain.quotes]
    block = LiveSurface().nowcast(no_bids, chain.now_ns)
    assert block["status"] == "empty: no expiry has a quote with a bid"
    assert block["atm"] == {} and block["iv"] == []
    assert LiveSurface.features(block, 0.6) == {"dvol": 0.6, "atm_30d": None, "rr25_30d": None, "bf25_30d": None}


def test_features_come_from_the_30_day_tenor(chain):
    block = LiveSurface().nowcast(chain.quotes, chain.now_ns)
    feats = LiveSurface.features(block, None)
    assert feats == {"dvol": None, "atm_30d": block["atm"]["30d"], "rr25_30d": block["rr25"]["30d"],
                     "bf25_30d": block["bf25"]["30d"]}
