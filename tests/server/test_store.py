"""The shared store suite: every test runs against ``LocalStore`` and ``RedisStore`` (see
``conftest.py``), with real files and a real redis-server; a few at the end test what only
one backend has (a killed Redis, a root that is a file)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rnnlm.server.errors import DataLoss
from rnnlm.server.store import JOB, MODEL, LocalStore, RedisStore, Store
from rnnlm.server.store.codec import decode_manifest
from tests.server.conftest import CHUNK_BYTES, StoreTarget

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 10.0  # an upper bound for things that should happen at once, never reached


def increment(doc: dict | None) -> dict:
    return {"n": (doc or {"n": 0})["n"] + 1}


def in_threads(fn: Callable[[], object], count: int) -> list[object]:
    """Run ``fn`` in ``count`` threads at once; their results, their exceptions re-raised."""
    with ThreadPoolExecutor(count) as pool:
        return [f.result() for f in [pool.submit(fn) for _ in range(count)]]


# -- documents -------------------------------------------------------------------------


def test_create_get_list_delete(store: Store) -> None:
    assert store.get(MODEL, "m1") is None
    for i in range(3):
        assert store.create(MODEL, f"m{i}", {"i": i, "name": f"m{i}"}) == {"i": i, "name": f"m{i}"}
    assert store.get(MODEL, "m1") == {"i": 1, "name": "m1"}
    assert sorted(d["i"] for d in store.list(MODEL)) == [0, 1, 2]
    assert store.list(JOB) == []
    assert store.delete(MODEL, "m1") is True
    assert store.delete(MODEL, "m1") is False
    assert store.get(MODEL, "m1") is None
    assert sorted(d["i"] for d in store.list(MODEL)) == [0, 2]


def test_create_returns_the_existing_document(store: Store) -> None:
    store.create(JOB, "j", {"v": "first"})
    assert store.create(JOB, "j", {"v": "second"}) == {"v": "first"}
    assert store.get(JOB, "j") == {"v": "first"}
    assert store.get(MODEL, "j") is None  # kinds are separate


def test_concurrent_creates_agree_on_one_winner(store: Store) -> None:
    tickets = iter(range(100))
    results = in_threads(lambda: store.create(JOB, "j", {"who": next(tickets)}), 8)
    assert len({r["who"] for r in results}) == 1
    assert store.get(JOB, "j") == results[0]


def test_update_creates_changes_and_deletes(store: Store) -> None:
    seen = []

    def record_and_increment(doc: dict | None) -> dict:
        seen.append(doc)
        return increment(doc)

    assert store.update(MODEL, "m", record_and_increment) == {"n": 1}
    assert store.update(MODEL, "m", record_and_increment) == {"n": 2}
    assert seen == [None, {"n": 1}]
    assert store.update(MODEL, "m", lambda doc: None) is None
    assert store.get(MODEL, "m") is None
    assert store.list(MODEL) == []
    assert store.update(MODEL, "m", lambda doc: None) is None  # absent stays absent
    assert store.get(MODEL, "m") is None


def test_update_that_raises_changes_nothing(store: Store) -> None:
    store.create(MODEL, "m", {"n": 1})

    def fail(doc: dict | None) -> dict:
        raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        store.update(MODEL, "m", fail)
    assert store.get(MODEL, "m") == {"n": 1}


def test_documents_must_be_json_objects(store: Store) -> None:
    with pytest.raises(TypeError):
        store.create(MODEL, "m", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.create(MODEL, "m", {"bad": {1, 2}})
    assert store.get(MODEL, "m") is None
    store.create(MODEL, "m", {"n": 1})
    with pytest.raises(TypeError):
        store.update(MODEL, "m", lambda doc: "text")  # type: ignore[arg-type]
    assert store.get(MODEL, "m") == {"n": 1}


def test_update_is_atomic_across_threads(store: Store) -> None:
    in_threads(lambda: [store.update(JOB, "counter", increment) for _ in range(50)], 4)
    assert store.get(JOB, "counter") == {"n": 200}


CHILD = """
import sys
from rnnlm.server.store import open_store
url, root, prefix, action, count = sys.argv[1:]
with open_store(url or None, root, prefix) as store:
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the others, so that the updates overlap
    for i in range(int(count)):
        if action == "increment":
            store.update("job", "counter", lambda d: {"n": (d or {"n": 0})["n"] + 1})
        else:
            store.append_event("log", {"child": i})
"""


def start_child(target: StoreTarget, action: str, count: int) -> subprocess.Popen[str]:
    """A child process that opens the same store, says "ready" and then, once told to go,
    does ``action`` ``count`` times."""
    args = [target.redis_url or "", str(target.store_dir), target.prefix, action, str(count)]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline() != "ready\n":
        _, err = child.communicate(timeout=60)
        pytest.fail(f"the child process did not start:\n{err}")
    return child


def wait_child(child: subprocess.Popen[str]) -> None:
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err


def go(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()


def test_update_is_atomic_across_processes(target: StoreTarget, store: Store) -> None:
    children = [start_child(target, "increment", 100) for _ in range(2)]
    for child in children:
        go(child)
    for _ in range(100):
        store.update(JOB, "counter", increment)
    for child in children:
        wait_child(child)
    assert store.get(JOB, "counter") == {"n": 300}


def test_two_store_objects_share_everything(target: StoreTarget, store: Store) -> None:
    with target.open() as other:
        store.create(MODEL, "m", {"n": 1})
        assert other.update(MODEL, "m", increment) == {"n": 2}
        assert store.get(MODEL, "m") == {"n": 2}
        other.put_blob("b", b"x" * 2500)
        assert store.get_blob("b") == b"x" * 2500
        first = store.append_event("log", {"by": "store"})
        second = other.append_event("log", {"by": "other"})
        assert other.read_events("log") == [(first, {"by": "store"}), (second, {"by": "other"})]


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get("nokind", "x"),
        lambda s: s.get(MODEL, "../x"),
        lambda s: s.create(MODEL, "", {}),
        lambda s: s.update(JOB, "a b", increment),
        lambda s: s.delete(JOB, "a:b"),
        lambda s: s.list("nokind"),
        lambda s: s.put_blob("../a", b""),
        lambda s: s.get_blob("/a"),
        lambda s: s.blob_info("a//b"),
        lambda s: s.delete_blob("a/../b"),
        lambda s: s.append_event("a/b", {}),
        lambda s: s.read_events(""),
        lambda s: s.delete_events(".."),
    ],
)
def test_invalid_ids_are_rejected(store: Store, call: Callable[[Store], object]) -> None:
    with pytest.raises(ValueError):
        call(store)


# -- blobs -----------------------------------------------------------------------------


def stored_chunks(store: Store, key: str) -> list[str]:
    """The chunks a backend holds for ``key``, of any generation (reaching inside)."""
    if isinstance(store, LocalStore):
        return sorted(p.name for p in store._blob_dir(key).glob("*.chunk"))
    assert isinstance(store, RedisStore)
    return sorted(k.decode() for k in store._client.scan_iter(store._manifest_key(key) + ":*"))


def damage_chunk(store: Store, key: str, n: int, data: bytes | None) -> None:
    """Overwrite chunk ``n`` of the current blob with ``data``, or remove it (None)."""
    if isinstance(store, LocalStore):
        _, generation = decode_manifest(key, store._manifest_bytes(key) or b"")
        path = store._chunk_path(key, generation, n)
        path.unlink() if data is None else path.write_bytes(data)
        return
    assert isinstance(store, RedisStore)
    _, generation = decode_manifest(key, store._client.get(store._manifest_key(key)) or b"")
    name = store._chunk_key(key, generation, n)
    store._client.delete(name) if data is None else store._client.set(name, data)


@pytest.mark.parametrize("size", [0, 1, 999, CHUNK_BYTES, 1001, 3 * CHUNK_BYTES, 3500])
def test_blob_round_trip(store: Store, size: int) -> None:
    data = bytes(i * 7 % 251 for i in range(size))
    info = store.put_blob("ckpt/m1/3", data)
    assert store.get_blob("ckpt/m1/3") == data
    assert store.blob_info("ckpt/m1/3") == info
    assert info.size == size == sum(info.chunk_sizes)
    assert len(info.chunk_sizes) == max(1, -(-size // CHUNK_BYTES))
    assert max(info.chunk_sizes) <= CHUNK_BYTES
    assert len(stored_chunks(store, "ckpt/m1/3")) == len(info.chunk_sizes)


def test_absent_blob(store: Store) -> None:
    assert store.get_blob("none") is None
    assert store.blob_info("none") is None
    assert store.delete_blob("none") is False


def test_replacing_a_blob_removes_the_old_chunks(store: Store) -> None:
    store.put_blob("b", b"a" * 3500)
    info = store.put_blob("b", b"b" * 1200)
    assert store.get_blob("b") == b"b" * 1200
    assert store.blob_info("b") == info
    assert len(stored_chunks(store, "b")) == 2


def test_nested_keys_are_separate_blobs(store: Store) -> None:
    for key in ["ckpt", "ckpt/m", "ckpt/m/1"]:
        store.put_blob(key, key.encode() * 600)
    assert store.delete_blob("ckpt/m") is True
    assert store.get_blob("ckpt/m") is None
    assert stored_chunks(store, "ckpt/m") == []
    assert store.get_blob("ckpt") == b"ckpt" * 600
    assert store.get_blob("ckpt/m/1") == b"ckpt/m/1" * 600
    assert store.delete_blob("ckpt/m") is False


def test_readers_never_see_half_a_blob(store: Store) -> None:
    old, new = b"\x01" * 5500, b"\x02" * 4321  # different sizes and chunk counts
    store.put_blob("b", old)
    done = threading.Event()

    def write() -> int:
        for i in range(40):
            store.put_blob("b", new if i % 2 == 0 else old)
        done.set()
        return 40

    def read() -> int:
        reads = 0
        while not done.is_set() or reads == 0:
            data = store.get_blob("b")
            assert data in (old, new), f"read {len(data or b'')} bytes, neither version"
            reads += 1
        return reads

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(write), pool.submit(read), pool.submit(read)]
        assert all(f.result() > 0 for f in futures)
    assert len(stored_chunks(store, "b")) == 6


@pytest.mark.parametrize(
    "damage",
    [b"\x00" * CHUNK_BYTES, b"short", b"", None],
    ids=["overwritten", "truncated", "emptied", "deleted"],
)
def test_a_damaged_chunk_is_data_loss(store: Store, damage: bytes | None) -> None:
    store.put_blob("ckpt/m/1", b"\x07" * 2500)
    damage_chunk(store, "ckpt/m/1", 1, damage)
    with pytest.raises(DataLoss, match="'ckpt/m/1': chunk 1 of 3"):
        store.get_blob("ckpt/m/1")
    assert store.blob_info("ckpt/m/1") is not None  # the manifest itself is fine
    assert store.delete_blob("ckpt/m/1") is True  # and a damaged blob can be removed


def test_a_damaged_manifest_is_data_loss_until_replaced(store: Store) -> None:
    store.put_blob("b", b"z" * 2500)
    if isinstance(store, LocalStore):
        (store._blob_dir("b") / "manifest.json").write_bytes(b"{not json")
    else:
        assert isinstance(store, RedisStore)
        store._client.set(store._manifest_key("b"), b"{not json")
    for read in (store.get_blob, store.blob_info):
        with pytest.raises(DataLoss, match="manifest of blob 'b'"):
            read("b")
    store.put_blob("b", b"fresh")
    assert store.get_blob("b") == b"fresh"


# -- event logs ------------------------------------------------------------------------


def test_events_append_and_read_in_order(store: Store) -> None:
    assert store.read_events("log") == []
    ids = [store.append_event("log", {"i": i}) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert store.read_events("log") == [(ids[i], {"i": i}) for i in range(5)]
    assert store.read_events("log", after=ids[2]) == [(ids[3], {"i": 3}), (ids[4], {"i": 4})]
    assert store.read_events("log", after=ids[4]) == []
    assert store.read_events("other") == []


def test_read_waits_for_an_append(store: Store) -> None:
    first = store.append_event("log", {"i": 0})
    timer = threading.Timer(0.1, store.append_event, ("log", {"i": 1}))
    timer.start()
    events = store.read_events("log", after=first, timeout=WAIT_S)
    timer.join()
    assert [e for _, e in events] == [{"i": 1}]


def test_read_waits_for_an_append_by_another_process(target: StoreTarget, store: Store) -> None:
    child = start_child(target, "append", 1)
    threading.Timer(0.1, go, (child,)).start()
    events = store.read_events("log", timeout=WAIT_S)
    wait_child(child)
    assert [e for _, e in events] == [{"child": 0}]


def test_read_returns_nothing_after_the_timeout(store: Store) -> None:
    last = store.append_event("log", {"i": 0})
    assert store.read_events("log", after=last, timeout=0.2) == []
    assert store.read_events("empty", timeout=0.1) == []


@pytest.mark.parametrize("after", ["abc", "", "1-2-3", "-", "x-1", "1.5", "-1"])
def test_invalid_after_is_rejected(store: Store, after: str) -> None:
    store.append_event("log", {})
    with pytest.raises(ValueError, match="invalid event id"):
        store.read_events("log", after=after)


def test_delete_events(store: Store) -> None:
    store.append_event("log", {"i": 0})
    store.append_event("keep", {"i": 0})
    store.delete_events("log")
    store.delete_events("never-written")
    assert store.read_events("log") == []
    assert len(store.read_events("keep")) == 1
    store.append_event("log", {"i": 1})
    assert [e for _, e in store.read_events("log")] == [{"i": 1}]


# -- health ----------------------------------------------------------------------------


def test_ping_and_describe(target: StoreTarget, store: Store) -> None:
    store.ping()
    where = store.describe()
    if target.backend == "redis":
        assert where == f"{target.redis_url} (prefix {target.prefix!r})"
    else:
        assert str(target.store_dir) in where
