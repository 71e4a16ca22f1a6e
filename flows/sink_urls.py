"""Sinks chosen by URL: parsing and validation into frozen msgspec Structs.

================================================  ==========================================
URL                                               sink
================================================  ==========================================
``file:///abs/forecasts.jsonl``, ``file:rel.jsonl``  JSONL file, optionally rotating
``stdout``                                        one JSON record per line on stdout
``ws://HOST:PORT``                                built-in websocket server (binds HOST)
``redis://[[USER]:PASS@]HOST[:PORT][/DB]``        PUBLISH + XADD per topic
``nats://[USER:PASS@]HOST[:PORT]``                JetStream, stream created if missing
``kafka://HOST:PORT[,HOST:PORT...]/TOPIC``        Kafka (the ``kafka`` extra), keyed by underlying
================================================  ==========================================

Options are query parameters (``redis://127.0.0.1:6379/0?maxlen=50000``); an unknown
one is an error, so a typo never passes silently. Options of every network sink:
``format`` (``json`` | ``msgpack``), ``buffer`` (records held while the broker is
down; beyond it the oldest are dropped and counted), ``batch`` (records per publish),
``drain_s`` (how long a clean stop keeps delivering), ``retry_max_s`` (back-off cap).

>>> parse_sink_url("redis://127.0.0.1:6390/2?maxlen=500").label
'redis://127.0.0.1:6390/2'
>>> parse_sink_url("ws://:9000").host
'127.0.0.1'
>>> parse_sink_url("kafka://127.0.0.1:9092/volcast").brokers
('127.0.0.1:9092',)
>>> parse_sink_url("mqtt://x")
Traceback (most recent call last):
...
flows.sink_urls.SinkUrlError: 'mqtt://x': unknown sink scheme 'mqtt' (known: file, stdout, ws, redis, nats, kafka)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec

Format = Literal["json", "msgpack"]
FsyncPolicy = Literal["rotate", "interval", "always", "never"]
SCHEMES = ("file", "stdout", "ws", "redis", "nats", "kafka")


class SinkUrlError(ValueError):
    """A sink URL that cannot be used; the message quotes the URL and names the problem."""


class _Delivery(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every network sink shares: encoding and the delivery pump's bounds."""

    format: Format = "json"
    buffer: int = 10_000
    batch: int = 256
    drain_s: float = 5.0
    retry_max_s: float = 5.0

    def _check(self) -> None:
        if self.buffer < 1:
            raise ValueError(f"buffer must be at least 1, got {self.buffer}")
        if not 1 <= self.batch <= 100_000:
            raise ValueError(f"batch must be within 1..100000, got {self.batch}")
        if self.drain_s < 0:
            raise ValueError(f"drain_s must not be negative, got {self.drain_s}")
        if not self.retry_max_s >= 0.1:
            raise ValueError(f"retry_max_s must be at least 0.1, got {self.retry_max_s}")


class FileSinkConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    path: str
    rotate_mb: float | None = None  # start a new segment past this many MB
    rotate_s: float | None = None  # ... or after this many seconds
    fsync: FsyncPolicy = "rotate"
    fsync_s: float = 1.0  # with fsync=interval

    def __post_init__(self) -> None:
        if self.rotate_mb is not None and not self.rotate_mb > 0:
            raise ValueError(f"rotate_mb must be positive, got {self.rotate_mb}")
        if self.rotate_s is not None and not self.rotate_s > 0:
            raise ValueError(f"rotate_s must be positive, got {self.rotate_s}")
        if not self.fsync_s > 0:
            raise ValueError(f"fsync_s must be positive, got {self.fsync_s}")

    @property
    def label(self) -> str:
        return f"file://{self.path}"

    @property
    def rotate_bytes(self) -> int | None:
        return None if self.rotate_mb is None else max(1, int(self.rotate_mb * 1e6))


class StdoutSinkConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    @property
    def label(self) -> str:
        return "stdout"


class WsSinkConfig(_Delivery, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None  # clients must send Authorization: Bearer <token>
    token_env: str | None = None  # ... or read the token from this environment variable
    queue: int = 1024  # per client; a client whose queue is full is disconnected
    history: int = 256  # records kept per topic for since_ts_ns replays

    def __post_init__(self) -> None:
        self._check()
        if self.queue < 2:
            raise ValueError(f"queue must be at least 2, got {self.queue}")
        if self.history < 0:
            raise ValueError(f"history must not be negative, got {self.history}")
        if self.token_env is not None and not os.environ.get(self.token_env):
            raise ValueError(f"token_env names {self.token_env}, which is not set")

    @property
    def label(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def bearer_token(self) -> str | None:
        return self.token or (os.environ.get(self.token_env) if self.token_env else None)


class RedisSinkConfig(_Delivery, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    prefix: str = "volcast."  # channel and stream names: <prefix><topic>
    maxlen: int = 100_000  # per stream, approximate (XADD MAXLEN ~)
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        self._check()
        if self.maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {self.maxlen}")
        if not 0 <= self.db <= 15:
            raise ValueError(f"db must be within 0..15, got {self.db}")

    @property
    def label(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


class NatsSinkConfig(_Delivery, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 4222
    user: str | None = None
    password: str | None = None
    stream: str = "VOLCAST"
    prefix: str = "volcast."  # subjects: <prefix><topic>; the stream captures <prefix>>
    maxlen: int = 100_000  # messages kept per subject
    dupe_window_s: float = 120.0  # Nats-Msg-Id deduplication window
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        self._check()
        if not re.fullmatch(r"[A-Za-z0-9_-]+", self.stream):
            raise ValueError(f"stream must be letters, digits, _ or -, got {self.stream!r}")
        if not self.prefix.endswith(".") or "*" in self.prefix or ">" in self.prefix:
            raise ValueError(f"prefix must end with '.' and hold no wildcards, got {self.prefix!r}")
        if self.maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {self.maxlen}")

    @property
    def label(self) -> str:
        return f"nats://{self.host}:{self.port}"


class KafkaSinkConfig(_Delivery, frozen=True, kw_only=True, forbid_unknown_fields=True):
    brokers: tuple[str, ...]
    topic: str
    timeout_s: float = 10.0  # a batch not acknowledged by then is retried
    acks: Literal["all", "1", "0"] = "all"
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"

    def __post_init__(self) -> None:
        self._check()
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", self.topic):
            raise ValueError(f"topic must be 1-249 of letters, digits, '.', '_' or '-', got {self.topic!r}")

    @property
    def label(self) -> str:
        return f"kafka://{self.brokers[0]}/{self.topic}"

    def add_config(self) -> dict[str, Any]:
        return {"acks": self.acks, "compression.type": self.compression,
                "message.timeout.ms": int(max(self.timeout_s * 3, 5) * 1000)}


SinkConfig = Union[FileSinkConfig, StdoutSinkConfig, WsSinkConfig, RedisSinkConfig, NatsSinkConfig, KafkaSinkConfig]
_CONFIG_OF = {
    "file": FileSinkConfig, "stdout": StdoutSinkConfig, "ws": WsSinkConfig,
    "redis": RedisSinkConfig, "nats": NatsSinkConfig, "kafka": KafkaSinkConfig,
}
_DEFAULT_PORT = {"ws": 8765, "redis": 6379, "nats": 4222, "kafka": 9092}
_SECRET_FIELDS = ("password", "token")


def parse_sink_url(url: str) -> SinkConfig:
    """The sink configuration a URL names; :class:`SinkUrlError` if it names none."""
    text = url.strip()
    if text in ("stdout", "stdout:", "stdout://", "-"):
        return StdoutSinkConfig()
    if "://" not in text and not text.startswith("file:"):
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text):
            scheme = text.split(":", 1)[0]
            raise SinkUrlError(f"{url!r}: unknown sink scheme {scheme!r} (known: {', '.join(SCHEMES)})")
        raise SinkUrlError(f"{url!r}: not a sink URL (expected SCHEME://..., e.g. redis://127.0.0.1:6379)")
    scheme = text.split(":", 1)[0].lower()
    if scheme not in SCHEMES:
        raise SinkUrlError(f"{url!r}: unknown sink scheme {scheme!r} (known: {', '.join(SCHEMES)})")
    if any(c.isspace() for c in text):
        raise SinkUrlError(f"{url!r}: a URL cannot contain spaces")
    parts = urlsplit(text)
    if parts.fragment:
        raise SinkUrlError(f"{url!r}: a sink URL takes no #fragment")
    try:
        params = _query(parts.query, url)
        fields: dict[str, Any]
        if scheme == "file":
            fields = _file_fields(parts, url)
        elif scheme == "stdout":
            if parts.netloc or parts.path not in ("", "/"):
                raise SinkUrlError(f"{url!r}: stdout takes no host or path")
            fields = {}
        elif scheme == "kafka":
            fields = _kafka_fields(parts, url)
        else:
            fields = _network_fields(scheme, parts, url)
        cls = _CONFIG_OF[scheme]
        known = set(cls.__struct_fields__) - set(fields) - {"host", "port", "path", "brokers", "topic", "db"}
        known -= {"username", "user", "password"}
        for key in params:
            if key not in known:
                raise SinkUrlError(
                    f"{url!r}: unknown parameter {key!r} for {scheme} sinks (known: {', '.join(sorted(known)) or 'none'})"
                )
        return msgspec.convert({**params, **fields}, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise SinkUrlError(f"{url!r}: {_plain(exc)}") from None
    except ValueError as exc:
        if isinstance(exc, SinkUrlError):
            raise
        raise SinkUrlError(f"{url!r}: {exc}") from None


def parse_sink_urls(urls: Sequence[str | SinkConfig]) -> list[SinkConfig]:
    """Several URLs (or configs already parsed); two that name the same sink are an error."""
    out: list[SinkConfig] = []
    seen: dict[str, str] = {}
    for url in urls:
        cfg = parse_sink_url(url) if isinstance(url, str) else url
        if cfg.label in seen:
            given = url if isinstance(url, str) else cfg.label
            raise SinkUrlError(f"{given!r}: the same sink as {seen[cfg.label]!r}; list each sink once")
        seen[cfg.label] = url if isinstance(url, str) else cfg.label
        out.append(cfg)
    return out


def redact(url: str) -> str:
    """The URL with passwords and tokens replaced, for logs.

    >>> redact("redis://:s3cret@127.0.0.1:6379/0?token=abc&maxlen=5")
    'redis://:***@127.0.0.1:6379/0?token=***&maxlen=5'
    """
    url = re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)
    return re.sub(r"([?&](?:token|password)=)[^&]*", r"\1***", url)


def _query(query: str, url: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key in params:
            raise SinkUrlError(f"{url!r}: parameter {key!r} given twice")
        if value == "":
            raise SinkUrlError(f"{url!r}: parameter {key!r} has no value")
        params[key] = value
    return params


def _port(parts: Any, url: str, default: int) -> int:
    try:
        port = parts.port
    except ValueError:
        raw = parts.netloc.rsplit(":", 1)[-1]
        raise SinkUrlError(f"{url!r}: port must be a number within 1..65535, got {raw!r}") from None
    if port is None:
        if parts.netloc.endswith(":"):
            raise SinkUrlError(f"{url!r}: empty port")
        return default
    if port == 0 and parts.scheme != "ws":
        raise SinkUrlError(f"{url!r}: port must be within 1..65535, got 0")
    return port


def _network_fields(scheme: str, parts: Any, url: str) -> dict[str, Any]:
    host = parts.hostname or ""
    if not host:
        if scheme != "ws":
            raise SinkUrlError(f"{url!r}: no host (expected {scheme}://HOST:PORT)")
        host = "127.0.0.1"  # the websocket server binds loopback unless told otherwise
    if not re.fullmatch(r"[A-Za-z0-9.\-:]+", host):
        raise SinkUrlError(f"{url!r}: malformed host {host!r}")
    fields: dict[str, Any] = {"host": host, "port": _port(parts, url, _DEFAULT_PORT[scheme])}
    path = parts.path
    if scheme == "redis":
        if path not in ("", "/"):
            db = path.strip("/")
            if not db.isdigit():
                raise SinkUrlError(f"{url!r}: the path is the database number (redis://HOST:PORT/0), got {path!r}")
            fields["db"] = int(db)
    elif path not in ("", "/"):
        raise SinkUrlError(f"{url!r}: {scheme} sinks take no path, got {path!r}")
    if parts.username or parts.password:
        if scheme == "ws":
            raise SinkUrlError(f"{url!r}: use ?token=... or ?token_env=VAR for the websocket bearer token")
        user_field = "username" if scheme == "redis" else "user"
        if parts.username:
            fields[user_field] = unquote(parts.username)
        if parts.password:
            fields["password"] = unquote(parts.password)
    return fields


def _kafka_fields(parts: Any, url: str) -> dict[str, Any]:
    if "@" in parts.netloc:
        raise SinkUrlError(f"{url!r}: Kafka credentials are not supported in the URL")
    brokers = []
    for b in parts.netloc.split(","):
        m = re.fullmatch(r"([A-Za-z0-9.\-]+)(?::(\d{1,5}))?", b)
        if not m or (m.group(2) and not 1 <= int(m.group(2)) <= 65535):
            raise SinkUrlError(f"{url!r}: malformed broker {b!r} (expected HOST:PORT[,HOST:PORT...])")
        brokers.append(f"{m.group(1)}:{m.group(2) or _DEFAULT_PORT['kafka']}")
    topic = parts.path.strip("/")
    if not topic:
        raise SinkUrlError(f"{url!r}: no topic (expected kafka://HOST:PORT/TOPIC)")
    return {"brokers": tuple(brokers), "topic": topic}


def _file_fields(parts: Any, url: str) -> dict[str, Any]:
    if parts.netloc not in ("", "localhost"):
        raise SinkUrlError(
            f"{url!r}: a file URL takes no host; use file:///absolute/path.jsonl or file:relative/path.jsonl"
        )
    path = unquote(parts.path)
    if not path or path.endswith("/"):
        raise SinkUrlError(f"{url!r}: no file name (expected file:///path/forecasts.jsonl)")
    return {"path": str(Path(path).expanduser())}


def _plain(exc: msgspec.ValidationError) -> str:
    """``Expected `int`, got `str` - at `$.maxlen``` -> ``maxlen: expected int, got str``."""
    msg = str(exc)
    if msg.endswith(" - at `$`"):
        return msg[: -len(" - at `$`")]
    m = re.match(r"(.*) - at `\$\.(\w+)`", msg)
    if m:
        return f"{m.group(2)}: {m.group(1).replace('`', '').replace('Expected', 'expected')}"
    return msg
