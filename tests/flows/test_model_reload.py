"""The daemon's attention model: loaded from config, refused with one line, hot-reloaded only when valid."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time

import jax
import numpy as np
import pytest

from flows import metrics
from flows.config import load_config_text
from flows.errors import DataError
from flows.runner import _reload_loop, load_model
from model.nn.checkpoint import load_checkpoint, save_checkpoint
from model.nn.infer import default_checkpoint

BOOKS = '[[feeds]]\nsymbols = ["BTCUSDT"]\n'


def config(checkpoint: str):
    return load_config_text(f'model_checkpoint = "{checkpoint}"\n' + BOOKS)


def counter(status: str) -> float:
    return metrics.MODEL_RELOADS.labels("attention", status)._value.get()  # noqa: SLF001


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_default_and_none():
    assert load_model(config("none")) is None
    assert load_model(config("default")).checkpoint.sha256 == load_checkpoint(default_checkpoint()).sha256


def test_a_checkpoint_that_cannot_serve_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"^model_checkpoint: .*bad.msgpack is not a volcast checkpoint"):
        load_model(config(str(bad)))
    with pytest.raises(DataError, match="model_checkpoint: cannot read checkpoint"):
        load_model(config(str(tmp_path / "missing.msgpack")))


def test_reload_swaps_a_valid_file_and_keeps_serving_through_a_bad_one(tmp_path, caplog):
    live = tmp_path / "model.msgpack"
    shutil.copy(default_checkpoint(), live)
    model = load_model(config(str(live)))
    serving = model.checkpoint.sha256
    stop = threading.Event()
    watcher = threading.Thread(target=_reload_loop, args=(model, 0.05, stop), daemon=True)
    rejected, reloaded = counter("rejected"), counter("reloaded")
    caplog.set_level(logging.INFO, logger="volcast")
    watcher.start()
    try:
        live.write_bytes(b"garbage")
        bump(live)
        wait_for(lambda: counter("rejected") == rejected + 1)
        assert model.checkpoint.sha256 == serving
        assert any("reload rejected" in r.message and "still serving" in r.message for r in caplog.records)

        good = load_checkpoint(default_checkpoint())
        nudged = jax.tree.map(lambda a: np.asarray(a) * 1.0, good.params)
        nudged["base"]["bias"] = nudged["base"]["bias"] + 0.25
        save_checkpoint(live, good.meta, nudged)
        bump(live)
        wait_for(lambda: counter("reloaded") == reloaded + 1)
        assert model.checkpoint.sha256 != serving
    finally:
        stop.set()
        watcher.join(timeout=5)


def bump(path) -> None:
    """Move the mtime even on coarse-timestamp filesystems."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
