"""End-to-end fixtures: real servers on loopback ports, over the local store or the session's
private redis-server, and the client library talking to them (the ``client`` fixture: the
blocking client and the asyncio one, each test run with both)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rnnlm.client import LMClient
from rnnlm.client.cli import main
from rnnlm.server import RnnlmServer, ServerConfig
from tests.client.facade import CLIENTS

# Small and quick to train, yet enough structure to rank a fluent sentence first.
SMALL_MODEL = {"cell": "gru", "vocab_size": 600, "embed_size": 32, "hidden_size": 32}
FAST_TRAINING = {"epochs": 2, "batch_size": 32, "seed": 1, "log_every": 5}


@dataclass
class Backend:
    """Where a test's servers keep their data; every server a test starts shares it."""

    name: str
    store_dir: Path
    redis_url: str | None
    prefix: str

    def config(self, **overrides) -> ServerConfig:
        settings = {
            "address": "127.0.0.1:0",
            "store_dir": str(self.store_dir),
            "redis_url": self.redis_url,
            "redis_prefix": self.prefix,
            "device": "cpu",
            "job_lease_s": 1.0,
            "cache_refresh_s": 0.0,
            "checkpoint_every": 10,
            "workers": 16,
            "max_streams": 8,
        }
        settings.update(overrides)
        return ServerConfig(**settings)

    def flags(self, **overrides) -> list[str]:
        """The same settings as ``rnnlm serve`` flags, for a server in a child process."""
        config = self.config(**overrides)
        flags = ["--store-dir", config.store_dir, "--redis-prefix", config.redis_prefix]
        if config.redis_url:
            flags += ["--redis-url", config.redis_url]
        names = {"device", "job_lease_s", "checkpoint_every", "cache_refresh_s", *overrides}
        for name in sorted(names):
            flags += ["--" + name.replace("_", "-"), str(getattr(config, name))]
        return flags


@pytest.fixture(params=["local", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend("local", tmp_path / "store", None, "rnnlm")
    redis = request.getfixturevalue("redis_server")
    redis.start()  # a no-op unless a test left it stopped
    return Backend("redis", tmp_path / "unused", redis.url, f"e2e{uuid.uuid4().hex[:10]}")


@pytest.fixture
def start_server(backend: Backend) -> Iterator[Callable[..., RnnlmServer]]:
    """Start servers on the test's backend; all are stopped at the end."""
    started: list[RnnlmServer] = []

    def start(**overrides) -> RnnlmServer:
        server = RnnlmServer(backend.config(**overrides))
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(grace=1.0)


@pytest.fixture
def server(start_server) -> RnnlmServer:
    return start_server()


@pytest.fixture(params=sorted(CLIENTS))
def client_kind(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``LMClient``, or ``AsyncFacade``: a real ``AsyncLMClient`` behind the same interface,
    so that the tests written for the blocking client run against both."""
    return CLIENTS[request.param]


@pytest.fixture
def client(server: RnnlmServer, client_kind: Callable[..., Any]) -> Iterator[LMClient]:
    with client_kind(server.address, timeout=30.0, retries=0) as c:
        yield c


@pytest.fixture
def cli(server, capsys) -> Callable[..., tuple[int, str, str]]:
    """``rnnlm ARGS...`` (the real CLI, in-process) against the test's ``server``: the exit
    status, stdout and stderr."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--target", server.address, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def corpus_bytes(pydoc_text) -> bytes:
    return pydoc_text[:40_000].encode()


def train_small(client: LMClient, corpus_bytes: bytes, model_id: str = "small", **options):
    """Upload, train a small GRU and wait for the job to end; returns the final job."""
    corpus = client.upload_corpus(corpus_bytes, filename="pydoc.txt")
    job = client.train(model_id, corpus, **{**SMALL_MODEL, **FAST_TRAINING, **options})
    for _ in client.watch(job.job_id):
        pass
    return client.job(job.job_id)


def serve_process(
    backend: Backend, port: int, *extra: str, log: Path | None = None, **overrides
) -> subprocess.Popen:
    """``rnnlm serve`` in a child process (``python -m rnnlm.server``) on ``port``, with the
    backend's settings, ``overrides`` as flags and ``extra`` flags; its log goes to ``log``."""
    flags = backend.flags(**overrides)
    command = [sys.executable, "-m", "rnnlm.server", "--address", f"127.0.0.1:{port}", *flags]
    output = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (the child's)
    try:
        return subprocess.Popen([*command, *extra], stdout=output, stderr=subprocess.STDOUT)
    finally:
        if log:
            output.close()


def wait_until(condition: Callable, timeout: float = 30.0, what: str = "condition"):
    """Poll ``condition`` until it returns something other than None; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := condition()) is not None:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Scrape:
    """One scrape of ``/metrics``: ``value(name, **labels)`` of a sample."""

    def __init__(self, port: int) -> None:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.headers["Content-Type"].startswith("text/plain")
            text = reply.read().decode()
        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]

    def value(self, name: str, **labels: str) -> float | None:
        for sample in self.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
        return None

    def labelled(self, name: str) -> list[dict]:
        return [s.labels for s in self.samples if s.name == name]


def scrape_when(port: int, condition: Callable[[Scrape], object]) -> Scrape:
    """Scrape until ``condition`` holds (the server updates some metrics a moment after
    the reply); the scrape where it did."""

    def attempt() -> Scrape | None:
        scrape = Scrape(port)
        return scrape if condition(scrape) else None

    return wait_until(attempt, timeout=20, what="a metric condition")
