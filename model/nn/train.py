"""Training: loss, step, early-stopped fit, and ``train(data_paths, out)`` which writes a checkpoint.

Loss per window and horizon, on relative log variances (``y`` the target,
``l`` the location head, ``m`` the mean head, ``q_tau`` the quantile heads):

.. math:: L = (y - l)^2 + \\underbrace{e^{y-m} - (y-m) - 1}_{\\text{QLIKE (Patton 2011)}}
          + \\lambda \\sum_{\\tau} \\rho_\\tau(y - q_\\tau)

QLIKE on variance is the primary loss and is what validation scores; its
minimizer is the conditional mean of realized variance, so ``exp(m)`` is the
forecast. But its gradient, ``exp(y - m) - 1``, is heavy-tailed: fitted
directly on the first 30% of the BTC month a linear HAR-X lost out of sample
to the same HAR-X fitted by least squares in logs (4h QLIKE 0.285 against
0.228). So the location is fitted in logs, and QLIKE trains only the smearing
term that turns it into a mean (``m = stop_gradient(l) + c(x)``, see
:mod:`model.nn.models`). ``rho_tau`` is the pinball loss of the q10/q50/q90 heads.

Horizon ``h`` is weighted ``(h1 / h) ** horizon_weight_power``: a 4h target is
shared by 240 one-minute windows, so it carries far less independent
information per window than a 5m one.

Protocol (:func:`fit`):

1. Samples are time-ordered per source; the newest ``val_fraction`` is
   validation. Training samples end their targets before it starts and
   validation starts one longest horizon later (an embargo of one horizon), so
   no target is shared.
2. The linear base is fitted by OLS on the training samples (a HAR-X on the lag
   and time-of-day channels, :func:`init_from_har`) and then frozen: epoch 0
   *is* the HAR-X, and the network learns only the residual correction. When
   fine-tuning a checkpoint, its network is the start and its base is refit here.
3. Early stopping keeps the epoch with the best validation QLIKE (mean ratio
   to the start over horizons).
4. Per horizon, the correction is scaled by ``g`` in {0, .25, .5, .75, 1}
   (:func:`shrink`), the validation-best value, kept only where it beats the
   HAR-X start by a Diebold-Mariano t below ``-min_dm_t``; elsewhere ``g = 0``
   and that horizon's forecast is the HAR-X.
5. With ``refit_on_all``, the linear base and its
   smearing are refit by OLS on every sample, validation included: the newest
   data is the most relevant. The network's correction stays the validated
   one (a network retrained on everything would not be). The reported
   validation scores are those of the held-out run.
>>> from model.nn.configs import TINY
>>> TINY.window
8
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree
from tqdm.auto import tqdm

from model.baselines.har import fit_har
from model.jsonsafe import json_safe
from model.metrics import diebold_mariano
from model.nn.checkpoint import (
    FORMAT,
    Checkpoint,
    CheckpointMeta,
    Normalization,
    build_model,
    save_checkpoint,
    utc_now,
    versions,
)
from model.nn.configs import DEFAULT, TrainConfig
from model.nn.dataset import Dataset, concat, dataset_from_bars
from model.nn.spec import QUANTILES, ModelSpec, model_spec

TAU = jnp.array(QUANTILES)


def base_channels(spec: ModelSpec) -> tuple[int, ...]:
    """Channels the linear HAR-X base reads: the lags (``rv_*``, ``range_*``) and the time of day.

    One time-of-day harmonic: on the 1-minute BTC month, fitted on its first 30%,
    more harmonics or the day of week raised out-of-sample QLIKE (too few days to
    fit them linearly); the network still sees every channel.

    >>> from model.nn.spec import model_spec
    >>> [model_spec(60 * 10**9).channels[i] for i in base_channels(model_spec(60 * 10**9))][-3:]
    ['range_1d', 'tod_sin', 'tod_cos']
    """
    return tuple(i for i, c in enumerate(spec.channels) if c.startswith(("rv_", "range_")) or c in ("tod_sin", "tod_cos"))


def dropout_groups(spec: ModelSpec) -> np.ndarray:
    """``[G, C]`` 0/1 channel groups hidden together by channel dropout: longest lag, range, volume."""
    longest = spec.lags[-1]
    groups = [
        [c in (f"rv_{longest}", f"range_{longest}") for c in spec.channels],
        [c == "log_range" or c.startswith("range_") for c in spec.channels],
        [c == "log_volume" for c in spec.channels],
    ]
    return np.array(groups, dtype=np.float32)


def split(ds: Dataset, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Time-ordered train and validation sample indices per source, purged and embargoed by the longest horizon.

    >>> from model.bars import Bars
    >>> from model.nn.spec import model_spec
    >>> rng = np.random.default_rng(0)
    >>> b = Bars(np.arange(1, 801) * 3_600 * 10**9, close=np.exp(np.cumsum(rng.normal(0, 0.01, 800))),
    ...          bar_ns=3_600 * 10**9)
    >>> ds = dataset_from_bars(b, model_spec(3_600 * 10**9, window=8))
    >>> tr, va = split(ds, 0.2)
    >>> bool(ds.ts_ns[tr].max() + 86_400 * 10**9 <= ds.ts_ns[va].min() - 86_400 * 10**9)
    True
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    longest = max(h.ns for h in ds.spec.horizon_objs)
    train, val = [], []
    for s in np.unique(ds.source):
        idx = np.flatnonzero(ds.source == s)
        idx = idx[np.argsort(ds.ts_ns[idx])]
        ts = ds.ts_ns[idx]
        start = ts[int(len(ts) * (1.0 - val_fraction))]
        train.append(idx[ts + longest <= start])
        val.append(idx[ts >= start + longest])
    return np.concatenate(train), np.concatenate(val)


def normalization(ds: Dataset, idx: np.ndarray) -> Normalization:
    """Mean and std per channel over the newest rows of samples ``idx``, present entries only.

    A channel present in under 1% of them, or constant, is marked untrained:
    inference then treats it as absent (it was never learned from).
    """
    rows, mask = ds.values[ds.ends[idx]].astype(np.float64), ds.mask[ds.ends[idx]]
    n = mask.sum(axis=0)
    mean = np.where(n > 0, (rows * mask).sum(axis=0) / np.maximum(n, 1), 0.0)
    var = np.where(n > 1, (((rows - mean) * mask) ** 2).sum(axis=0) / np.maximum(n - 1, 1), 1.0)
    std = np.sqrt(var)
    trained = (n >= 0.01 * max(len(idx), 1)) & (std > 1e-6)
    return Normalization(
        mean=tuple(float(m) if t else 0.0 for m, t in zip(mean, trained)),
        std=tuple(float(s) if t else 1.0 for s, t in zip(std, trained)),
        trained=tuple(bool(t) for t in trained),
    )


def standardize(values: np.ndarray, mask: np.ndarray, norm: Normalization) -> tuple[np.ndarray, np.ndarray]:
    """``((x - mean) / std * m, m)`` as float32, with ``m`` the mask restricted to trained channels."""
    m = (mask & np.asarray(norm.trained)).astype(np.float32)
    x = (values - np.asarray(norm.mean, dtype=np.float32)) / np.asarray(norm.std, dtype=np.float32)
    return (x * m).astype(np.float32), m


def predict_fn(graphdef: Any) -> Any:
    """The pure ``f(params, mean, std, trained, values[B,T,C], mask[B,T,C]) -> heads`` that ``jax.jit`` compiles."""

    def f(params: Any, mean: jax.Array, std: jax.Array, trained: jax.Array, values: jax.Array, mask: jax.Array):
        m = mask.astype(jnp.float32) * trained
        x = (values - mean) / std * m
        return nnx.merge(graphdef, params)(x, m)

    return f


def _compiled(fn: Any, options: dict[str, Any] | None) -> Any:
    """``jax.jit(fn)``, compiled on first call with XLA ``options`` (cached per argument shapes)."""
    jitted = jax.jit(fn)
    if not options:
        return jitted
    cache: dict[Any, Any] = {}

    def call(*args: Any) -> Any:
        sig = jax.tree.map(lambda a: (np.shape(a), str(getattr(a, "dtype", type(a).__name__))), args)
        key = str(jax.tree.structure(args)) + str(jax.tree.leaves(sig))
        if key not in cache:
            cache[key] = jitted.lower(*args).compile(compiler_options=options)
        return cache[key](*args)

    return call


def init_params(spec: ModelSpec, config: TrainConfig, bases: tuple[int, ...], seed: int) -> dict[str, Any]:
    """Initial weights as a pure dict, drawn with numpy (no XLA compile): LeCun-normal kernels,
    zero biases, unit LayerNorm scales, small positional embeddings, and zero heads and base
    (the HAR-residual start; :func:`init_from_har` then sets the base).
    """
    meta = _meta_stub(spec, config, bases, None)
    from model.nn.checkpoint import _abstract_model

    _, state = nnx.split(_abstract_model(meta))
    rng = np.random.default_rng(seed)

    def init(path: tuple[Any, ...], leaf: Any) -> np.ndarray:
        names = [str(getattr(k, "key", k)) for k in path]
        shape, last = leaf.shape, names[-1]
        if names[0] in ("heads", "base", "q50_offset", "smearing") or last == "bias":
            return np.zeros(shape, dtype=np.float32)
        if last == "scale":
            return np.ones(shape, dtype=np.float32)
        if last == "q_spread":
            return np.full(shape, math.log(math.expm1(1.0)), dtype=np.float32)
        if last == "pos":
            return (0.02 * rng.standard_normal(shape)).astype(np.float32)
        return (rng.standard_normal(shape) / math.sqrt(shape[0])).astype(np.float32)

    return jax.tree_util.tree_map_with_path(init, nnx.to_pure_dict(state))  # type: ignore[no-any-return]


def _meta_stub(spec: ModelSpec, config: TrainConfig, bases: tuple[int, ...], norm: Normalization | None) -> CheckpointMeta:
    n = len(spec.channels)
    return CheckpointMeta(
        format=FORMAT,
        spec=spec,
        model=dataclasses.asdict(config.model),
        base_channels=bases,
        normalization=norm or Normalization(mean=(0.0,) * n, std=(1.0,) * n, trained=(True,) * n),
        train_config={},
        training_data=[],
        validation={},
        seed=0,
        created_utc="",
        versions={},
    )


def init_from_har(params: dict[str, Any], x_base: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Set the linear base in ``params`` to the OLS HAR-X of ``y[n, H]`` on ``x_base[n, K]``; return a summary.

    Location: ``b0 + b'x``; mean: location plus the smearing term ``ln mean(exp(e))``
    of the residuals ``e`` (Duan 1983; also the QLIKE-optimal constant shift);
    quantiles: location plus the residual quantiles ``e_q``.
    """
    kernel = np.zeros((x_base.shape[1], y.shape[1]), dtype=np.float32)
    bias, q50, smear = (np.zeros(y.shape[1], dtype=np.float32) for _ in range(3))
    spread = np.ones((y.shape[1], 2), dtype=np.float32)
    summary = []
    for j in range(y.shape[1]):
        ok = np.isfinite(y[:, j])
        fit = fit_har(x_base[ok], y[ok, j])
        kernel[:, j] = fit.beta[1:]
        bias[j] = fit.beta[0]
        resid = y[ok, j] - fit.beta[0] - x_base[ok] @ np.asarray(fit.beta[1:])
        smear[j] = math.log(float(np.mean(np.exp(resid))))
        e10, e50, e90 = fit.log_quantiles
        q50[j] = e50
        spread[j] = (max(e50 - e10, 1e-3), max(e90 - e50, 1e-3))
        summary.append({"r2": fit.r2, "resid_var": fit.resid_var, "smearing": float(smear[j]), "n": fit.n_pairs})
    params["base"]["kernel"] = kernel
    params["base"]["bias"] = bias
    params["smearing"] = smear
    params["q50_offset"] = q50
    params["q_spread"] = (spread + np.log(-np.expm1(-spread))).astype(np.float32)  # softplus^-1
    return {"ols": summary}


def _loss(out: dict[str, jax.Array], y: jax.Array, w: jax.Array, quantile_weight: float) -> tuple[jax.Array, jax.Array]:
    """Squared error of the location + QLIKE of the mean (trains only the smearing term) + pinball."""
    e = jnp.clip(y - out["rv_mean"], -30.0, 20.0)
    ql = jnp.exp(e) - e - 1.0
    se = (y - out["rv_loc"]) ** 2
    u = y[..., None] - out["rv_quantiles"]
    pb = jnp.maximum(TAU * u, (TAU - 1.0) * u).sum(-1)
    total = w.sum()
    q = (ql * w).sum() / total
    return ((se + ql + quantile_weight * pb) * w).sum() / total, q


SHRINK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def shrink(trained: dict[str, Any], start: dict[str, Any], g: np.ndarray) -> dict[str, Any]:
    """Move each horizon's own weights back toward the start by ``1 - g[h]``; the shared trunk stays trained.

    Horizon ``h``'s heads are linear in its own columns of the base, the heads,
    the smearing and the quantile offsets, so ``g[h] = 0`` gives back the start's
    forecast for ``h`` exactly (from a HAR-X start, whose heads are zero) and
    ``g[h] = 1`` the trained one: a per-horizon shrinkage of the learned
    correction, chosen on validation.
    """
    n_h = len(g)
    out = jax.tree.map(np.array, trained)

    def mix(path: tuple[str, ...], axis: int, group: int = 1) -> None:
        node_t, node_s, node_o = trained, start, out
        for k in path[:-1]:
            node_t, node_s, node_o = node_t[k], node_s[k], node_o[k]
        a, b = np.asarray(node_t[path[-1]]), np.asarray(node_s[path[-1]])
        shape = [1] * a.ndim
        shape[axis] = a.shape[axis]
        w = np.repeat(g, group).reshape(shape) if group > 1 else g.reshape(shape)
        node_o[path[-1]] = (b + w * (a - b)).astype(np.float32)

    for path, axis, group in (
        (("base", "kernel"), 1, 1),
        (("base", "bias"), 0, 1),
        (("heads", "rv_loc", "kernel"), 1, 1),
        (("heads", "rv_loc", "bias"), 0, 1),
        (("heads", "rv_mean", "kernel"), 1, 1),
        (("heads", "rv_mean", "bias"), 0, 1),
        (("heads", "rv_quantiles", "kernel"), 1, 3),
        (("heads", "rv_quantiles", "bias"), 0, 3),
        (("smearing",), 0, 1),
        (("q50_offset",), 0, 1),
        (("q_spread",), 0, 1),
    ):
        mix(path, axis, group)
    if np.shape(out["smearing"]) != (n_h,):
        raise ValueError(f"g has {n_h} horizons, the weights {np.shape(out['smearing'])}")
    return out  # type: ignore[no-any-return]


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` learned: the model's meta parts, weights, validation scores and history."""

    params: dict[str, Any]
    normalization: Normalization
    base_channels: tuple[int, ...]
    validation: dict[str, Any]
    history: list[dict[str, float]]
    n_train: int
    n_val: int


def scores(y: np.ndarray, mean: np.ndarray, quantiles: np.ndarray, horizons: Sequence[str]) -> dict[str, Any]:
    """Mean QLIKE and q10-q90 coverage per horizon on relative log targets (NaN targets skipped)."""
    out: dict[str, Any] = {"qlike": {}, "coverage_q10_q90": {}, "n": {}}
    for j, h in enumerate(horizons):
        ok = np.isfinite(y[:, j])
        e = np.clip(y[ok, j] - mean[ok, j], -30, 20)
        out["qlike"][h] = float(np.mean(np.exp(e) - e - 1.0)) if ok.any() else math.nan
        inside = (y[ok, j] >= quantiles[ok, j, 0]) & (y[ok, j] <= quantiles[ok, j, 2])
        out["coverage_q10_q90"][h] = float(inside.mean()) if ok.any() else math.nan
        out["n"][h] = int(ok.sum())
    out["qlike_mean"] = float(np.nanmean(list(out["qlike"].values())))
    return out


def predict_samples(
    predict: Any, params: Any, norm: Normalization, ds: Dataset, idx: np.ndarray, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Relative ``(mean[n, H], quantiles[n, H, 3])`` for samples ``idx``, in chunks of one compiled shape."""
    mean_a, std_a, tr_a = (jnp.asarray(np.asarray(v, dtype=np.float32)) for v in (norm.mean, norm.std, norm.trained))
    means, quants = [], []
    for start in range(0, len(idx), chunk):
        part = idx[start : start + chunk]
        x, m = ds.windows(part)
        pad = chunk - len(part)
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), dtype=x.dtype)])
            m = np.concatenate([m, np.zeros((pad, *m.shape[1:]), dtype=m.dtype)])
        out = predict(params, mean_a, std_a, tr_a, jnp.asarray(x), jnp.asarray(m))
        means.append(np.asarray(out["rv_mean"])[: len(part)])
        quants.append(np.asarray(out["rv_quantiles"])[: len(part)])
    h = len(ds.spec.horizons)
    if not means:
        return np.zeros((0, h)), np.zeros((0, h, 3))
    return np.concatenate(means), np.concatenate(quants)


def fit(
    ds: Dataset,
    *,
    config: TrainConfig = DEFAULT,
    seed: int = 0,
    init: Checkpoint | None = None,
    progress: bool = True,
) -> FitResult:
    """Train on ``ds`` (from scratch, or fine-tuning ``init``) with early stopping on the validation split.

    Raises
    ------
    ValueError
        Fewer than ``config.min_train_samples`` usable training windows, or no validation windows.
    """
    spec = ds.spec
    train_idx, val_idx = split(ds, config.val_fraction)
    train_idx = train_idx[np.isfinite(ds.y[train_idx]).any(axis=1)]
    val_idx = val_idx[np.isfinite(ds.y[val_idx]).any(axis=1)]
    all_idx = np.flatnonzero(np.isfinite(ds.y).any(axis=1))
    if len(train_idx) < config.min_train_samples or len(val_idx) == 0:
        raise ValueError(
            f"too little data to train: {len(train_idx)} training and {len(val_idx)} validation windows "
            f"(need {config.min_train_samples} and 1); give more bars"
        )
    if len(train_idx) < config.batch_size:
        raise ValueError(f"{len(train_idx)} training windows are fewer than one batch of {config.batch_size}")
    key = np.array([0, seed], dtype=np.uint32)  # raw threefry key data; no device work
    bases = init.meta.base_channels if init is not None else base_channels(spec)
    lr = config.fine_tune_learning_rate if init is not None else config.learning_rate

    def start(fit_idx: np.ndarray) -> tuple[Normalization, dict[str, Any], dict[str, Any]]:
        """Normalization, initial weights and their summary, from the samples ``fit_idx`` only."""
        if init is not None:
            # Fine-tuning: the checkpoint's normalization and network, with its linear HAR-X base and
            # smearing refit on this data (the level and persistence of a new venue or period).
            init.spec.check_compatible(spec)
            norm = init.meta.normalization
            p0 = jax.tree.map(np.array, init.params)
            x_std, _ = standardize(ds.values[ds.ends[fit_idx]], ds.mask[ds.ends[fit_idx]], norm)
            summary = init_from_har(p0, x_std[:, list(bases)], ds.y[fit_idx].astype(np.float64))
            return norm, p0, {"fine_tuned_from": init.sha256, **summary}
        norm = normalization(ds, fit_idx)
        p0 = init_params(spec, config, bases, seed)
        x_std, _ = standardize(ds.values[ds.ends[fit_idx]], ds.mask[ds.ends[fit_idx]], norm)
        return norm, p0, init_from_har(p0, x_std[:, list(bases)], ds.y[fit_idx].astype(np.float64))

    norm, p0, har_summary = start(train_idx)
    graphdef, params_tree = nnx.split(build_model(_meta_stub(spec, config, bases, norm), p0))
    # The optimizer works on one flat vector: far fewer tiny kernels to compile than one per leaf.
    _, unravel = ravel_pytree(params_tree)
    options = {"xla_backend_optimization_level": 0} if config.fast_compile else None
    predict = _compiled(lambda p, *a: predict_fn(graphdef)(unravel(p), *a), options)
    # The HAR-X base and its smearing stay at their least-squares fit: Adam's normalized steps would
    # random-walk a linear fit that is already at its optimum (validation QLIKE rose from the first
    # epoch on the BTC month when they trained). The network learns the residual correction only.
    frozen = jax.tree_util.tree_map_with_path(
        lambda path, leaf: np.full(np.shape(leaf), str(getattr(path[0], "key", path[0])) in ("base", "smearing")),
        nnx.to_pure_dict(params_tree),
    )
    trainable = jnp.asarray(1.0 - ravel_pytree(jax.tree.map(lambda a: a.astype(np.float32), frozen))[0])
    tx = optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(lr, weight_decay=config.weight_decay),
    )

    def loss_fn(p: Any, x: jax.Array, m: jax.Array, y: jax.Array, w: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _loss(nnx.merge(graphdef, unravel(p))(x, m), y, w, config.quantile_weight)

    def step(p: Any, o: Any, data: tuple[jax.Array, ...], sample: jax.Array, n: Any) -> Any:
        # Data arrays are arguments, not closures: closed-over arrays become HLO constants (slow compiles).
        gx, gm, ends, y, w, groups, k0 = data
        grid = ends[sample][:, None] + jnp.arange(-spec.window + 1, 1)
        x, m = gx[grid], gm[grid]
        k = jax.random.fold_in(k0, n)
        drop = jax.random.bernoulli(k, config.channel_dropout, (sample.shape[0], groups.shape[0]))
        keep = 1.0 - jnp.clip(drop.astype(jnp.float32) @ groups, 0.0, 1.0)  # [B, C]
        x, m = x * keep[:, None, :], m * keep[:, None, :]
        (loss, ql), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, x, m, y[sample], w[sample])
        updates, o = tx.update(grads * trainable, o, p)
        return optax.apply_updates(p, updates * trainable), o, loss, ql

    step = _compiled(step, options)
    y_all = jnp.asarray(np.nan_to_num(ds.y, nan=0.0))
    # Overlapping h-bar targets carry about 1/h of the information per window: weight horizons accordingly.
    h_bars = np.array([h.ns / spec.bar_ns for h in spec.horizon_objs])
    h_weight = (h_bars[0] / h_bars) ** config.horizon_weight_power
    w_all = jnp.asarray((np.isfinite(ds.y) * h_weight).astype(np.float32))
    ends_all, groups = jnp.asarray(ds.ends), jnp.asarray(dropout_groups(spec))

    def run(norm: Normalization, p0: dict[str, Any], idx: np.ndarray, epochs: int, bar: Any, on_epoch: Any) -> Any:
        """Train from ``p0`` on samples ``idx`` for up to ``epochs``; ``on_epoch(epoch, params, loss)`` True stops."""
        grid_x, grid_m = (jnp.asarray(a) for a in standardize(ds.values, ds.mask, norm))
        data = (grid_x, grid_m, ends_all, y_all, w_all, groups, jnp.asarray(key))
        params = ravel_pytree(jax.tree.map(jnp.asarray, p0))[0]
        opt_state = tx.init(params)
        rng = np.random.default_rng(seed)
        steps = min(len(idx) // config.batch_size, config.max_steps_per_epoch)
        n_step = 0
        for epoch in range(1, epochs + 1):
            order = rng.permutation(idx)[: steps * config.batch_size].reshape(steps, config.batch_size)
            losses = []
            for batch in order:
                params, opt_state, loss, _ = step(params, opt_state, data, jnp.asarray(batch), np.int32(n_step))
                n_step += 1
                losses.append(loss)
                bar.update(1)
            if on_epoch(epoch, params, float(np.mean(jax.device_get(losses)))):
                break
        return params

    def validate(p: Any, norm: Normalization) -> dict[str, Any]:
        mean, quant = predict_samples(predict, p, norm, ds, val_idx)
        return scores(ds.y[val_idx], mean, quant, spec.horizons)

    # Phase 1: train on the older samples, early-stop on the held-out newest ones.
    start_scores = validate(ravel_pytree(jax.tree.map(jnp.asarray, p0))[0], norm)
    start_q = np.array([start_scores["qlike"][h] for h in spec.horizons])
    history: list[dict[str, float]] = [{"epoch": 0, "val_qlike_ratio": 1.0, "train_loss": math.nan}]
    best: dict[str, Any] = {"ratio": 1.0, "epoch": 0, "params": None}

    def on_epoch(epoch: int, params: Any, loss: float) -> bool:
        sc = validate(params, norm)
        # Mean QLIKE ratio to the start over horizons: each horizon counts alike, whatever its loss scale.
        ratio = float(np.nanmean(np.array([sc["qlike"][h] for h in spec.horizons]) / start_q))
        history.append({"epoch": epoch, "val_qlike_ratio": ratio, "train_loss": loss})
        bar.set_postfix(epoch=epoch, val_vs_start=f"{ratio:.4f}", best=f"{min(best['ratio'], ratio):.4f}")
        if ratio < best["ratio"] - 1e-5:
            best.update(ratio=ratio, epoch=epoch, params=params, scores=sc)
        return epoch - best["epoch"] >= config.patience

    steps1 = min(len(train_idx) // config.batch_size, config.max_steps_per_epoch)
    bar = tqdm(total=config.max_epochs * steps1, desc="train", unit="step", disable=not progress, leave=False)
    try:
        run(norm, p0, train_idx, config.max_epochs, bar, on_epoch)
    finally:
        bar.close()
    # Per-horizon shrinkage of the learned correction toward the start, chosen on validation; a
    # horizon keeps a correction only if it beats the start by a Diebold-Mariano t below
    # -config.min_dm_t on the held-out windows (noise in a short validation tail is not a gain).
    trained_tree = (
        jax.tree.map(np.asarray, nnx.to_pure_dict(unravel(best["params"]))) if best["params"] is not None else p0
    )
    y_val = ds.y[val_idx]
    losses = {}
    for gv in SHRINK_GRID:
        mixed = shrink(trained_tree, p0, np.full(len(spec.horizons), gv))
        mean, _ = predict_samples(predict, ravel_pytree(jax.tree.map(jnp.asarray, mixed))[0], norm, ds, val_idx)
        e = np.clip(y_val - mean, -30, 20)
        losses[gv] = np.exp(e) - e - 1.0  # NaN where the target is absent
    g = np.zeros(len(spec.horizons))
    dm_t: dict[str, float | None] = {}
    for j, h in enumerate(spec.horizons):
        ok = np.isfinite(y_val[:, j])
        cand = min(SHRINK_GRID, key=lambda gv: (float(np.mean(losses[gv][ok, j])), -gv))
        if best["params"] is None or cand == 0.0 or ok.sum() < 50:
            dm_t[h] = None  # no trained correction beat the start on validation
            continue
        lag = min(2 * int(h_bars[j]), int(ok.sum()) // 4)
        _, t = diebold_mariano(losses[cand][ok, j], losses[0.0][ok, j], max_lag=lag)
        dm_t[h] = float(t)
        g[j] = cand if t < -config.min_dm_t else 0.0
    held_tree = shrink(trained_tree, p0, g)
    held_out = validate(ravel_pytree(jax.tree.map(jnp.asarray, held_tree))[0], norm)
    validation = {
        "what": "mean QLIKE on variance and q10-q90 coverage per horizon on the time-ordered validation tail "
        f"({config.val_fraction:.0%} of each source's windows, after an embargo of one {spec.horizons[-1]} horizon), "
        "of the network trained on the older windows and stopped at its best epoch",
        "model": held_out,
        "start": {
            "what": "the network before training: "
            + ("the checkpoint with its HAR-X base refit here" if init else "its OLS HAR-X base"),
            **start_scores,
        },
        "best_epoch": int(best["epoch"]),
        "epochs_run": len(history) - 1,
        "n_train_held_out": len(train_idx),
        "correction_kept": dict(zip(spec.horizons, g.tolist())),
        "correction_dm_t": dm_t,
        "init": har_summary,
    }
    final_tree = held_tree
    n_final = len(train_idx)
    if config.refit_on_all:
        # Phase 2: the linear HAR-X base and its smearing refit by OLS on every window (validation
        # included: the newest data matters most), with the same normalization. The network's
        # correction stays the validated one: a network retrained on all windows would be unvalidated
        # (on the BTC month's first 30% such a retrained correction lost to the HAR-X out of sample).
        x_std, _ = standardize(ds.values[ds.ends[all_idx]], ds.mask[ds.ends[all_idx]], norm)
        refit = jax.tree.map(np.array, final_tree)
        har_all = init_from_har(refit, x_std[:, list(bases)], ds.y[all_idx].astype(np.float64))
        final_tree = held_tree
        for name in ("base", "smearing"):
            final_tree[name] = refit[name]
        n_final = len(all_idx)
        validation["final"] = (
            f"HAR-X base and smearing refit by OLS on all {n_final} windows (validation included); the network's "
            "correction is the validated one; the scores above are of the held-out run"
        )
        validation["init_all"] = har_all
    return FitResult(
        params=final_tree,
        normalization=norm,
        base_channels=tuple(bases),
        validation=validation,
        history=history,
        n_train=int(n_final),
        n_val=len(val_idx),
    )


def make_meta(
    spec: ModelSpec,
    config: TrainConfig,
    result: FitResult,
    training_data: list[dict[str, Any]],
    seed: int,
    fine_tuned_from: str = "",
) -> CheckpointMeta:
    """The checkpoint meta of a fit."""
    cfg = dataclasses.asdict(config)
    return CheckpointMeta(
        format=FORMAT,
        spec=spec,
        model=dataclasses.asdict(config.model),
        base_channels=result.base_channels,
        normalization=result.normalization,
        train_config=cfg,
        training_data=training_data,
        validation={**result.validation, "n_train": result.n_train, "n_val": result.n_val, "history": result.history},
        seed=seed,
        created_utc=utc_now(),
        versions=versions(),
        fine_tuned_from=fine_tuned_from,
    )


def load_datasets(data_paths: Sequence[str | os.PathLike[str]], window: int) -> list[Dataset]:
    """One dataset per bar file; every file must have the same bar length."""
    from model.bars import read_bars

    out: list[Dataset] = []
    for path in data_paths:
        bars = read_bars(path)
        if out and bars.bar_ns != out[0].spec.bar_ns:
            raise ValueError(
                f"{path} has {bars.bar_ns} ns bars, {out[0].sources[0]['source']} has {out[0].spec.bar_ns} ns: "
                "one checkpoint serves one bar length"
            )
        out.append(dataset_from_bars(bars, model_spec(bars.bar_ns, window=window)))
    return out


def train(
    data_paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    config: TrainConfig | None = None,
    datasets: Sequence[Dataset] = (),
    init: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train on bar files (and/or prepared datasets, e.g. :func:`model.nn.dataset.dataset_from_rows`) and write ``out``.

    Parameters
    ----------
    data_paths : sequence of paths
        OHLCV bar CSVs (:func:`model.bars.read_bars`), one bar length for all.
    out : path
        Checkpoint file to write (atomically).
    seed : int
        Seeds initialization, shuffling and channel dropout; same seed and data, same weights.
    config : TrainConfig or None
        :data:`model.nn.configs.DEFAULT` when None.
    datasets : sequence of Dataset
        Extra sources (e.g. recordings' feature rows), same spec as the files.
    init : path or None
        Fine-tune this checkpoint instead of starting from the HAR-X initialization.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        ``{"checkpoint", "sha256", "bytes", "spec", "training_data", "validation", "seconds"}``.
    """
    config = config or DEFAULT
    t0 = time.perf_counter()
    parts = load_datasets(data_paths, config.window) + list(datasets)
    if not parts:
        raise ValueError("no training data: give bar files or datasets")
    ds = concat(parts)
    start = None
    if init is not None:
        from model.nn.checkpoint import load_checkpoint

        start = load_checkpoint(init, ds.spec)
    result = fit(ds, config=config, seed=seed, init=start, progress=progress)
    training_data = [dict(s) for s in ds.sources]
    for s in training_data:
        s["used_for"] = (
            f"network: trained on the first {1 - config.val_fraction:.0%} of windows, validated on the rest after a "
            "one-horizon embargo; "
            + ("linear HAR-X base: refit on all windows" if config.refit_on_all and start is None else "")
        ).rstrip("; ")
    meta = make_meta(ds.spec, config, result, training_data, seed, start.sha256 if start else "")
    digest = save_checkpoint(out, meta, result.params)
    return json_safe({  # type: ignore[no-any-return]
        "checkpoint": os.fspath(out),
        "sha256": digest,
        "bytes": os.path.getsize(out),
        "spec": {"bar_ns": ds.spec.bar_ns, "window": ds.spec.window, "horizons": list(ds.spec.horizons)},
        "training_data": [{k: v for k, v in s.items() if k != "channels_present"} for s in training_data],
        "validation": result.validation,
        "seconds": round(time.perf_counter() - t0, 1),
    })
