"""Bitcoin mempool connector for the mempool.space websocket API."""

from connectors.venues.bitcoin.protocol import BitcoinMempoolProtocol

__all__ = ["BitcoinMempoolProtocol"]
