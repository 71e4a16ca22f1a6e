"""``redis-server`` and ``nats-server`` on loopback, for tests and benchmarks.

Each server binds 127.0.0.1 on a free port, keeps its data in a directory of its own
(Redis with an fsynced append-only file, NATS with a JetStream file store), and can be
killed and restarted on the same port and data, to test delivery across an outage.

>>> which("sh") is not None
True
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

# Debian installs nats-server in /usr/sbin, which is not on every user's PATH.
_EXTRA_PATH = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def which(name: str) -> str | None:
    """``shutil.which``, also looking in the sbin directories."""
    path = os.environ.get("PATH", "")
    return shutil.which(name, path=os.pathsep.join([path, *_EXTRA_PATH]))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    name = Path(str(proc.args[0] if isinstance(proc.args, list) else proc.args)).name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"{name} did not listen on {host}:{port} within {timeout}s")


class LocalServer:
    """A broker process on 127.0.0.1:``port``; a context manager; ``kill()``/``start()`` again."""

    binary = ""

    def __init__(self, port: int | None = None, data_dir: str | os.PathLike[str] | None = None) -> None:
        exe = which(self.binary)
        if exe is None:
            raise FileNotFoundError(f"{self.binary} is not installed (make test-deps installs it)")
        self.exe = exe
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix=f"volcast-{self.binary}-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]
        self.log_path = self.data_dir / f"{self.binary}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def available(cls) -> bool:
        return which(cls.binary) is not None

    def args(self) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    def start(self, timeout: float = 10.0) -> LocalServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.exe, *self.args()], stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir,
                start_new_session=True,
            )
        _wait_port(self.host, self.port, timeout, self.proc, self.log_path)
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, nothing flushed by the server itself."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


class RedisServer(LocalServer):
    """``durable``: an append-only file fsynced on every write, so data survives ``kill()``."""

    binary = "redis-server"

    def __init__(self, port: int | None = None, data_dir: str | os.PathLike[str] | None = None,
                 *, durable: bool = True) -> None:
        super().__init__(port, data_dir)
        self.durable = durable

    def args(self) -> list[str]:
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        return [
            "--bind", self.host, "--port", str(self.port), "--dir", str(self.data_dir),
            "--save", "", *aof, "--protected-mode", "yes", "--daemonize", "no",
        ]

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"


class NatsServer(LocalServer):
    binary = "nats-server"

    def args(self) -> list[str]:
        return ["-a", self.host, "-p", str(self.port), "-js", "-sd", str(self.data_dir / "js")]

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"
