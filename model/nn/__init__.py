"""The attention forecaster: inputs, network, training, checkpoints, batched inference.

- ``spec``: :class:`~model.nn.spec.ModelSpec` (bar rows, window, lags, horizons), the checkpoint's contract.
- ``inputs``: :class:`~model.nn.inputs.BarRows` (bar -> model row) and :class:`~model.nn.inputs.WindowBuilder`
  (live feature rows -> 1-minute bars -> windows), the one feature path.
- ``dataset``: windows and realized-variance targets from bar files or recorded feature rows.
- ``models``: :class:`~model.nn.models.VolAttention` (Flax NNX), HAR-X base plus attention correction.
- ``configs``, ``train``: :func:`~model.nn.train.train` writes a checkpoint; :func:`~model.nn.train.fit`.
- ``checkpoint``: self-describing msgpack checkpoints; :func:`~model.nn.checkpoint.load_checkpoint`.
- ``infer``: :class:`~model.nn.infer.BatchedForecaster`, bucketed ``jax.jit`` inference with hot reload.
- ``bench``: :func:`~model.nn.bench.inference_benchmark`.
"""
