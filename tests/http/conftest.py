"""The HTTP front end's fixtures: one real server per module (gRPC and HTTP in one process,
on loopback ports), with a small model trained once through the gRPC client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rnnlm.client import LMClient
from rnnlm.server import RnnlmServer, ServerConfig
from tests.e2e.conftest import FAST_TRAINING, SMALL_MODEL, Backend

MODEL = "m"
API_KEY = "http-test-key-0123456789"
# Small enough that a test can go over it cheaply, large enough for every other request.
MAX_BODY_BYTES = 256 * 1024


def http_config(store: Path, **overrides) -> ServerConfig:
    backend = Backend("local", store, None, "rnnlm")
    return backend.config(http_address="127.0.0.1:0", max_message_bytes=MAX_BODY_BYTES, **overrides)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("http-store")


@pytest.fixture(scope="module")
def server_settings() -> dict:
    """Settings of the module's server besides ``http_config``'s (a module may override)."""
    return {}


@pytest.fixture(scope="module")
def server(store, pydoc_text, server_settings) -> Iterator[RnnlmServer]:
    """A server with the HTTP API, and the model ``m`` trained on it."""
    server = RnnlmServer(http_config(store, **server_settings))
    server.start()
    with LMClient(server.address, timeout=60) as client:
        corpus = client.upload_corpus(pydoc_text[:40_000].encode(), filename="pydoc.txt")
        job = client.train(MODEL, corpus, **SMALL_MODEL, **FAST_TRAINING)
        for _ in client.watch(job.job_id):
            pass
        assert client.job(job.job_id).state == "completed"
    yield server
    server.stop(grace=1.0)


@pytest.fixture(scope="module")
def base_url(server) -> str:
    return f"http://127.0.0.1:{server.http_port}"


@pytest.fixture
def http(base_url) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        yield client


@pytest.fixture
def grpc_client(server) -> Iterator[LMClient]:
    with LMClient(server.address, timeout=60) as client:
        yield client
