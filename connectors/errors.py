"""Exceptions raised by connectors.

The tree::

    ConnectorError                 base of everything connectors raise on purpose
    ├── ConfigError (ValueError)   bad constructor arguments: unknown market, stream,
    │                              symbol; raised at construction, never mid-stream
    ├── ProtocolError (Sans-I/O)   a frame or REST body that breaks the venue's
    │                              protocol; the cores catch it, count it as
    │                              ``malformed`` and carry on, so callers of
    │                              ``receive_*`` never see it
    ├── FeedConfigError            the venue refused what we asked for in a way no
    │                              reconnect can fix (an unknown symbol); the shell stops
    └── ReconnectsExhausted        the asyncio shell gave up after ``max_reconnects``
                                   (only when a limit was set; the default retries
                                   forever)

Network failures (DNS, refused, timeouts, rejected handshakes) are not wrapped:
``connectors.io.retry.classify`` names them, the shell logs one line and retries.
Sequence gaps and crossed books are not exceptions either: they are data, reported
as ``FeedStatus`` events.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class of every exception connectors raise deliberately."""


class ConfigError(ConnectorError, ValueError):
    """A connector was configured with values it cannot use."""


class ProtocolError(ConnectorError):
    """A frame or REST response that does not follow the venue's protocol (Sans-I/O)."""


class FeedConfigError(ConnectorError):
    """The venue says a subscription cannot work (e.g. Binance -1121 "Invalid symbol.")."""


class ReconnectsExhausted(ConnectorError):
    """The shell reconnected ``max_reconnects`` times and stopped; holds the last reason."""
