"""Errors the CLI reports as one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

from connectors.errors import ConnectorError
from connectors.record import RecordingFormatError
from flows.config import ConfigError
from flows.sink_urls import SinkUrlError


class SinkStartError(Exception):
    """A sink that cannot start (its port is taken, an optional dependency is missing)."""


class DataError(ValueError):
    """Input data a command cannot use (a bar file too short, a bad checkpoint); one line."""


# Everything here is the user's input or environment, not a bug in volcast.
UserError = (DataError, 
    ConfigError, SinkUrlError, SinkStartError, RecordingFormatError, ConnectorError,
    FileNotFoundError, PermissionError, OSError,
)
