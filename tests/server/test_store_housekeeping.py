"""The store's housekeeping (scan, listings, expiry, garbage collection), on both backends
(see ``conftest.py``): what the retention rules and the orphan sweep are built on."""

from __future__ import annotations

import time

import pytest

from rnnlm.server.store import CORPUS, JOB, MODEL, TRAIN_REQUEST, LocalStore, RedisStore, Store
from tests.server.conftest import CHUNK_BYTES, StoreTarget

WAIT_S = 10.0  # an upper bound for what should happen at once, never reached


def garble(target: StoreTarget, store: Store, kind: str, doc_id: str, raw: bytes) -> None:
    """Overwrite a stored document with ``raw``, behind the store's back."""
    if isinstance(store, LocalStore):
        (store.root / "docs" / kind / f"{doc_id}.json").write_bytes(raw)
    else:
        assert isinstance(store, RedisStore)
        store._client.set(f"{target.prefix}:doc:{kind}:{doc_id}", raw)


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_scan_reports_unreadable_documents_and_returns_the_rest(
    target: StoreTarget, store: Store
) -> None:
    for i in range(3):
        store.create(MODEL, f"m{i}", {"i": i})
    garble(target, store, MODEL, "m1", b"\x00not json")
    scan = store.scan(MODEL)
    assert scan.docs == {"m0": {"i": 0}, "m2": {"i": 2}}
    assert list(scan.unreadable) == ["m1"]
    assert "not valid JSON" in scan.unreadable["m1"]
    assert store.scan(JOB).docs == {}


def test_list_blobs_by_prefix_with_their_write_time(store: Store) -> None:
    before = time.time()
    store.put_blob("corpora/c1", b"x" * (CHUNK_BYTES * 2 + 1))  # several chunks: one entry
    store.put_blob("jobs/j1/checkpoint", b"y")
    blobs = store.list_blobs()
    assert set(blobs) == {"corpora/c1", "jobs/j1/checkpoint"}
    assert all(before - 1 <= t <= time.time() + 1 for t in blobs.values())
    assert set(store.list_blobs("jobs/")) == {"jobs/j1/checkpoint"}
    store.delete_blob("corpora/c1")
    assert set(store.list_blobs()) == {"jobs/j1/checkpoint"}


def test_list_event_logs_with_their_last_append(store: Store) -> None:
    assert store.list_event_logs() == {}
    before = time.time()
    store.append_event("j1", {"n": 1})
    store.append_event("j2", {"n": 1})
    logs = store.list_event_logs()
    assert set(logs) == {"j1", "j2"}
    assert all(before - 1 <= t <= time.time() + 1 for t in logs.values())
    store.delete_events("j1")
    assert set(store.list_event_logs()) == {"j2"}


def test_documents_expire(store: Store) -> None:
    store.create(TRAIN_REQUEST, "r1", {"job_id": "j1"})
    store.create(TRAIN_REQUEST, "r2", {"job_id": "j2"})
    store.expire_at(TRAIN_REQUEST, "r1", time.time() + 0.2)
    store.expire_at(TRAIN_REQUEST, "r2", time.time() + 3600)

    def gone() -> bool:
        store.collect_garbage(stray_before=0)  # the directory store expires in the sweep
        return store.get(TRAIN_REQUEST, "r1") is None

    wait_for(gone, "the document to expire")
    assert store.get(TRAIN_REQUEST, "r2") == {"job_id": "j2"}
    assert [d["job_id"] for d in store.list(TRAIN_REQUEST)] == ["j2"]
    assert list(store.scan(TRAIN_REQUEST).docs) == ["r2"]


def test_event_logs_expire_unless_kept(store: Store) -> None:
    store.append_event("j1", {"n": 1})
    store.append_event("j2", {"n": 1})
    store.expire_events_at("j1", time.time() + 0.2)
    store.expire_events_at("j2", time.time() + 0.2)
    store.expire_events_at("j2", None)  # a resumed job: its log stays

    def gone() -> bool:
        store.collect_garbage(stray_before=0)
        return store.read_events("j1") == []

    wait_for(gone, "the event log to expire")
    time.sleep(0.3)
    store.collect_garbage(stray_before=0)
    assert [e for _, e in store.read_events("j2")] == [{"n": 1}]
    assert set(store.list_event_logs()) == {"j2"}


def test_a_past_deadline_removes_at_the_next_collection(store: Store) -> None:
    store.create(CORPUS, "c1", {"v": 1})
    store.append_event("j1", {"n": 1})
    store.expire_at(CORPUS, "c1", time.time() - 1)
    store.expire_events_at("j1", time.time() - 1)
    store.collect_garbage(stray_before=0)
    assert store.get(CORPUS, "c1") is None
    assert store.read_events("j1") == []
    assert store.scan(CORPUS).docs == {}


def test_collect_garbage_leaves_nothing_of_expired_documents(
    target: StoreTarget, store: Store
) -> None:
    """Redis keeps an index of each kind's ids; the directory store keeps deadline marks:
    both go once their documents have."""
    baseline = footprint(target, store)
    store.create(TRAIN_REQUEST, "r1", {"job_id": "j1"})
    store.expire_at(TRAIN_REQUEST, "r1", time.time() + 0.1)
    store.create(JOB, "j2", {"v": 2})
    store.expire_at(JOB, "j2", time.time() + 3600)
    store.delete(JOB, "j2")  # deleted before its deadline: the mark goes too
    time.sleep(0.2)
    removed = store.collect_garbage(stray_before=0)
    assert removed  # reported, for the log
    assert footprint(target, store) == baseline


def test_collect_garbage_removes_stray_chunks_but_spares_recent_ones(
    target: StoreTarget, store: Store
) -> None:
    store.put_blob("models/m/1/checkpoint", b"z" * (CHUNK_BYTES + 5))
    plant_stray_chunk(target, store, "models/m/1/checkpoint")
    plant_stray_chunk(target, store, "corpora/gone")  # a write that never got its manifest
    assert store.collect_garbage(stray_before=0) == []  # the strays are "recent" (time 0 on)
    removed = store.collect_garbage(stray_before=time.time() + 1)
    assert len(removed) == 2 and all("stray" in r for r in removed)
    assert store.get_blob("models/m/1/checkpoint") == b"z" * (CHUNK_BYTES + 5)
    assert count_chunks(target, store) == 2  # the live blob's


def plant_stray_chunk(target: StoreTarget, store: Store, key: str) -> None:
    generation = f"{time.time_ns():x}-deadbeef"
    if isinstance(store, LocalStore):
        from urllib.parse import quote

        folder = store.root / "blobs" / quote(key, safe="")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{generation}.0.chunk").write_bytes(b"lost")
    else:
        assert isinstance(store, RedisStore)
        store._client.set(f"{target.prefix}:blob:{key}:{generation}:0", b"lost")


def count_chunks(target: StoreTarget, store: Store) -> int:
    if isinstance(store, LocalStore):
        return len(list((store.root / "blobs").glob("*/*.chunk")))
    assert isinstance(store, RedisStore)
    return sum(
        1
        for k in store._client.scan_iter(match=f"{target.prefix}:blob:*")
        if k.decode().count(":") == 4
    )


def footprint(target: StoreTarget, store: Store) -> set[str]:
    """Every Redis key under the prefix, or every file of the directory store but locks."""
    if isinstance(store, LocalStore):
        return {
            str(p.relative_to(store.root))
            for p in store.root.rglob("*")
            if p.is_file() and p.parent.name != "locks"
        }
    assert isinstance(store, RedisStore)
    return {k.decode() for k in store._client.scan_iter(match=f"{target.prefix}:*")}


@pytest.mark.parametrize("when", [0.0, time.time() + 3600])
def test_expiry_of_what_is_absent_is_harmless(store: Store, when: float) -> None:
    store.expire_at(MODEL, "nothing", when)
    store.expire_events_at("nothing", when)
    store.collect_garbage(stray_before=0)
    store.create(MODEL, "nothing", {"v": 1})  # created after: no deadline left behind
    store.collect_garbage(stray_before=0)
    assert store.get(MODEL, "nothing") == {"v": 1}
