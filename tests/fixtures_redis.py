"""A private ``redis-server`` for the tests, registered as a pytest plugin in
``tests/conftest.py``. It never touches a Redis the machine may already run: it listens on
a free loopback port, keeps nothing on disk, and can be stopped and started again on the
same port to test what the service does while Redis is gone."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Which binary to run; the environment variable lets a machine point at another build.
REDIS_SERVER = os.environ.get("RNNLM_REDIS_SERVER", "redis-server")
START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_ping(port: int) -> bool:
    """True when something on ``port`` answers PING like Redis (a raw RESP exchange, so the
    fixture does not depend on the client under test)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on a fixed port, in a scratch folder."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which(REDIS_SERVER)
        if binary is None:
            pytest.fail(
                f"{REDIS_SERVER!r} is not on PATH: install Redis (apt-get install redis-server)"
                " or set RNNLM_REDIS_SERVER to the binary"
            )
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start on ``self.port`` and return once it answers PING."""
        if self.running:
            return
        log = self.workdir / "redis.log"
        # No RDB snapshots, no AOF: a restart begins empty and nothing is written but the log.
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.workdir), "--logfile", str(log)]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers_ping(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server (SIGKILL: no goodbye to the clients) and wait until it is gone."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait(timeout=10)
        self._proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private Redis for the whole session. Tests that stop it must start it again;
    fixtures that use it call ``start()`` first, which is a no-op when it runs."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    for attempt in range(3):
        try:
            server.start()
            break
        except RuntimeError:
            if attempt == 2:
                raise
            server.port = free_port()  # taken between free_port() and the bind: try another
    try:
        yield server
    finally:
        server.stop()
