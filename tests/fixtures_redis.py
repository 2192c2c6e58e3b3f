"""A private ``redis-server`` for the tests, registered as a pytest plugin in
``tests/conftest.py``. It never touches a Redis the machine may already run: it listens on
a free loopback port, keeps nothing on disk, and can be stopped and started again on the
same port to test what the service does while Redis is gone. A second one speaks only TLS
and wants a password; ``tls_files`` are the throwaway certificates of both."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import TlsFiles, make_tls_files

# Which binary to run; the environment variable lets a machine point at another build.
REDIS_SERVER = os.environ.get("RNNLM_REDIS_SERVER", "redis-server")
START_TIMEOUT_S = 10.0
# URL-special characters: the URL must carry it percent-encoded.
SECURE_REDIS_PASSWORD = "s3cret:p@ss/word"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_ping(port: int, password: str | None = None, ca_file: Path | None = None) -> bool:
    """True when something on ``port`` answers PING like Redis (a raw RESP exchange, so the
    fixture does not depend on the client under test), over TLS when given its CA."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
            s = raw
            if ca_file is not None:
                context = ssl.create_default_context(cafile=str(ca_file))
                s = context.wrap_socket(raw, server_hostname="127.0.0.1")
            with s:
                if password is not None:
                    s.sendall(f"AUTH {password}\r\n".encode())
                    if not s.recv(64).startswith(b"+OK"):
                        return False
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on a fixed port, in a scratch folder."""

    def __init__(
        self, workdir: Path, password: str | None = None, tls: TlsFiles | None = None
    ) -> None:
        binary = shutil.which(REDIS_SERVER)
        if binary is None:
            pytest.fail(
                f"{REDIS_SERVER!r} is not on PATH: install Redis (apt-get install redis-server)"
                " or set RNNLM_REDIS_SERVER to the binary"
            )
        self.binary = binary
        self.workdir = workdir
        self.password = password
        self.tls = tls  # serve TLS only, with this server certificate and CA
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.url_with(self.password)

    def url_with(self, password: str | None, ca_file: Path | None = None) -> str:
        """The URL a client uses, with this (or another) password and CA."""
        auth = f":{urllib.parse.quote(password, safe='')}@" if password else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca_file or self.tls.ca}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start on ``self.port`` and return once it answers PING."""
        if self.running:
            return
        log = self.workdir / "redis.log"
        # No RDB snapshots, no AOF: a restart begins empty and nothing is written but the log.
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.workdir), "--logfile", str(log)]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(self.tls.server_cert)]
            args += ["--tls-key-file", str(self.tls.server_key)]
            args += ["--tls-ca-cert-file", str(self.tls.ca)]
        if self.password:
            args += ["--requirepass", self.password]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        ca_file = self.tls.ca if self.tls else None
        while not answers_ping(self.port, self.password, ca_file):
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


def _started(server: RedisServer) -> RedisServer:
    for attempt in range(3):
        try:
            server.start()
            return server
        except RuntimeError:
            if attempt == 2:
                raise
            server.port = free_port()  # taken between free_port() and the bind: try another
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private Redis for the whole session. Tests that stop it must start it again;
    fixtures that use it call ``start()`` first, which is a no-op when it runs."""
    server = _started(RedisServer(tmp_path_factory.mktemp("redis")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throwaway CA with server (localhost, 127.0.0.1) and client certificates."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def secure_redis_server(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[RedisServer]:
    """A private Redis that speaks only TLS and requires a password."""
    server = RedisServer(tmp_path_factory.mktemp("redis-tls"), SECURE_REDIS_PASSWORD, tls_files)
    _started(server)
    try:
        yield server
    finally:
        server.stop()
