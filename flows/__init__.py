"""The composition root: Bytewax dataflows, CLI, config and metrics.

The only package that imports bytewax.
"""
