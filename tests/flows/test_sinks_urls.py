"""Sink URLs: what each scheme accepts, and one clear line for what it does not."""

from __future__ import annotations

import pytest

from flows.config import ConfigError, load_config_text
from flows.sink_urls import (
    FileSinkConfig,
    KafkaSinkConfig,
    NatsSinkConfig,
    RedisSinkConfig,
    SinkUrlError,
    StdoutSinkConfig,
    WsSinkConfig,
    parse_sink_url,
    parse_sink_urls,
    redact,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("stdout", StdoutSinkConfig()),
        ("file:///var/lib/volcast/f.jsonl", FileSinkConfig(path="/var/lib/volcast/f.jsonl")),
        ("file:out/f.jsonl?rotate_mb=64&rotate_s=3600&fsync=interval&fsync_s=2",
         FileSinkConfig(path="out/f.jsonl", rotate_mb=64.0, rotate_s=3600.0, fsync="interval", fsync_s=2.0)),
        ("ws://127.0.0.1:9001?token=t&queue=64&history=10",
         WsSinkConfig(host="127.0.0.1", port=9001, token="t", queue=64, history=10)),
        ("ws://:9001", WsSinkConfig(host="127.0.0.1", port=9001)),
        ("ws://0.0.0.0:9001", WsSinkConfig(host="0.0.0.0", port=9001)),
        ("redis://127.0.0.1", RedisSinkConfig(host="127.0.0.1", port=6379, db=0)),
        ("redis://u:p%40ss@127.0.0.1:6390/3?maxlen=10&prefix=vc:&format=msgpack&buffer=5&batch=2",
         RedisSinkConfig(host="127.0.0.1", port=6390, db=3, username="u", password="p@ss", maxlen=10,
                         prefix="vc:", format="msgpack", buffer=5, batch=2)),
        ("nats://127.0.0.1:4223?stream=VC&dupe_window_s=30",
         NatsSinkConfig(host="127.0.0.1", port=4223, stream="VC", dupe_window_s=30.0)),
        ("kafka://k1:9092,k2/vol.forecasts?acks=1",
         KafkaSinkConfig(brokers=("k1:9092", "k2:9092"), topic="vol.forecasts", acks="1")),
    ],
)
def test_valid_urls(url, expected):
    assert parse_sink_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt://127.0.0.1:1883", "unknown sink scheme 'mqtt' (known: file, stdout, ws, redis, nats, kafka)"),
        ("127.0.0.1:6379", "not a sink URL (expected SCHEME://..."),
        ("redis", "not a sink URL"),
        ("redis://127.0.0.1:port", "port must be a number within 1..65535, got 'port'"),
        ("redis://127.0.0.1:99999", "port must be a number"),
        ("redis://:6379", "no host"),
        ("redis://127.0.0.1/x", "the path is the database number"),
        ("redis://127.0.0.1?maxln=5", "unknown parameter 'maxln' for redis sinks"),
        ("redis://127.0.0.1?maxlen=lots", "maxlen: expected int, got str"),
        ("redis://127.0.0.1?maxlen=1&maxlen=2", "parameter 'maxlen' given twice"),
        ("redis://127.0.0.1?buffer=0", "buffer must be at least 1"),
        ("nats://127.0.0.1/path", "nats sinks take no path"),
        ("nats://127.0.0.1?stream=a.b", "stream must be letters"),
        ("ws://user:pw@127.0.0.1:1", "?token="),
        ("ws://127.0.0.1:1?token_env=VOLCAST_TEST_UNSET_VAR", "VOLCAST_TEST_UNSET_VAR, which is not set"),
        ("kafka://127.0.0.1:9092", "no topic"),
        ("kafka://127.0.0.1:x/t", "malformed broker"),
        ("file://somehost/f.jsonl", "a file URL takes no host"),
        ("file:///tmp/", "no file name"),
        ("file:///tmp/f.jsonl?fsync=sometimes", "fsync"),
        ("file:///tmp/f.jsonl?format=msgpack", "unknown parameter 'format' for file sinks"),
        ("stdout://x", "stdout takes no host"),
    ],
)
def test_bad_urls_name_the_url_and_the_problem(url, message):
    with pytest.raises(SinkUrlError) as exc:
        parse_sink_url(url)
    assert message in str(exc.value)
    assert str(exc.value).startswith(repr(url))


def test_the_same_sink_twice_is_refused():
    with pytest.raises(SinkUrlError, match="list each sink once"):
        parse_sink_urls(["redis://127.0.0.1:6379", "redis://127.0.0.1:6379/0?maxlen=5"])
    assert len(parse_sink_urls(["redis://127.0.0.1/0", "redis://127.0.0.1/1"])) == 2


def test_labels_are_bounded_and_carry_no_secrets():
    assert parse_sink_url("redis://:pw@127.0.0.1:6390/2?maxlen=5").label == "redis://127.0.0.1:6390/2"
    assert parse_sink_url("ws://127.0.0.1:9?token=t").label == "ws://127.0.0.1:9"
    assert parse_sink_url("kafka://a:1,b:2/t").label == "kafka://a:1/t"
    assert redact("nats://u:pw@h:1?token=x") == "nats://u:***@h:1?token=***"


def test_token_env_reads_the_environment(monkeypatch):
    monkeypatch.setenv("VOLCAST_WS_TOKEN_TEST", "abc")
    assert parse_sink_url("ws://127.0.0.1:1?token_env=VOLCAST_WS_TOKEN_TEST").bearer_token() == "abc"


def test_config_file_sinks_are_validated():
    head = '[[feeds]]\nmarket = "spot"\nsymbols = ["btcusdt"]\n'
    cfg = load_config_text('sinks = ["redis://127.0.0.1:6379", "ws://127.0.0.1:8765"]\n' + head)
    assert cfg.sinks == ("redis://127.0.0.1:6379", "ws://127.0.0.1:8765")
    with pytest.raises(ConfigError, match="sinks: 'amqp://x': unknown sink scheme"):
        load_config_text('sinks = ["amqp://x"]\n' + head)
