"""Store fixtures: every test that takes ``store`` (or ``target``) runs once per backend,
against real files or the session's private redis-server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rnnlm.server.store import Store, open_store

# Small chunks, so that blobs of a few kilobytes already span several.
CHUNK_BYTES = 1000


@dataclass(frozen=True)
class StoreTarget:
    """Where a test's store lives; ``open()`` makes another store object on the same data,
    as a second server (or a child process, given these fields) would."""

    backend: str  # "local" or "redis"
    redis_url: str | None
    store_dir: Path
    prefix: str

    def open(self) -> Store:
        return open_store(self.redis_url, self.store_dir, self.prefix, chunk_bytes=CHUNK_BYTES)


@pytest.fixture(params=["local", "redis"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    if request.param == "local":
        return StoreTarget("local", None, tmp_path / "store", "rnnlm")
    server = request.getfixturevalue("redis_server")
    server.start()  # a no-op unless an earlier test left it stopped
    # A fresh prefix per test instead of FLUSHDB: nothing leaks between tests either way,
    # and a test can never wipe data that another fixture set up.
    return StoreTarget("redis", server.url, tmp_path / "unused", f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(target: StoreTarget) -> Iterator[Store]:
    with target.open() as opened:
        yield opened
