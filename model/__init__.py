"""The mathematics: features, windows, realized variance, forecasters.

Pure numerics (numpy, JAX, Flax, scipy). Never imports bytewax, asyncio,
websockets, ``flows`` or connectors' I/O; it reads ``connectors.events`` types only.

- ``features``: :class:`~model.features.FeatureBuilder`, events to fixed-cadence rows (the one feature path).
- ``windows``: :class:`~model.windows.RollingWindow`, the model's input per instrument.
- ``realized``: :class:`~model.realized.RVHistory`, trailing RV at two resolutions; ``annualize``.
- ``forecaster``: the ``Forecaster`` protocol and ``HorizonForecast`` record.
- ``baselines``: EWMA and online log-HAR-RV; batch HAR(-X)/EWMA and GARCH/GJR-GARCH for evaluation.
- ``metrics``: QLIKE and MSE on variance.
- ``bars``: OHLCV bar files read with a report of their irregularities; bars from feature rows.
- ``nn``: the attention forecaster (inputs, network, training, checkpoints, batched inference).
- ``evaluate``: every model scored on the same rolling-origin test of a bar file.
"""
