"""Training: on a SYNTHETIC GARCH process with known variance the model approaches the truth; seeds; the split."""

from __future__ import annotations

import dataclasses
import math
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from model.bars import Bars
from model.metrics import qlike
from model.nn.checkpoint import build_model, load_checkpoint
from model.nn.configs import TINY
from model.nn.dataset import dataset_from_bars
from model.nn.spec import model_spec
from model.nn.train import _meta_stub, fit, predict_fn, predict_samples, split

MIN = 60 * 10**9
NAUTILUS = pathlib.Path(__file__).resolve().parents[1] / "data" / "bars" / "nautilus_trader" / "btc-perp-20211231-20220103_1m.csv"
OMEGA, ALPHA, BETA = 5e-10, 0.04, 0.955  # SYNTHETIC: persistence 0.995 per 1-minute bar, half-life ~2.3 hours


def simulate_garch(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """SYNTHETIC GARCH(1,1) with Gaussian shocks on 1-minute bar returns: (returns, sigma2) with sigma2[i] = Var(r_i)."""
    rng = np.random.default_rng(seed)
    s2 = np.empty(n)
    r = np.empty(n)
    s2[0] = OMEGA / (1 - ALPHA - BETA)
    for i in range(n):
        r[i] = math.sqrt(s2[i]) * rng.standard_normal()
        if i + 1 < n:
            s2[i + 1] = OMEGA + ALPHA * r[i] ** 2 + BETA * s2[i]
    return r, s2


def expected_rv(s2_next: np.ndarray, h: int) -> np.ndarray:
    """The known E_t[sum of the next h squared returns] given Var(r_{t+1}) = s2_next."""
    p = ALPHA + BETA
    bar = OMEGA / (1 - p)
    return h * bar + (s2_next - bar) * (1 - p**h) / (1 - p)


@pytest.fixture(scope="module")
def garch_run():
    n = 6 * 1440
    r, s2 = simulate_garch(n)
    bars = Bars((np.arange(n) + 1) * MIN, close=100.0 * np.exp(np.cumsum(r)), bar_ns=MIN)  # no high/low, no volume
    spec = model_spec(MIN, window=TINY.window)
    ds = dataset_from_bars(bars, spec)
    cut = int(0.6 * n)
    train_part = ds.subset(ds.bar < cut - 240)  # targets end before the test part
    cfg = dataclasses.replace(TINY, max_epochs=3)
    result = fit(train_part, config=cfg, seed=0, progress=False)
    model = build_model(_meta_stub(spec, cfg, result.base_channels, result.normalization), result.params)
    graphdef, state = nnx.split(model)
    test = np.flatnonzero((ds.bar >= cut) & np.isfinite(ds.y).all(axis=1))
    mean, _ = predict_samples(jax.jit(predict_fn(graphdef)), state, result.normalization, ds, test)
    return ds, s2, test, mean, result


def test_forecasts_approach_the_known_variance_of_a_synthetic_garch(garch_run):
    ds, s2, test, mean, _ = garch_run
    h_bars = [5, 15, 60, 240]
    for j, h in enumerate(h_bars):
        rv = ds.rv[test, j]
        truth = expected_rv(s2[ds.bar[test] + 1], h)
        model = np.exp(mean[:, j] + ds.log_ref[test] + np.log(h))
        constant = np.full(len(rv), np.mean(ds.rv[ds.bar < 0.6 * len(s2), j]))
        q_truth, q_model, q_const = (float(qlike(rv, f).mean()) for f in (truth, model, constant))
        # Close to the oracle (within 10% of its loss) and far better than a constant.
        assert q_model <= 1.10 * q_truth, (h, q_model, q_truth)
        assert q_model < q_const - 0.5 * (q_const - q_truth), (h, q_model, q_const, q_truth)
        assert np.corrcoef(np.log(model), np.log(truth))[0, 1] > (0.9 if h <= 60 else 0.7)


def test_absent_inputs_are_marked_untrained(garch_run):
    *_, result = garch_run
    trained = dict(zip(model_spec(MIN).channels, result.normalization.trained))
    assert not trained["log_range"] and not trained["log_volume"] and not trained["log_spread"]
    assert trained["rv_5m"] and trained["ret"]


def test_split_is_time_ordered_with_an_embargo_of_one_horizon(garch_run):
    ds, *_ = garch_run
    tr, va = split(ds, 0.3)
    four_hours = 4 * 60 * MIN
    assert ds.ts_ns[tr].max() + four_hours <= ds.ts_ns[va].min() - four_hours
    assert len(va) > 0.2 * len(tr)


def test_train_writes_a_self_describing_checkpoint(tiny_checkpoint):
    path, summary = tiny_checkpoint
    assert summary["bytes"] < 2_000_000 and summary["spec"]["horizons"] == ["5m", "15m", "1h", "4h"]
    ckpt = load_checkpoint(path)
    meta = ckpt.meta
    assert meta.seed == 0 and meta.train_config["window"] == TINY.window
    assert meta.training_data[0]["source"] == "btc-perp-20211231-20220103_1m.csv"
    assert meta.training_data[0]["bars"] == 4320 and meta.training_data[0]["gaps"] == 0
    v = meta.validation
    assert set(v["model"]["qlike"]) == {"5m", "15m", "1h", "4h"} and v["n_val"] > 0
    assert all(q <= s * (1 + 1e-6) for q, s in zip(v["model"]["qlike"].values(), v["start"]["qlike"].values()))


def test_the_same_seed_gives_the_same_weights(tiny_checkpoint, tmp_path):
    from model.nn.train import train

    path, _ = tiny_checkpoint
    again = tmp_path / "again.msgpack"
    train([NAUTILUS], again, seed=0, config=TINY, progress=False)
    a, b = load_checkpoint(path).params, load_checkpoint(again).params
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
