"""Ethereum mempool and chain-head connector (JSON-RPC ``eth_subscribe`` over websocket)."""

from connectors.venues.ethereum.protocol import EthereumProtocol

__all__ = ["EthereumProtocol"]
