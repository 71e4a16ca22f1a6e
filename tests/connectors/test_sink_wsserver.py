"""The websocket sink server: topics, replay, bearer token, and slow clients cut off alone."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from connectors.sinks.delivery import DeliveryPump
from connectors.sinks.message import to_message
from connectors.sinks.wsserver import WsServer


def rec(i: int, und: str = "BTC", pad: int = 0) -> dict:
    """A minimal synthetic record (``pad`` bytes of filler make it large)."""
    ts = 1_723_161_256_000_000_000 + i * 1_000_000_000
    r = {"schema": "volcast.forecast/1", "id": f"{und}:{ts}", "ts_ns": ts, "underlying": und}
    if pad:
        r["pad"] = "x" * pad
    return r


def wait_until(cond, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False


@pytest.fixture
def ws_pump(request):
    kw = getattr(request, "param", {})
    server = WsServer("127.0.0.1", 0, **kw)
    pump = DeliveryPump(server, label="ws://test", encode=to_message, batch_size=64)
    pump.start()
    yield server, pump
    pump.close(timeout=1)


class Reader:
    """A websocket client in a thread that keeps every frame it receives."""

    def __init__(self, url: str, headers: dict | None = None, subscribe: dict | None = None) -> None:
        self.ws = connect(url, additional_headers=headers, max_size=2**24).__enter__()
        if subscribe is not None:
            self.ws.send(json.dumps(subscribe))
        self.control: list[dict] = []
        self.records: list[dict] = []
        self.closed_code: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert wait_until(lambda: self.control)  # the "subscribed" answer

    def _run(self) -> None:
        try:
            for frame in self.ws:
                msg = json.loads(frame)
                (self.records if msg["type"] == "record" else self.control).append(msg)
        except Exception:
            pass
        self.closed_code = self.ws.close_code

    def ids(self) -> list[str]:
        return [m["id"] for m in self.records]

    def close(self) -> None:
        self.ws.close()


def test_clients_get_only_their_topics_in_the_record_envelope(ws_pump):
    server, pump = ws_pump
    url = f"ws://127.0.0.1:{server.port}"
    btc = Reader(url + "/?topics=forecast.BTC")
    eth = Reader(url, subscribe={"op": "subscribe", "topics": ["forecast.ETH"]})
    every = Reader(url + "/?topics=forecast.*")
    records = [rec(i, und) for i in range(10) for und in ("BTC", "ETH")]
    pump.offer(records)
    assert wait_until(lambda: len(every.records) == 20)
    assert wait_until(lambda: len(btc.records) == 10 and len(eth.records) == 10)
    assert btc.ids() == [r["id"] for r in records if r["underlying"] == "BTC"]
    assert eth.ids() == [r["id"] for r in records if r["underlying"] == "ETH"]
    assert every.records[0] == {"type": "record", "topic": "forecast.BTC", "id": records[0]["id"], "data": records[0]}
    assert eth.control[0] == {"type": "subscribed", "topics": ["forecast.ETH"]}
    for r in (btc, eth, every):
        r.close()


def test_since_ts_ns_replays_what_the_server_still_holds(ws_pump):
    server, pump = ws_pump
    pump.offer([rec(i) for i in range(10)])
    assert pump.wait_idle(5)
    late = Reader(f"ws://127.0.0.1:{server.port}",
                  subscribe={"op": "subscribe", "topics": ["*"], "since_ts_ns": rec(4)["ts_ns"]})
    pump.offer([rec(i) for i in range(10, 12)])
    assert wait_until(lambda: len(late.records) == 7)
    assert late.ids() == [rec(i)["id"] for i in range(5, 12)]
    late.close()


def test_bad_control_messages_get_an_error_answer(ws_pump):
    server, _pump = ws_pump
    r = Reader(f"ws://127.0.0.1:{server.port}/?topics=forecast.BTC")
    r.ws.send("not json")
    r.ws.send(json.dumps({"op": "fly"}))
    assert wait_until(lambda: len(r.control) == 3)
    assert [c["type"] for c in r.control] == ["subscribed", "error", "error"]
    assert "unknown op" in r.control[2]["error"]
    r.close()


@pytest.mark.parametrize("ws_pump", [{"token": "s3cret"}], indirect=True)
def test_a_bearer_token_is_required_when_configured(ws_pump):
    server, pump = ws_pump
    url = f"ws://127.0.0.1:{server.port}"
    for headers, path in ((None, "/"), ({"Authorization": "Bearer wrong"}, "/")):
        with pytest.raises(InvalidStatus) as exc:
            connect(url + path, additional_headers=headers).__enter__()
        assert exc.value.response.status_code == 401
    by_header = Reader(url + "/?topics=*", headers={"Authorization": "Bearer s3cret"})
    by_query = Reader(url + "/?topics=*&token=s3cret")
    pump.offer([rec(0)])
    assert wait_until(lambda: len(by_header.records) == 1 and len(by_query.records) == 1)
    assert server.rejected == 2
    by_header.close()
    by_query.close()


def _stalled_client(port: int) -> socket.socket:
    """A client that completes the handshake, then never reads again (tiny receive buffer)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        f"GET /?topics=forecast.BTC HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


@pytest.mark.parametrize("ws_pump", [{"client_queue": 256, "history": 0}], indirect=True)
def test_a_slow_client_is_disconnected_while_a_fast_one_keeps_receiving(ws_pump):
    # Arrange
    server, pump = ws_pump
    fast = Reader(f"ws://127.0.0.1:{server.port}/?topics=forecast.BTC")
    slow = _stalled_client(server.port)
    assert wait_until(lambda: server.extra_stats()["clients"] == 2)
    # Act: 3000 records of ~8 KB (24 MB, far beyond the socket buffers) at 2000 a second.
    records = [rec(i, pad=8000) for i in range(3000)]
    worst = 0.0
    for i in range(0, len(records), 10):
        t0 = time.perf_counter()
        pump.offer(records[i : i + 10])
        worst = max(worst, time.perf_counter() - t0)
        time.sleep(0.005)
    # Assert: the stalled client was cut off; the fast one got everything, in order.
    assert wait_until(lambda: len(fast.records) == len(records), timeout=20)
    assert fast.ids() == [r["id"] for r in records]
    assert server.slow_disconnects == 1 and server.extra_stats()["clients"] == 1
    assert fast.closed_code is None
    assert worst < 0.05  # the hand-off never waited on any client
    assert pump.stats().delivered == len(records)
    slow.close()
    fast.close()
