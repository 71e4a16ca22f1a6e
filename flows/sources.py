"""Bytewax sources over the connector shells.

Each feed (one websocket connection group) is one partition of a
``FixedPartitionedSource``, so it runs exactly once cluster-wide. The connector's
asyncio shell runs in a background thread and fills a bounded queue; ``next_batch``
drains it without blocking (research/bytewax.md §3: ``batch_async`` blocks the
worker and measured 20x worse latency).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.errors import FeedConfigError
from connectors.events import Event, FeedStatus
from connectors.io.ws import run_session
from connectors.venues.base import VenueProtocol
from connectors.venues.binance.protocol import BinanceProtocol
from connectors.venues.bitcoin.protocol import BitcoinMempoolProtocol
from connectors.venues.deribit.config import DeribitConfig
from connectors.venues.deribit.protocol import DeribitProtocol
from connectors.venues.ethereum.protocol import EthereumProtocol
from flows import metrics
from flows.config import AnyFeed, AppConfig, BitcoinFeed, DeribitFeed, EthereumFeed, FeedConfig

log = logging.getLogger("volcast.source")

_BATCH = 1024
_END = object()  # put by the socket thread when its session has ended


def build_protocol(feed: AnyFeed, book_view_depth: int | None, shard: int = 0) -> VenueProtocol:
    """The sans-I/O core for ``feed`` (its ``shard``); the flow reads book views, not deltas."""
    if isinstance(feed, FeedConfig):
        return BinanceProtocol(
            feed.market,
            feed.symbols,
            depth_stream=feed.depth_stream,
            trade_stream=feed.trade_stream,
            book_view_depth=book_view_depth,
            emit_deltas=book_view_depth is None,
        )
    if isinstance(feed, DeribitFeed):
        return DeribitProtocol(
            DeribitConfig(
                currencies=feed.currencies,
                kinds=feed.kinds,
                option_channels=("ticker",),
                interval=feed.interval,
                heartbeat_s=feed.heartbeat_s,
                dvol=feed.dvol,
                price_index=feed.price_index,
                instrument_state=feed.instrument_state,
                shard=shard,
                shards=feed.shards,
                book_view_depth=book_view_depth,
                emit_deltas=book_view_depth is None,
            )
        )
    if isinstance(feed, EthereumFeed):
        return EthereumProtocol(feed.ws_url, full_tx=feed.full_tx)
    if isinstance(feed, BitcoinFeed):
        return BitcoinMempoolProtocol(track_mempool=feed.track_mempool)
    raise TypeError(f"no connector for feed {feed!r}")


def feed_urls(feed: AnyFeed, protocol: VenueProtocol) -> tuple[str, str]:
    """(websocket URL, REST base) of ``feed``: its configured endpoints, else the venue's public ones."""
    if isinstance(feed, (EthereumFeed, BitcoinFeed)):
        return protocol.stream_url(feed.ws_url), ""
    return protocol.stream_url(feed.ws_url), feed.rest_url or protocol.rest_base


class _FeedPartition(StatefulSourcePartition[Event, None]):
    def __init__(
        self, name: str, feed: AnyFeed, shard: int, cfg: AppConfig, stop: threading.Event, failures: list[str]
    ) -> None:
        self._name = name
        self._feed = feed
        self._policy = cfg.queue_policy
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        self._stop = stop  # shared by every feed: the daemon is stopping
        self._closed = threading.Event()  # this feed alone is done
        self._failures = failures
        self._ended = False
        self._instruments = feed.instrument_ids()
        self._depth_gauge = metrics.QUEUE_DEPTH.labels(name)
        self._drops = metrics.QUEUE_DROPS.labels(name)
        self._protocol = build_protocol(feed, cfg.book_depth, shard)
        self._tracker = metrics.FrameTracker()
        metrics.QUEUE_CAPACITY.labels(name).set(cfg.queue_size)
        metrics.FEEDS.register(name, self._protocol, self._tracker, books=frozenset(self._instruments))
        self._thread = threading.Thread(target=self._run, name=f"feed-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self._session())
        except FeedConfigError as exc:
            # The venue refuses the configuration (an unknown symbol): the daemon cannot
            # do what it was asked, so it stops and the CLI reports this one line.
            self._failures.append(str(exc))
            self._stop.set()
        except Exception:  # a bug in the shell: end this feed loudly, not silently
            log.exception("%s: feed thread failed", self._name)
        finally:
            self._put_blocking(_END)

    async def _session(self) -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(self._watch_stop(stop))
        ws_url, rest_base = feed_urls(self._feed, self._protocol)
        try:
            await run_session(
                self._protocol,
                ws_url=ws_url,
                rest_base=rest_base,
                on_events=self._enqueue,
                on_frame=self._tracker.on_frame,  # bytes and last-message time, for metrics
                stop=stop,
            )
        finally:
            watcher.cancel()

    async def _watch_stop(self, stop: asyncio.Event) -> None:
        """Carry the flow's thread-safe stop flag into this feed's event loop."""
        while not (self._stop.is_set() or self._closed.is_set()):
            await asyncio.sleep(0.05)
        stop.set()

    async def _enqueue(self, events: list[Event]) -> None:
        for ev in events:
            for item in self._fan_out(ev):
                if self._policy == "block":
                    # Backpressure: stop reading the socket while Bytewax catches up.
                    while not self._try_put(item):
                        if self._stop.is_set() or self._closed.is_set():
                            return
                        await asyncio.sleep(0.001)
                else:
                    while not self._try_put(item):
                        try:
                            self._queue.get_nowait()
                            self._drops.inc()
                        except queue.Empty:
                            pass

    def _fan_out(self, ev: Event) -> list[Event]:
        """Connection-scope statuses concern every book instrument key of this feed."""
        if isinstance(ev, FeedStatus) and ev.scope == "connection" and self._instruments:
            return [
                FeedStatus(
                    venue=ev.venue,
                    symbol=iid.split(":", 1)[1],
                    ts_exchange_ns=ev.ts_exchange_ns,
                    ts_recv_ns=ev.ts_recv_ns,
                    state=ev.state,
                    scope="connection",
                    reason=ev.reason,
                )
                for iid in self._instruments
            ]
        return [ev]

    def _try_put(self, item: object) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            return False

    def _put_blocking(self, item: object) -> None:
        while not self._try_put(item):
            try:  # at shutdown the end marker must get through
                self._queue.get_nowait()
                self._drops.inc()
            except queue.Empty:
                pass

    def next_batch(self) -> list[Event]:
        if self._ended:
            raise StopIteration
        batch: list[Event] = []
        get = self._queue.get_nowait
        for _ in range(_BATCH):
            try:
                item = get()
            except queue.Empty:
                break
            if item is _END:
                self._ended = True
                break
            batch.append(item)
        self._depth_gauge.set(self._queue.qsize())
        if self._ended and not batch:
            raise StopIteration
        return batch

    def snapshot(self) -> None:
        # Live feeds cannot be rewound: books resync from fresh snapshots on restart.
        return None

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)


class FeedSource(FixedPartitionedSource[Event, None]):
    """One partition per configured connection: a feed, or one shard of a sharded feed."""

    def __init__(self, cfg: AppConfig, stop: threading.Event, failures: list[str] | None = None) -> None:
        self._cfg = cfg
        self._stop = stop
        self.failures: list[str] = [] if failures is None else failures
        self._parts: dict[str, tuple[AnyFeed, int]] = {}
        for feed in cfg.feeds:
            names = feed.part_names() if isinstance(feed, DeribitFeed) else [feed.name]
            for shard, name in enumerate(names):
                self._parts[name] = (feed, shard)

    def list_parts(self) -> list[str]:
        return list(self._parts)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _FeedPartition:
        feed, shard = self._parts[for_part]
        return _FeedPartition(for_part, feed, shard, self._cfg, self._stop, self.failures)


