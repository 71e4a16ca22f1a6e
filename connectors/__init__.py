"""The outside world: wire protocols, order books, record/replay, sinks.

Never imports bytewax or model. Asyncio lives only in ``connectors.io`` and in
each venue's ``shell`` module; everything else is sans-I/O and fed frames.
"""
