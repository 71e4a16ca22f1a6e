"""The mathematics: features, windows, realized variance, forecasters.

Pure numerics (numpy, JAX, Flax, scipy). Never imports bytewax, asyncio,
websockets, ``flows`` or connectors' I/O; it reads ``connectors.events`` types only.

- ``features``: :class:`~model.features.FeatureBuilder`, events to fixed-cadence rows (the one feature path).
- ``windows``: :class:`~model.windows.RollingWindow`, the model's input per instrument.
- ``realized``: :class:`~model.realized.RVHistory`, trailing RV at two resolutions; ``annualize``.
- ``forecaster``: the ``Forecaster`` protocol and ``HorizonForecast`` record.
- ``baselines``: EWMA and online log-HAR-RV.
- ``metrics``: QLIKE and MSE on variance.
"""
