"""What only one store backend has: a Redis that goes away and comes back, a URL with a
password, a root folder, a torn line in an event log file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rnnlm.server.errors import Unavailable
from rnnlm.server.store import MODEL, LocalStore, RedisStore, Store
from tests.fixtures_redis import RedisServer
from tests.server.conftest import CHUNK_BYTES


def test_redis_url_password_stays_out_of_describe() -> None:
    with RedisStore.from_url("redis://:s3cret@127.0.0.1:1/2", prefix="p") as store:
        assert store.describe() == "redis://127.0.0.1:1/2 (prefix 'p')"


REDIS_CALLS: dict[str, Callable[[Store], object]] = {
    "ping": lambda s: s.ping(),
    "get": lambda s: s.get(MODEL, "m"),
    "list": lambda s: s.list(MODEL),
    "create": lambda s: s.create(MODEL, "m", {}),
    "update": lambda s: s.update(MODEL, "m", lambda doc: {"n": 1}),
    "delete": lambda s: s.delete(MODEL, "m"),
    "put_blob": lambda s: s.put_blob("b", b"x" * 2500),
    "get_blob": lambda s: s.get_blob("b"),
    "blob_info": lambda s: s.blob_info("b"),
    "delete_blob": lambda s: s.delete_blob("b"),
    "append_event": lambda s: s.append_event("log", {}),
    "read_events": lambda s: s.read_events("log"),
    "read_events_waiting": lambda s: s.read_events("log", timeout=0.5),
    "delete_events": lambda s: s.delete_events("log"),
}


def test_redis_down_is_unavailable_and_recovers(redis_server: RedisServer) -> None:
    redis_server.start()
    with RedisStore.from_url(redis_server.url, prefix="down", chunk_bytes=CHUNK_BYTES) as store:
        store.put_blob("b", b"y" * 2500)  # leaves connections in the pool, soon broken
        redis_server.stop()
        try:
            for name, call in REDIS_CALLS.items():
                with pytest.raises(Unavailable) as caught:
                    call(store)
                # The address is for the server log (detail), never for the client.
                address = f"127.0.0.1:{redis_server.port}"
                assert address in caught.value.detail and address not in str(caught.value), name
        finally:
            redis_server.start()
        # The restarted server is empty; the store reconnects by itself.
        for call in REDIS_CALLS.values():
            call(store)
        assert store.get(MODEL, "m") is None  # deleted by the calls above
        assert store.create(MODEL, "m", {"back": True}) == {"back": True}


def test_local_root_is_created_but_must_be_a_folder(tmp_path: Path) -> None:
    LocalStore(tmp_path / "a" / "b").put_blob("x", b"1")
    assert (tmp_path / "a" / "b" / "blobs").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        LocalStore(tmp_path / "file")


def test_local_event_log_survives_a_torn_line(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    first = store.append_event("log", {"i": 0})
    with open(tmp_path / "events" / "log.log", "ab") as f:
        f.write(b'00000000000000000002 {"i": ')  # a crash in the middle of an append
    assert store.read_events("log") == [(first, {"i": 0})]
    second = store.append_event("log", {"i": 1})
    assert store.read_events("log") == [(first, {"i": 0}), (second, {"i": 1})]
