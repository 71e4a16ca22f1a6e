"""Errors the CLI reports as one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

from connectors.errors import ConnectorError
from connectors.record import RecordingFormatError
from flows.config import ConfigError

# Everything here is the user's input or environment, not a bug in volcast.
UserError = (ConfigError, RecordingFormatError, ConnectorError, FileNotFoundError, PermissionError, OSError)
