"""Replay recordings on loopback in each venue's own protocol (Binance, Deribit).

Not sans-I/O: :mod:`connectors.replay.server` is an asyncio websocket/HTTP server,
the one place outside ``connectors.io`` that imports asyncio and websockets.
"""

from connectors.replay.server import END_OF_RECORDING, ReplayServer, serve_forever

__all__ = ["END_OF_RECORDING", "ReplayServer", "serve_forever"]
