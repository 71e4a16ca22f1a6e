"""The clients of one replayed single-endpoint protocol (an Ethereum node, mempool.space).

Each client has its own protocol state (what it subscribed to) and a lock: an answer
to a client's message goes out before the next replayed message reaches that client,
so nothing is pushed for a subscription before it is acknowledged, or after it is
cancelled. The first subscription of any client starts the server's clock
:data:`START_GRACE_S` later, so that the requests a client sends one after the other
all see the first replayed frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

START_GRACE_S = 0.2  # from the first subscription to the start of the clock

C = TypeVar("C")


class ReplayClients(Generic[C]):
    """Connected clients, each with its state ``C`` and lock; ``start`` starts the server's clock."""

    def __init__(self, start: Callable[[], None]) -> None:
        self._start = start
        self._starting = False
        self._clients: dict[ServerConnection, tuple[C, asyncio.Lock]] = {}

    async def broadcast(self, render: Callable[[C], bytes | None]) -> None:
        """Send every client what ``render`` makes of its state (None: nothing); closed clients are dropped."""
        for ws, (client, lock) in list(self._clients.items()):
            try:
                async with lock:
                    out = render(client)
                    if out is not None:
                        await ws.send(out.decode())
            except ConnectionClosed:
                self._clients.pop(ws, None)

    async def serve(
        self,
        ws: ServerConnection,
        client: C,
        answer: Callable[[C, str | bytes], Iterable[bytes]],
        subscribed: Callable[[C], bool],
    ) -> None:
        """Answer one client's messages until it or the server closes; unreadable JSON closes it with 1008."""
        lock = asyncio.Lock()
        self._clients[ws] = (client, lock)
        try:
            async for message in ws:
                try:
                    async with lock:
                        for out in answer(client, message):
                            await ws.send(out.decode())
                except msgspec.DecodeError:
                    await ws.close(1008, "invalid JSON")
                    return
                if subscribed(client) and not self._starting:
                    self._starting = True
                    asyncio.get_running_loop().call_later(START_GRACE_S, self._start)
        except ConnectionClosed:
            pass
        finally:
            self._clients.pop(ws, None)
