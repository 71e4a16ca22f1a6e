"""Batched inference: bucket padding gives per-window results, records, and validated hot reload."""

from __future__ import annotations

import os
import shutil

import jax
import msgspec
import numpy as np
import pytest

from model.features import FEATURE_SPEC
from model.nn.bench import inference_benchmark
from model.nn.checkpoint import load_checkpoint, save_checkpoint
from model.nn.dataset import dataset_from_bars
from model.nn.infer import BatchedForecaster
from model.nn.inputs import Window


@pytest.fixture(scope="module")
def served(tiny_checkpoint, tmp_path_factory):
    path, _ = tiny_checkpoint
    live = tmp_path_factory.mktemp("serve") / "model.msgpack"
    shutil.copy(path, live)
    return live, BatchedForecaster(live, FEATURE_SPEC)


@pytest.fixture(scope="module")
def real_windows(served):
    import pathlib

    _, fc = served
    bars = pathlib.Path(__file__).resolve().parents[1] / "data" / "bars" / "nautilus_trader"
    ds = dataset_from_bars(bars / "btc-perp-20211231-20220103_1m.csv", fc.spec)
    idx = np.arange(0, ds.n, ds.n // 75)[:75]
    values, mask = ds.windows(idx)
    return [Window("nautilus:BTC-PERP", int(ds.ts_ns[i]), values[k], mask[k], float(ds.log_ref[i]))
            for k, i in enumerate(idx)]


def test_batches_of_any_size_equal_one_at_a_time(served, real_windows):
    _, fc = served
    one_by_one = [fc.forecast_batch([w])[0] for w in real_windows[:10]]
    for n in (1, 3, 10):
        batched = fc.forecast_batch(real_windows[:n])
        for a, b in zip(batched, one_by_one):
            np.testing.assert_allclose([f.var for f in a], [f.var for f in b], rtol=1e-5)
    big = fc.forecast_batch(real_windows)  # 75 windows: a 64 bucket and an 8 bucket
    assert len(big) == 75
    np.testing.assert_allclose([f.var for f in big[5]], [f.var for f in one_by_one[5]], rtol=1e-5)


def test_records_carry_the_method_horizons_and_ordered_quantiles(served, real_windows):
    _, fc = served
    for recs in fc.forecast_batch(real_windows[:8]):
        assert [r.horizon.name for r in recs] == ["5m", "15m", "1h", "4h"]
        for r in recs:
            assert r.method == "attention" and r.status == "ok" and r.reason == ""
            assert 0.0 < r.q10 < r.q50 < r.q90 and 0.05 < r.vol < 5.0


def test_inputs_the_checkpoint_never_saw_are_ignored_and_said_so(served, real_windows):
    _, fc = served
    w = real_windows[0]
    j = fc.spec.channels.index("log_spread")
    values, mask = w.values.copy(), w.mask.copy()
    values[:, j], mask[:, j] = 3.0, True
    [with_book] = fc.forecast_batch([w._replace(values=values, mask=mask)])
    [without] = fc.forecast_batch([w])
    assert [f.var for f in with_book] == [f.var for f in without]
    assert "ignored: log_spread" in with_book[0].reason


def test_a_window_of_the_wrong_shape_is_refused(served, real_windows):
    _, fc = served
    w = real_windows[0]
    with pytest.raises(ValueError, match="the checkpoint expects"):
        fc.forecast_batch([w._replace(values=w.values[1:], mask=w.mask[1:])])


def test_hot_reload_validates_first_and_keeps_serving(served, real_windows, tiny_checkpoint):
    live, fc = served
    before = [f.var for f in fc.forecast_batch(real_windows[:1])[0]]
    assert fc.maybe_reload().status == "unchanged"

    live.write_bytes(b"garbage")
    result = fc.maybe_reload()
    assert result.status == "rejected" and "not a volcast checkpoint" in result.reason
    assert [f.var for f in fc.forecast_batch(real_windows[:1])[0]] == before
    assert fc.maybe_reload().status == "unchanged"  # the same bad file is not retried

    good = load_checkpoint(tiny_checkpoint[0])
    other_bar = msgspec.structs.replace(good.meta, spec=msgspec.structs.replace(good.meta.spec, bar_ns=3 * 10**9))
    save_checkpoint(live, other_bar, good.params)
    _bump(live)
    result = fc.maybe_reload()
    assert result.status == "rejected" and "bar_ns" in result.reason

    nudged = jax.tree.map(lambda a: np.asarray(a) * 1.0, good.params)
    nudged["base"]["bias"] = nudged["base"]["bias"] + 0.5
    save_checkpoint(live, good.meta, nudged)
    _bump(live)
    result = fc.maybe_reload()
    assert result.status == "reloaded"
    after = [f.var for f in fc.forecast_batch(real_windows[:1])[0]]
    np.testing.assert_allclose(np.array(after) / np.array(before), np.exp(0.5), rtol=1e-4)


def _bump(path) -> None:
    """Make sure the file's mtime moves even on coarse-timestamp filesystems."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_benchmark_reports_every_bucket(tiny_checkpoint):
    path, _ = tiny_checkpoint
    out = inference_benchmark(path, calls=20, repeats=1)
    for b in (1, 8, 64):
        assert out[f"batch_{b}"]["us_per_window"] > 0 and out[f"batch_{b}"]["p99_ms"] > 0
    assert out["checkpoint"]["params"] > 1000 and "meets_targets" in out
