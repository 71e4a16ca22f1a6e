"""Every sink inside a Bytewax flow, fed the records the flow makes from real recordings.

Each sink's output is read back by a real consumer (a file reader, redis-py, nats-py,
a websocket client), counted against what was sent and validated against the JSON
Schema its ``schema`` field names.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import msgspec
import nats
import pytest
import redis
from bytewax.dataflow import Dataflow
from bytewax.outputs import FixedPartitionedSink
from bytewax.testing import TestingSource, run_main
from websockets.sync.client import connect

from connectors.sinks.localserver import NatsServer, RedisServer, free_port
from flows import metrics
from flows.bench_sinks import demo_records
from flows.schemas import SCHEMAS, forecast_schema, load_schema, validate
from flows.sink_urls import parse_sink_urls
from flows.sinks import build_sinks

ROOT = Path(__file__).resolve().parents[2]
need_redis = pytest.mark.skipif(not RedisServer.available(), reason="redis-server not installed (make test-deps)")
need_nats = pytest.mark.skipif(not NatsServer.available(), reason="nats-server not installed (make test-deps)")


@pytest.fixture(scope="module")
def records():
    recs = list(demo_records())
    assert len(recs) > 600 and {r["schema"] for r in recs} == set(SCHEMAS)
    return recs


def run_flow(records, sinks, batch_size=64):
    flow = Dataflow("sinks_test")
    bare = op.input("in", flow, TestingSource(records, batch_size=batch_size))
    keyed = op.key_on("key", bare, lambda r: r["underlying"])
    for i, sink in enumerate(sinks):
        op.output(f"out_{i}", keyed if isinstance(sink, FixedPartitionedSink) else bare, sink)
    run_main(flow)


_VALID: set[bytes] = set()


def check(received, records):
    """The consumer got every record once, in order per topic, each schema-valid."""
    for r in received:
        key = msgspec.json.encode(r)
        if key not in _VALID:  # identical content was validated already (jsonschema takes ~1 ms)
            validate(r)
            _VALID.add(key)

    def per_topic(rs):
        out: dict = {}
        for r in rs:
            out.setdefault((r["schema"], r["underlying"]), []).append(r["id"])
        return out

    assert per_topic(received) == per_topic(records)


def test_the_schemas_are_valid_json_schema_and_shipped_as_package_data():
    import jsonschema

    for name in SCHEMAS:
        jsonschema.Draft202012Validator.check_schema(load_schema(name))
    assert (ROOT / "flows" / "schemas" / "forecast-1.json").exists()
    assert forecast_schema()["properties"]["schema"]["const"] == "volcast.forecast/1"


def test_the_schema_rejects_a_record_that_breaks_it(records):
    import jsonschema

    bad = json.loads(json.dumps(records[-1]))
    bad.pop("id")
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    fc = next(json.loads(json.dumps(r)) for r in records if r["schema"] == "volcast.forecast/1")
    fc["rv"][0]["vol"] = "high"
    with pytest.raises(jsonschema.ValidationError):
        validate(fc)


def test_file_sink_rotates_and_every_line_is_valid(tmp_path, records):
    sinks = build_sinks(parse_sink_urls([f"file://{tmp_path}/f.jsonl?rotate_mb=0.1&fsync=interval"]))
    run_flow(records, sinks)
    segments = sorted(tmp_path.glob("f-*.jsonl"))
    assert len(segments) > 3 and not list(tmp_path.glob("*.part"))
    lines = [json.loads(line) for s in segments for line in s.read_text().splitlines()]
    check(lines, records)
    assert metrics.SINKS.snapshot()[f"file://{tmp_path}/f.jsonl"]["delivered"] == len(records)


def test_stdout_sink_prints_valid_json_lines(capfd, records):
    run_flow(records, build_sinks(parse_sink_urls(["stdout"])))
    out = capfd.readouterr().out
    check([json.loads(line) for line in out.splitlines()], records)


@need_redis
@need_nats
def test_ws_redis_and_nats_consumers_get_every_record(records):
    with RedisServer() as rs, NatsServer() as ns:
        ws_port = free_port()
        sinks = build_sinks(parse_sink_urls([
            rs.url, f"{rs.url}/1?format=msgpack", ns.url, f"ws://127.0.0.1:{ws_port}?history=1000&queue=4096",
        ]))
        # The flow pauses a second before its first record, while a websocket client
        # connects; it also asks for a replay of anything it missed (since_ts_ns=0).
        ws_got: list[dict] = []
        done = threading.Event()

        def ws_client():
            deadline = time.monotonic() + 10
            while True:
                try:
                    ws = connect(f"ws://127.0.0.1:{ws_port}/?topics=*&since_ts_ns=0").__enter__()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            try:
                for frame in ws:
                    msg = json.loads(frame)
                    if msg["type"] == "record":
                        ws_got.append(msg["data"])
            except Exception:
                pass
            done.set()

        threading.Thread(target=ws_client, daemon=True).start()
        run_flow([TestingSource.PAUSE(timedelta(seconds=1)), *records], sinks)
        assert done.wait(10)  # the server closes the connection when the flow ends
        check(ws_got, records)

        r = redis.Redis(port=rs.port)
        keys = sorted(k.decode() for k in r.keys("volcast.*"))
        assert keys == sorted({f"volcast.{r_['schema'].split('.')[1].split('/')[0]}.{r_['underlying']}" for r_ in records})
        from_streams = [json.loads(f[b"data"]) for k in keys for _sid, f in r.xrange(k)]
        check(from_streams, records)
        r1 = redis.Redis(port=rs.port, db=1)
        from_msgpack = [msgspec.msgpack.decode(f[b"data"]) for k in keys for _sid, f in r1.xrange(k)]
        check(from_msgpack, records)

        check(_nats_records(ns.url), records)
        snap = metrics.SINKS.snapshot()
        for label in (f"{rs.url}/0", f"{rs.url}/1", ns.url, f"ws://127.0.0.1:{ws_port}"):
            assert snap[label]["delivered"] == len(records) and snap[label]["dropped"] == 0, label


def _nats_records(url: str) -> list[dict]:
    async def main():
        nc = await nats.connect(url)
        sub = await nc.jetstream().subscribe("volcast.>", ordered_consumer=True)
        out = []
        try:
            while True:
                m = await sub.next_msg(timeout=0.5)
                assert m.headers["Nats-Msg-Id"] == json.loads(m.data)["id"]
                out.append(json.loads(m.data))
        except nats.errors.TimeoutError:
            pass
        await nc.close()
        return out

    return asyncio.run(main())
