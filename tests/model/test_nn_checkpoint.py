"""Checkpoints: round trip, and a mismatched, corrupt or foreign file refused with a clear error (principle 5)."""

from __future__ import annotations

import jax
import msgspec
import numpy as np
import pytest
from flax import serialization

from model.features import FEATURE_SPEC, feature_spec
from model.nn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.nn.spec import model_spec


def test_round_trip_keeps_weights_meta_and_forecasts(tiny_checkpoint, tmp_path):
    path, _ = tiny_checkpoint
    ckpt = load_checkpoint(path, expected_spec=ckpt_spec(path))
    copy = tmp_path / "copy.msgpack"
    digest = save_checkpoint(copy, ckpt.meta, ckpt.params)
    again = load_checkpoint(copy)
    assert again.meta == ckpt.meta and digest == again.sha256
    for a, b in zip(jax.tree.leaves(ckpt.params), jax.tree.leaves(again.params)):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(2, ckpt.spec.window, len(ckpt.spec.channels))).astype(np.float32)
    m = np.ones_like(x)
    out_a = ckpt.build_model()(x, m)["rv_mean"]
    out_b = again.build_model()(x, m)["rv_mean"]
    np.testing.assert_array_equal(np.asarray(out_a), np.asarray(out_b))


def ckpt_spec(path):
    return load_checkpoint(path).spec


def test_the_checkpoint_describes_itself(tiny_checkpoint):
    path, _ = tiny_checkpoint
    meta = load_checkpoint(path).meta
    assert meta.spec.bar_ns == 60 * 10**9 and meta.spec.lags == ("5m", "30m", "4h", "1d")
    assert len(meta.normalization.mean) == len(meta.spec.channels) == len(meta.spec.descriptions)
    assert meta.normalization.trained[meta.spec.channels.index("log_spread")] is False  # bars have no book
    assert {"jax", "flax", "numpy"} <= set(meta.versions) and meta.created_utc.endswith("Z")
    assert meta.training_data[0]["sha256"] == "63737b0cb2f45c03e9ae1a016f41ad31ba6c81f2cb30ca6e8ad0dd63a90ca80c"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"window": 16}, "model spec mismatch on window: checkpoint has 8, expected 16"),
        ({"bar_ns": 300 * 10**9}, "model spec mismatch on bar_ns"),
    ],
)
def test_a_mismatched_model_spec_is_refused_naming_the_field(tiny_checkpoint, change, message):
    path, _ = tiny_checkpoint
    expected = model_spec(change.get("bar_ns", 60 * 10**9), window=change.get("window", 8))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path, expected)


def test_a_checkpoint_with_other_channels_is_refused(tiny_checkpoint):
    path, _ = tiny_checkpoint
    spec = model_spec(60 * 10**9, window=8)
    other = msgspec.structs.replace(spec, channels=spec.channels[:-1] + ("mempool_fee",))
    with pytest.raises(CheckpointError, match="mismatch on channels"):
        load_checkpoint(path, other)


def test_feature_rows_that_cannot_build_its_bars_are_refused(tiny_checkpoint):
    path, _ = tiny_checkpoint
    load_checkpoint(path, FEATURE_SPEC)  # 1 s rows build 1-minute bars
    with pytest.raises(CheckpointError, match="cannot be built from feature rows every 7000000000 ns"):
        load_checkpoint(path, feature_spec(cadence_ns=7 * 10**9))


def test_corrupt_foreign_and_inconsistent_files_are_refused(tiny_checkpoint, tmp_path):
    path, _ = tiny_checkpoint
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"\x00not msgpack at all")
    with pytest.raises(CheckpointError, match="not a volcast checkpoint|format"):
        load_checkpoint(bad)
    bad.write_bytes(serialization.msgpack_serialize({"format": "someone.else/3", "params": {}}))
    with pytest.raises(CheckpointError, match="has format 'someone.else/3'"):
        load_checkpoint(bad)
    raw = serialization.msgpack_restore(path.read_bytes())
    raw["params"]["base"]["kernel"] = np.zeros((2, 2), np.float32)
    bad.write_bytes(serialization.msgpack_serialize(raw))
    with pytest.raises(CheckpointError, match="weights do not match the network its meta describes"):
        load_checkpoint(bad)
    raw = serialization.msgpack_restore(path.read_bytes())
    meta = msgspec.json.decode(raw["meta"])
    meta["spec"]["window"] = 12  # meta says 12 rows, weights were trained for 8
    raw["meta"] = msgspec.json.encode(meta).decode()
    bad.write_bytes(serialization.msgpack_serialize(raw))
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "missing.msgpack")


def test_the_checkpoint_is_small(tiny_checkpoint):
    path, _ = tiny_checkpoint
    assert path.stat().st_size < 2_000_000
