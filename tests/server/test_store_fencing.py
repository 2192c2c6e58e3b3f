"""Fenced writes, on both backends: a write that carries a ``Fence`` (a job's lease
generation) lands only while the fence holds, checked atomically with the write; a stale
writer gets ``StaleWrite`` and changes nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from rnnlm.server.store import JOB, MODEL, Fence, StaleWrite, Store
from tests.server.conftest import CHUNK_BYTES, StoreTarget

JOB_ID = "j-1"
RUN_1 = Fence(JOB, JOB_ID, "lease_generation", 1)  # the run that was taken over
RUN_2 = Fence(JOB, JOB_ID, "lease_generation", 2)  # the run that holds the lease now


def take_over(store: Store) -> None:
    """What a resume does: the job's lease moves to the next generation."""

    def bump(job: dict | None) -> dict:
        assert job is not None
        return {**job, "lease_generation": job["lease_generation"] + 1}

    store.update(JOB, JOB_ID, bump)


@pytest.fixture
def leased(store: Store) -> Store:
    """A job held by run 2 (run 1 was taken over), with what run 2 wrote."""
    store.create(JOB, JOB_ID, {"state": "queued", "lease_generation": 1})
    take_over(store)
    store.update(JOB, JOB_ID, lambda job: {**job, "state": "running"}, fence=RUN_2)
    store.update(MODEL, "m", lambda _: {"active_job_id": JOB_ID}, fence=RUN_2)
    store.put_blob("jobs/j-1/checkpoint", b"run 2" * 700, fence=RUN_2)
    store.append_event(JOB_ID, {"by": 2}, fence=RUN_2)
    return store


STALE_WRITES: dict[str, Callable[[Store], object]] = {
    "update the job": lambda s: s.update(
        JOB, JOB_ID, lambda job: {**job, "state": "failed"}, fence=RUN_1
    ),
    "update another document": lambda s: s.update(
        MODEL, "m", lambda m: {**m, "active_job_id": ""}, fence=RUN_1
    ),
    "create a document by update": lambda s: s.update(MODEL, "new", lambda _: {}, fence=RUN_1),
    "put a blob": lambda s: s.put_blob("jobs/j-1/checkpoint", b"run 1" * 700, fence=RUN_1),
    "delete a blob": lambda s: s.delete_blob("jobs/j-1/checkpoint", fence=RUN_1),
    "append an event": lambda s: s.append_event(JOB_ID, {"by": 1}, fence=RUN_1),
}


def snapshot(store: Store) -> tuple:
    return (
        store.get(JOB, JOB_ID),
        store.list(MODEL),
        store.get_blob("jobs/j-1/checkpoint"),
        store.read_events(JOB_ID),
    )


@pytest.mark.parametrize("write", STALE_WRITES.values(), ids=STALE_WRITES.keys())
def test_a_stale_writer_changes_nothing(leased: Store, write: Callable[[Store], object]):
    before = snapshot(leased)
    with pytest.raises(StaleWrite, match="lease_generation=2, not 1"):
        write(leased)
    assert snapshot(leased) == before
    assert before[0]["state"] == "running" and before[2] == b"run 2" * 700


def test_the_current_writer_writes(leased: Store) -> None:
    leased.update(JOB, JOB_ID, lambda job: {**job, "state": "completed"}, fence=RUN_2)
    leased.update(MODEL, "m", lambda m: {**m, "active_job_id": ""}, fence=RUN_2)
    leased.put_blob("jobs/j-1/checkpoint", b"newer" * 700, fence=RUN_2)
    leased.append_event(JOB_ID, {"by": 2, "n": 2}, fence=RUN_2)
    assert leased.get(JOB, JOB_ID)["state"] == "completed"
    assert leased.get(MODEL, "m") == {"active_job_id": ""}
    assert leased.get_blob("jobs/j-1/checkpoint") == b"newer" * 700
    assert [e for _, e in leased.read_events(JOB_ID)] == [{"by": 2}, {"by": 2, "n": 2}]
    assert leased.delete_blob("jobs/j-1/checkpoint", fence=RUN_2)
    assert leased.get_blob("jobs/j-1/checkpoint") is None


def test_a_deleted_job_fences_off_every_writer(leased: Store) -> None:
    leased.delete(JOB, JOB_ID)
    with pytest.raises(StaleWrite, match="is gone"):
        leased.append_event(JOB_ID, {"by": 2}, fence=RUN_2)
    with pytest.raises(StaleWrite):
        leased.update(JOB, JOB_ID, lambda job: {"state": "running"}, fence=RUN_2)
    assert leased.get(JOB, JOB_ID) is None  # not written back


def test_a_refused_blob_leaves_no_chunks_behind(target: StoreTarget, leased: Store) -> None:
    """The refused write's chunks (written before the manifest) are removed."""
    big = bytes(range(256)) * 20  # several chunks
    assert len(big) > 3 * CHUNK_BYTES
    for _ in range(3):
        with pytest.raises(StaleWrite):
            leased.put_blob("jobs/j-1/checkpoint", big, fence=RUN_1)
    assert stored_chunks(target, leased, "jobs/j-1/checkpoint") == 4  # run 2's 3500 bytes


def stored_chunks(target: StoreTarget, store: Store, key: str) -> int:
    """Chunks of ``key`` in the backend, however reachable (its private layout)."""
    if target.backend == "local":
        folder = target.store_dir / "blobs" / key.replace("/", "%2F")
        return len(list(folder.glob("*.chunk")))
    return len(store._client.keys(f"{target.prefix}:blob:{key}:*"))  # type: ignore[attr-defined]


def test_the_fence_is_checked_atomically_with_the_write(target: StoreTarget, leased: Store):
    """A take-over racing a fenced write: either the write lands before the take-over, or
    it is refused; never after it. The take-over is made from another store object (as by
    another server) while the fenced write is between its check and its write: Redis
    WATCHes the job and drops the transaction; the directory store holds the job's lock,
    so the take-over waits for the write."""
    other = target.open()
    taken_over = threading.Event()
    during_write: list[bool] = []
    racer: list[threading.Thread] = []

    def write(model: dict | None) -> dict:
        if not racer:  # runs again after a dropped transaction: race once
            racer.append(threading.Thread(target=lambda: (take_over(other), taken_over.set())))
            racer[0].start()
            taken_over.wait(1.0)  # the directory store: blocked until we are done
        during_write.append(taken_over.is_set())
        return {**(model or {}), "written_by": 2}

    try:
        leased.update(MODEL, "m", write, fence=RUN_2)
        refused = False
    except StaleWrite:
        refused = True
    racer[0].join(10)
    other.close()
    assert leased.get(JOB, JOB_ID)["lease_generation"] == 3  # the take-over happened
    if refused:
        assert leased.get(MODEL, "m") == {"active_job_id": JOB_ID}  # unchanged
    else:
        assert during_write == [False]  # it landed while generation 2 was current
        assert leased.get(MODEL, "m")["written_by"] == 2
    # Which of the two a backend does follows from how it checks the fence.
    assert refused == (target.backend == "redis")
