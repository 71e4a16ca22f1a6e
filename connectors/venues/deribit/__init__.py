"""Deribit: JSON-RPC 2.0 over one websocket (research/protocols.md §1).

``config`` (what to subscribe), ``schemas`` (wire Structs), ``parse`` (wire ->
events, units normalized), ``requests`` (ids, pacing, calls in flight), ``chain``
(instrument selection, listings, expiries), ``books`` (per-symbol state and the
change_id chain) and ``protocol`` (the sans-I/O core that ties them together).
"""

from connectors.venues.deribit.config import DeribitConfig
from connectors.venues.deribit.parse import shard_of
from connectors.venues.deribit.protocol import DeribitProtocol

__all__ = ["DeribitConfig", "DeribitProtocol", "shard_of"]
