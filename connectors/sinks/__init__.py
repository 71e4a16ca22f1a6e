"""Delivery of forecast records to the outside world: files, websockets, brokers.

Never imports bytewax (the Bytewax ``Sink`` adapters live in ``flows.sinks``).

* :mod:`.message` — a record as a broker message: topic, key, id, payload (sans-I/O);
* :mod:`.delivery` — the delivery pump: a bounded buffer fed without blocking, a
  background thread with its own event loop that publishes, retries with back-off
  and counts what was delivered, retried and dropped;
* :mod:`.files` — rotating JSONL files (``.part`` while open), with an fsync policy;
* :mod:`.wsserver`, :mod:`.redis`, :mod:`.nats`, :mod:`.kafka` — the publishers;
* :mod:`.localserver` — ``redis-server`` / ``nats-server`` on loopback for tests and
  benchmarks.
"""
