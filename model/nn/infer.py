"""Batched inference over the split Flax state, with validated hot reload (principles 5 and 6).

The caller collects windows (one :class:`~model.nn.inputs.WindowBuilder` per
instrument, bounded time and batch size in the flow) and hands them to
:meth:`BatchedForecaster.forecast_batch`. Batches are padded to the next bucket
size (1, 8, 64 by default; larger ones are cut into 64s), so only those shapes
are ever compiled, and they are compiled and run once at construction (warm-up).
The network runs as one ``jax.jit`` of a pure function of the ``nnx.split``
state, never ``nnx.jit`` per item (research/bytewax.md §6: ``nnx.jit`` costs
about 1.3 ms of graph traversal per call).

:meth:`BatchedForecaster.maybe_reload` swaps in a changed checkpoint file only
after it loads, matches the expected spec and runs its warm-up; otherwise the
old one keeps serving and the reason is returned.

>>> BUCKETS
(1, 8, 64)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import msgspec
import numpy as np
from flax import nnx

from model.features import FeatureSpec
from model.forecaster import HorizonForecast
from model.nn.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from model.nn.inputs import Window, WindowBuilder
from model.nn.spec import ModelSpec
from model.nn.train import predict_fn
from model.realized import YEAR_NS

BUCKETS = (1, 8, 64)
METHOD = "attention"


class Reload(msgspec.Struct, frozen=True):
    """What :meth:`BatchedForecaster.maybe_reload` did: ``"unchanged"``, ``"reloaded"`` or ``"rejected"``."""

    status: str
    reason: str = ""
    sha256: str = ""  # of the checkpoint now serving


class _Predictor:
    """One checkpoint, compiled for every bucket size."""

    def __init__(self, ckpt: Checkpoint, buckets: tuple[int, ...]) -> None:
        self.ckpt = ckpt
        spec = ckpt.spec
        self.spec = spec
        self.horizons = spec.horizon_objs
        graphdef, state = nnx.split(ckpt.build_model())
        self.state = jax.device_put(state)
        norm = ckpt.meta.normalization
        self.norm = tuple(jnp.asarray(np.asarray(v, dtype=np.float32)) for v in (norm.mean, norm.std, norm.trained))
        self.trained = np.asarray(norm.trained, dtype=bool)
        self.untrained_names = [c for c, t in zip(spec.channels, norm.trained) if not t]
        self.log_h = np.log(np.array([h.ns / spec.bar_ns for h in self.horizons]))
        self.ann = np.array([YEAR_NS / h.ns for h in self.horizons])  # variance over h -> annualized variance
        f = predict_fn(graphdef)

        def packed(*args: jax.Array) -> jax.Array:
            # One output array: one device-to-host copy per call instead of one per head.
            out = f(*args)
            return jnp.concatenate([out["rv_mean"][..., None], out["rv_quantiles"]], axis=-1)  # [B, H, 4]

        self.fn = jax.jit(packed)
        self.notes: dict[bytes, str] = {}  # ignored-inputs note per pattern, built once
        self.buckets = buckets
        t, c = spec.window, len(spec.channels)
        for b in buckets:  # compile and run every shape once: no compile on the serving path
            out = self.fn(self.state, *self.norm, np.zeros((b, t, c), np.float32), np.zeros((b, t, c), bool))
            jax.block_until_ready(out)

    def run(self, values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Relative (mean[B, H], quantiles[B, H, 3]) for a batch already padded to a bucket."""
        out = np.asarray(self.fn(self.state, *self.norm, values, mask))
        return out[..., 0], out[..., 1:]


class BatchedForecaster:
    """The attention model's batched half: windows in, ``HorizonForecast`` records out.

    Parameters
    ----------
    checkpoint : path
        A checkpoint written by :func:`model.nn.train.train`.
    expected_spec : ModelSpec, FeatureSpec or None
        What the caller's rows are (see :func:`model.nn.checkpoint.load_checkpoint`);
        a checkpoint that does not fit is refused, at start and on reload.
    buckets : tuple of int
        Padded batch sizes; the largest is the most windows per model call.

    Raises
    ------
    CheckpointError
        The checkpoint cannot be read or does not fit ``expected_spec``.
    """

    method = METHOD

    def __init__(
        self,
        checkpoint: str | os.PathLike[str],
        expected_spec: ModelSpec | FeatureSpec | None = None,
        *,
        buckets: Sequence[int] = BUCKETS,
    ) -> None:
        if not buckets or min(buckets) < 1:
            raise ValueError(f"buckets must be positive sizes, got {buckets}")
        self.path = os.fspath(checkpoint)
        self.expected_spec = expected_spec
        self.buckets = tuple(sorted({int(b) for b in buckets}))
        self._lock = threading.Lock()
        self._rejected_sig: tuple[int, int] | None = None
        sig = self._signature()
        self._predictor = _Predictor(load_checkpoint(self.path, expected_spec), self.buckets)
        self._sig = sig

    @property
    def spec(self) -> ModelSpec:
        return self._predictor.spec

    @property
    def checkpoint(self) -> Checkpoint:
        """The checkpoint now serving (its meta says what it was trained on and its scores)."""
        return self._predictor.ckpt

    def window_builder(self, instrument_id: str, cadence_ns: int = 1_000_000_000) -> WindowBuilder:
        """Per-instrument state producing this model's windows from feature rows of ``cadence_ns``."""
        return WindowBuilder(instrument_id, self.spec, cadence_ns)

    def forecast_batch(self, windows: Sequence[Window]) -> list[list[HorizonForecast]]:
        """Forecasts for every horizon of every window, in order; method ``"attention"``.

        Raises
        ------
        ValueError
            A window whose shape is not the checkpoint's ``(window, channels)``.
        """
        pred = self._predictor  # one model per call, even if a reload lands meanwhile
        t, c = pred.spec.window, len(pred.spec.channels)
        for w in windows:
            if w.values.shape != (t, c) or w.mask.shape != (t, c):
                raise ValueError(
                    f"window of {w.instrument_id} has shape {w.values.shape}, the checkpoint expects {(t, c)}"
                )
        out: list[list[HorizonForecast]] = []
        biggest = self.buckets[-1]
        for start in range(0, len(windows), biggest):
            chunk = windows[start : start + biggest]
            size = next(b for b in self.buckets if b >= len(chunk))
            values = np.zeros((size, t, c), dtype=np.float32)
            mask = np.zeros((size, t, c), dtype=bool)
            values[: len(chunk)] = np.stack([w.values for w in chunk])
            mask[: len(chunk)] = np.stack([w.mask for w in chunk])
            mean, quant = pred.run(values, mask)
            out.extend(self._records(pred, chunk, mean[: len(chunk)], quant[: len(chunk)], mask[: len(chunk), -1]))
        return out

    @staticmethod
    def _records(
        pred: _Predictor, chunk: Sequence[Window], mean: np.ndarray, quant: np.ndarray, last_mask: np.ndarray
    ) -> list[list[HorizonForecast]]:
        """Records for a chunk, with the arithmetic done on arrays (this is most of a batch's cost otherwise)."""
        shift = np.array([w.log_ref for w in chunk])[:, None] + pred.log_h[None, :]  # [B, H]
        log_var = mean.astype(np.float64) + shift
        log_q = quant.astype(np.float64) + shift[:, :, None]
        var = np.exp(log_var)
        vol = np.sqrt(var * pred.ann[None, :])
        qvol = np.sqrt(np.exp(log_q) * pred.ann[None, :, None])
        good = np.isfinite(vol).all(axis=1) & (var > 0).all(axis=1) & np.isfinite(qvol).all(axis=(1, 2))
        ignored = last_mask & ~pred.trained
        out = []
        for i in range(len(chunk)):
            if not good[i]:
                why = f"{METHOD} produced a non-finite or non-positive variance; no forecast"
                out.append([HorizonForecast.warming_up(h, METHOD, why) for h in pred.horizons])
                continue
            note = ""
            if ignored[i].any():
                key = ignored[i].tobytes()
                note = pred.notes.get(key, "")
                if not note:
                    names = ", ".join(n for n, x in zip(pred.spec.channels, ignored[i]) if x)
                    note = pred.notes[key] = f"inputs not in the checkpoint's training data, ignored: {names}"
            v, vv, q = var[i].tolist(), vol[i].tolist(), qvol[i].tolist()
            out.append(
                [
                    HorizonForecast(
                        horizon=h, vol=vv[j], var=v[j], method=METHOD, status="ok", reason=note,
                        q10=q[j][0], q50=q[j][1], q90=q[j][2],
                    )
                    for j, h in enumerate(pred.horizons)
                ]
            )
        return out

    def _signature(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return st.st_mtime_ns, st.st_size

    def maybe_reload(self) -> Reload:
        """Reload the checkpoint if its file changed; a bad or mismatched one is rejected and the old one serves.

        The new checkpoint must load, fit ``expected_spec`` and keep the serving
        :class:`~model.nn.spec.ModelSpec` (callers' window builders were made for
        it); it is compiled and warmed up before it replaces the old one. A
        rejected file is not retried until it changes again. Thread-safe.
        """
        with self._lock:
            try:
                sig = self._signature()
            except OSError as e:
                return Reload("rejected", f"cannot stat {self.path}: {e.strerror}; still serving the loaded one",
                              self._predictor.ckpt.sha256)
            if sig == self._sig or sig == self._rejected_sig:
                return Reload("unchanged", "", self._predictor.ckpt.sha256)
            try:
                ckpt = load_checkpoint(self.path, self.expected_spec)
                # The callers' window builders were made for the serving spec: a reload must keep it.
                ckpt.spec.check_compatible(self._predictor.spec)
                new = _Predictor(ckpt, self.buckets)
            except (CheckpointError, ValueError, OSError) as e:
                self._rejected_sig = sig
                return Reload("rejected", f"{e}; still serving {self._predictor.ckpt.sha256[:12]}",
                              self._predictor.ckpt.sha256)
            if ckpt.sha256 == self._predictor.ckpt.sha256:
                self._sig = sig
                return Reload("unchanged", "same contents", ckpt.sha256)
            self._predictor, self._sig, self._rejected_sig = new, sig, None
            return Reload("reloaded", f"now serving {ckpt.sha256[:12]}", ckpt.sha256)


def default_checkpoint() -> str:
    """Path of the shipped checkpoint (``model/checkpoints/btc_1m.msgpack``)."""
    import importlib.resources

    return str(importlib.resources.files("model.checkpoints").joinpath("btc_1m.msgpack"))


__all__ = ["BUCKETS", "BatchedForecaster", "Reload", "default_checkpoint"]
