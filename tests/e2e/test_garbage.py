"""What the store keeps, and for how long, end to end: a real server over the local store and
a real redis-server. Upload -> Train -> DeleteModel -> DeleteCorpus cycles leave the store as
they found it; ListCorpora, DeleteCorpus, DeleteTrainingJob; request ids, event logs and
checkpoints expire; the sweep removes orphans and nothing a live job owns; and a damaged
record does not hide the others from a listing."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from rnnlm.client import AsyncLMClient, FailedPrecondition, InvalidArgument, LMClient, NotFound
from rnnlm.client.cli import main as cli_main
from rnnlm.server import RnnlmServer
from rnnlm.server.job_thread import job_checkpoint_key
from rnnlm.server.store import JOB, MODEL, TRAIN_REQUEST

from .conftest import Backend, wait_until

LINES = "the cat sat on the mat .\nthe dog ate the bone .\na bird flew over the house .\n" * 3
TINY = {
    "cell": "gru",
    "vocab_size": 20,
    "embed_size": 4,
    "hidden_size": 4,
    "ngram_order": 0,
    "valid_fraction": 0.0,
    "batch_size": 32,
}
CYCLES = 50
# INFO used_memory may move a little for reasons of Redis' own (allocator pages, client
# buffers); what a cycle used to leave behind (~100 KB) times the cycles is far above this.
MEMORY_NOISE_BYTES = 512 * 1024


def tiny_corpus(tag: object) -> bytes:
    return (LINES + f"line number {tag} .\n").encode()


def finish(client: LMClient, job_id: str) -> str:
    """Poll until the job ends (a one-step job ends long before a watch would notice, which
    waits up to a second for more events); its final state."""
    deadline = time.monotonic() + 60
    while not (job := client.job(job_id)).done:
        assert time.monotonic() < deadline, f"job {job_id} did not end"
        time.sleep(0.01)
    return job.state


def start_long_job(client: LMClient, model_id: str, tag: object = "long") -> str:
    """A job that runs until cancelled; returns its id once it is running and checkpointed."""
    corpus = client.upload_corpus(tiny_corpus(tag), filename="t.txt")
    job = client.train(model_id, corpus, **TINY, epochs=100_000, checkpoint_every=2)
    wait_until(lambda: client.job(job.job_id).checkpoint_step or None, what="a checkpoint")
    return job.job_id


def cancel(client: LMClient, job_id: str) -> None:
    client.cancel(job_id)
    assert finish(client, job_id) == "cancelled"


class StoreView:
    """The backend's store seen from outside the server: Redis keys under the test's prefix
    and Redis' memory, or the directory's files (lock files aside: one per document kind)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.redis = redis.Redis.from_url(backend.redis_url) if backend.redis_url else None

    def footprint(self) -> set[str]:
        if self.redis is not None:
            return {k.decode() for k in self.redis.scan_iter(match=f"{self.backend.prefix}:*")}
        root = self.backend.store_dir
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] != "locks"
        }

    def used_memory(self) -> int:
        assert self.redis is not None
        return int(self.redis.info("memory")["used_memory"])

    def garble(self, kind: str, doc_id: str) -> None:
        """Overwrite a record with bytes that are not JSON, behind the server's back."""
        if self.redis is not None:
            self.redis.set(f"{self.backend.prefix}:doc:{kind}:{doc_id}", b"\xffgarbage")
        else:
            (self.backend.store_dir / "docs" / kind / f"{doc_id}.json").write_bytes(b"\xffgarbage")


def cycle(client: LMClient, i: int, cancelled: bool) -> None:
    model_id = f"cycle-{i}"
    if cancelled:
        job_id = start_long_job(client, model_id, tag=i)
        cancel(client, job_id)
    else:
        corpus = client.upload_corpus(tiny_corpus(i), filename="t.txt")
        job_id = client.train(model_id, corpus, **TINY, epochs=1).job_id
        assert finish(client, job_id) == "completed"
    client.delete_model(model_id)
    (corpus,) = client.corpora()
    client.delete_corpus(corpus)


def test_cycles_leave_the_store_as_they_found_it(backend, start_server) -> None:
    server = start_server(sweep_interval_s=0.0, orphan_grace_s=0.0)
    view = StoreView(backend)
    with LMClient(server.address, retries=0) as client:
        cycle(client, -1, cancelled=False)  # first-time files and allocations
        cycle(client, -2, cancelled=True)
        server.sweeper.sweep()
        keys, memory = view.footprint(), view.used_memory() if view.redis else 0
        for i in range(CYCLES):
            cycle(client, i, cancelled=i % 10 == 5)
        assert client.models() == [] and client.jobs() == [] and client.corpora() == []
        server.sweeper.sweep()  # request-id deadline marks (directory store) go here
    assert view.footprint() == keys
    if view.redis is not None:
        assert view.used_memory() - memory < MEMORY_NOISE_BYTES


def test_delete_model_takes_its_jobs(backend, start_server) -> None:
    server = start_server()
    with LMClient(server.address, retries=0) as client:
        corpus = client.upload_corpus(tiny_corpus(1), filename="t.txt")
        job = client.train("m", corpus, **TINY, epochs=1, request_id="req-1")
        finish(client, job.job_id)
        other = client.train("other", corpus, **TINY, epochs=1)
        finish(client, other.job_id)
        assert client.delete_model("m") == 1
        with pytest.raises(NotFound):
            client.job(job.job_id)
        assert [j.job_id for j in client.jobs()] == [other.job_id]
        assert server.store.read_events(job.job_id) == []
        assert server.store.get(TRAIN_REQUEST, "req-1") is None


def test_delete_training_job(backend, start_server) -> None:
    server = start_server()
    with LMClient(server.address, retries=0) as client:
        with pytest.raises(NotFound, match="does not exist"):
            client.delete_job("j-0000000000000000")
        with pytest.raises(InvalidArgument):
            client.delete_job("no/such id")
        job_id = start_long_job(client, "busy")
        with pytest.raises(FailedPrecondition, match="cancel it first"):
            client.delete_job(job_id)
        cancel(client, job_id)
        request_id = client.job(job_id).request_id
        key = job_checkpoint_key(job_id)
        assert server.store.blob_info(key) is not None and server.store.read_events(job_id)
        client.delete_job(job_id)
        with pytest.raises(NotFound):
            client.job(job_id)
        with pytest.raises(NotFound):
            client.delete_job(job_id)
        assert server.store.blob_info(key) is None
        assert server.store.read_events(job_id) == []
        assert server.store.get(TRAIN_REQUEST, request_id) is None
        assert client.model("busy").state == "empty"  # the model stays


def test_list_and_delete_corpora(backend, start_server) -> None:
    server = start_server()
    with LMClient(server.address, retries=0) as client:
        first = client.upload_corpus(tiny_corpus(1), filename="one.txt")
        time.sleep(0.01)  # distinct upload times: newest first is well defined
        second = client.upload_corpus(tiny_corpus(2), filename="two.txt")
        listed = client.corpora()
        assert [c.corpus_id for c in listed] == [second.corpus_id, first.corpus_id]
        assert listed.unreadable_ids == () and [c.filename for c in listed] == [
            "two.txt",
            "one.txt",
        ]
        assert [c.corpus_id for c in client.corpora(limit=1)] == [second.corpus_id]
        with pytest.raises(InvalidArgument, match="limit"):
            client.corpora(limit=5000)

        job_id = start_long_job(client, "reader", tag=1)  # trains on `first`
        with pytest.raises(FailedPrecondition, match="cancel the job first"):
            client.delete_corpus(first)
        cancel(client, job_id)
        assert client.delete_corpus(first) == first.size_bytes
        assert [c.corpus_id for c in client.corpora()] == [second.corpus_id]
        assert server.store.blob_info(f"corpora/{first.corpus_id}") is None
        with pytest.raises(NotFound):
            client.delete_corpus(first.corpus_id)
        with pytest.raises(InvalidArgument, match="malformed"):
            client.delete_corpus("not-a-corpus")
        # The ended job cannot go on without its corpus: refused before anything changes
        # (a run that failed at once would leave a failed job, its checkpoint swept).
        with pytest.raises(FailedPrecondition, match="its corpus c-[0-9a-f]+ was deleted"):
            client.resume(job_id)
        assert client.job(job_id).state == "cancelled"
        # The same bytes again: a new upload, stored whole, and the job goes on.
        again = client.upload_corpus(tiny_corpus(1), filename="one.txt")
        assert again.corpus_id == first.corpus_id
        assert server.store.get_blob(f"corpora/{again.corpus_id}") == tiny_corpus(1)
        client.resume(job_id)
        cancel(client, job_id)


def test_request_ids_event_logs_and_checkpoints_expire(backend, start_server) -> None:
    server = start_server(
        request_id_ttl_s=1.0,
        event_retention_s=0.0,
        checkpoint_retention_s=0.0,
        sweep_interval_s=0.0,
        orphan_grace_s=3600.0,
    )
    with LMClient(server.address, retries=0) as client:
        corpus = client.upload_corpus(tiny_corpus(1), filename="t.txt")
        job = client.train("m", corpus, **TINY, epochs=1, request_id="again")
        assert client.train("m", corpus, **TINY, epochs=1, request_id="again").job_id == job.job_id
        remembered_until = time.monotonic() + 1.0
        finish(client, job.job_id)
        stopped = start_long_job(client, "stopped")
        cancel(client, stopped)
        time.sleep(max(0.0, remembered_until - time.monotonic()) + 0.1)
        report = server.sweeper.sweep()
        assert server.store.get(TRAIN_REQUEST, "again") is None
        assert server.store.read_events(job.job_id) == []
        assert list(client.watch(job.job_id)) == []  # the job stays, its log has gone
        assert client.job(job.job_id).state == "completed"
        assert server.store.blob_info(job_checkpoint_key(stopped)) is None
        assert any(stopped in line for line in report.removed)
        with pytest.raises(FailedPrecondition, match="can no longer be resumed"):
            client.resume(stopped)
        # The request id is free again: the same id starts a new job.
        retry = client.train("m", corpus, **TINY, epochs=1, request_id="again")
        assert retry.job_id != job.job_id
        finish(client, retry.job_id)


def test_retention_spares_what_is_recent(backend, start_server) -> None:
    server = start_server(sweep_interval_s=0.0)  # the defaults: a day, a week, a week
    with LMClient(server.address, retries=0) as client:
        corpus = client.upload_corpus(tiny_corpus(1), filename="t.txt")
        job = client.train("m", corpus, **TINY, epochs=1, request_id="kept")
        finish(client, job.job_id)
        stopped = start_long_job(client, "stopped")
        cancel(client, stopped)
        assert server.sweeper.sweep().removed == []
        assert server.store.get(TRAIN_REQUEST, "kept") is not None
        assert server.store.read_events(job.job_id)
        assert server.store.blob_info(job_checkpoint_key(stopped)) is not None
        client.resume(stopped)  # still resumable
        cancel(client, stopped)


def plant_orphans(server: RnnlmServer) -> list[str]:
    """Data whose owning record does not exist, as a crash would leave it."""
    store = server.store
    ghost_corpus = "c-" + uuid.uuid4().hex
    store.put_blob(f"corpora/{ghost_corpus}", b"lost corpus")
    store.put_blob("models/ghost/1/checkpoint", b"lost checkpoint")
    store.put_blob("models/ghost/1/vocab", b"lost vocabulary")
    store.put_blob("jobs/j-ghost/checkpoint", b"lost job checkpoint")
    store.append_event("j-ghost", {"type": "progress"})
    store.create(TRAIN_REQUEST, "ghost-request", {"job_id": "j-ghost"})
    return [f"corpora/{ghost_corpus}", "models/ghost/1/checkpoint", "models/ghost/1/vocab"]


def test_the_sweep_removes_orphans_and_spares_live_jobs(
    backend, start_server, caplog: pytest.LogCaptureFixture
) -> None:
    # Two replicas on one store, sweeping at the same time while a job runs.
    servers = [start_server(sweep_interval_s=0.0, orphan_grace_s=0.0) for _ in range(2)]
    store = servers[0].store
    with LMClient(servers[0].address, retries=0) as client:
        corpus = client.upload_corpus(tiny_corpus(1), filename="t.txt")
        done = client.train("kept", corpus, **TINY, epochs=1)
        finish(client, done.job_id)
        live = start_long_job(client, "live", tag=1)
        blobs = plant_orphans(servers[0])
        # A version the model record does not list (a publish that died half way).
        store.put_blob("models/kept/7/checkpoint", b"unlisted version")
        caplog.set_level(logging.INFO, logger="rnnlm.server")
        threads = [threading.Thread(target=s.sweeper.sweep) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for key in [*blobs, "jobs/j-ghost/checkpoint", "models/kept/7/checkpoint"]:
            assert store.blob_info(key) is None, key
        assert store.read_events("j-ghost") == []
        assert store.get(TRAIN_REQUEST, "ghost-request") is None
        assert "sweep: removed blob models/ghost/1/checkpoint" in caplog.text
        # Untouched: the live job's record, events and checkpoint, the corpus it reads, the
        # finished model's version.
        assert client.job(live).state == "running"
        assert store.read_events(live) and store.blob_info(job_checkpoint_key(live))
        assert store.blob_info(f"corpora/{corpus.corpus_id}") is not None
        assert client.model("kept").current_version == 1
        assert client.score("kept", ["the cat sat ."]).scores
        step = client.job(live).checkpoint_step
        wait_until(lambda: client.job(live).checkpoint_step > step or None, what="a new one")
        cancel(client, live)


def test_the_sweep_leaves_recent_orphans_alone(backend, start_server) -> None:
    """A blob written before its record (an upload, a publish in flight) looks orphaned for
    a moment: the grace period spares it."""
    server = start_server(sweep_interval_s=0.0)  # the default grace, an hour
    blobs = plant_orphans(server)
    removed = server.sweeper.sweep().removed
    assert removed == ["request id ghost-request of deleted job j-ghost"]  # no write in flight
    assert all(server.store.blob_info(key) is not None for key in blobs)
    assert server.store.read_events("j-ghost")


def test_the_sweep_runs_by_itself(backend, start_server) -> None:
    server = start_server(sweep_interval_s=0.2, orphan_grace_s=0.0)
    plant_orphans(server)
    wait_until(
        lambda: server.store.blob_info("models/ghost/1/checkpoint") is None or None,
        what="the periodic sweep",
    )


def test_a_damaged_record_does_not_hide_the_others(backend, start_server, capsys) -> None:
    server = start_server()
    view = StoreView(backend)
    with LMClient(server.address, retries=0) as client:
        corpus = client.upload_corpus(tiny_corpus(1), filename="t.txt")
        other = client.upload_corpus(tiny_corpus(2), filename="u.txt")
        jobs = [client.train(m, corpus, **TINY, epochs=1).job_id for m in ("good", "bad")]
        for job_id in jobs:
            finish(client, job_id)
        view.garble(MODEL, "bad")
        view.garble(JOB, jobs[0])
        view.garble("corpus", other.corpus_id)
        models = client.models()
        assert [m.model_id for m in models] == ["good"] and models.unreadable_ids == ("bad",)
        listed = client.jobs()
        assert [j.job_id for j in listed] == [jobs[1]] and listed.unreadable_ids == (jobs[0],)
        assert client.jobs(model_id="bad").unreadable_ids == (jobs[0],)
        corpora = client.corpora()
        assert [c.corpus_id for c in corpora] == [corpus.corpus_id]
        assert corpora.unreadable_ids == (other.corpus_id,)
        assert cli_main(["--target", server.address, "models"]) == 0
        out, err = capsys.readouterr()
        assert "good" in out and "cannot read 1 stored record(s), left out: bad" in err
        # The sweep leaves what a damaged record may own.
        server.sweeper.sweep()
        assert server.store.blob_info("models/bad/1/checkpoint") is not None


def test_the_new_commands(server, capsys, tmp_path: Path) -> None:
    def cli(*args: str) -> tuple[int, str, str]:
        code = cli_main(["--target", server.address, *args])
        out, err = capsys.readouterr()
        return code, out, err

    with LMClient(server.address, retries=0) as client:
        corpus = client.upload_corpus(tiny_corpus(1), filename="cli.txt")
        job = client.train("m", corpus, **TINY, epochs=1)
        finish(client, job.job_id)
    code, out, _ = cli("corpora")
    assert code == 0 and corpus.corpus_id in out and "cli.txt" in out
    code, out, _ = cli("corpora", "--json")
    assert code == 0 and f'"corpus_id": "{corpus.corpus_id}"' in out
    assert cli("delete-job", job.job_id)[:2] == (0, f"deleted job {job.job_id}\n")
    code, _, err = cli("delete-job", job.job_id)
    assert code == 1 and "NOT_FOUND" in err
    code, out, _ = cli("delete-corpus", corpus.corpus_id)
    assert code == 0 and out.startswith(f"deleted corpus {corpus.corpus_id} (")
    assert cli("corpora")[1].strip() == "corpus  bytes  uploaded  file"


def test_the_async_client_lists_and_deletes(server) -> None:
    async def scenario() -> None:
        async with AsyncLMClient(server.address, timeout=30, retries=0) as client:
            corpus = await client.upload_corpus(tiny_corpus(1), filename="aio.txt")
            listed = await client.corpora()
            assert [c.corpus_id for c in listed] == [corpus.corpus_id]
            assert listed.unreadable_ids == ()
            job = await client.train("aio", corpus, **TINY, epochs=1)
            while not (await client.job(job.job_id)).done:
                await asyncio.sleep(0.01)
            assert (await client.jobs()).unreadable_ids == ()
            await client.delete_job(job.job_id)
            with pytest.raises(NotFound):
                await client.delete_job(job.job_id)
            assert [m.model_id for m in await client.models()] == ["aio"]
            assert await client.delete_corpus(corpus) == len(tiny_corpus(1))
            assert await client.corpora() == []

    asyncio.run(scenario())


def test_a_damaged_job_record_does_not_stop_the_reaper(backend, start_server, caplog) -> None:
    """Every server marks the running jobs of dead servers interrupted, each lease (1 s
    here): a job record it cannot read (not JSON, or lacking its fields) is skipped and
    logged once, and the others are still reaped."""
    caplog.set_level(logging.WARNING, logger="rnnlm.server")
    server = start_server()
    store, now = server.store, time.time()
    dead = {  # what a server that died while training leaves
        **{"job_id": "j-dead", "model_id": "m", "state": "running", "error": ""},
        **{"request_id": "", "corpus_id": "c-0", "model_config": {}, "train_config": {}},
        **{"created_at": now, "updated_at": now, "checkpoint_step": 0, "model_version": 0},
        **{"server_id": "dead-server", "heartbeat_at": now - 60, "lease_generation": 1},
    }
    store.create(JOB, "j-garbled", {**dead, "job_id": "j-garbled"})
    StoreView(backend).garble(JOB, "j-garbled")
    store.create(JOB, "j-fieldless", {"job_id": "j-fieldless", "heartbeat_at": 0})
    store.create(JOB, "j-dead", dead)
    # Read behind the server's back: GetTrainingJob would reap the job itself.
    wait_until(lambda: store.get(JOB, "j-dead")["state"] == "interrupted" or None, what="reap")
    assert "dead-server stopped responding" in store.get(JOB, "j-dead")["error"]
    time.sleep(2.5)  # a few more passes, which say nothing new
    for skipped in ("j-garbled", "j-fieldless"):
        assert caplog.text.count(f"job sweep: job {skipped} skipped") == 1


def test_damaged_records_do_not_stop_the_sweep(backend, start_server, caplog) -> None:
    """Records that are JSON but not as the server writes them (a request id naming no
    valid job id, a job record without its model), and an event log under a name the
    server never writes, are left alone and logged; the sweep still removes the orphans."""
    caplog.set_level(logging.WARNING, logger="rnnlm.server")
    server = start_server(sweep_interval_s=0.0, orphan_grace_s=0.0)
    store = server.store
    store.create(TRAIN_REQUEST, "bad-request", {"job_id": "no such/id"})
    store.create(JOB, "j-modelless", {"job_id": "j-modelless", "state": "completed"})
    if backend.redis_url:
        StoreView(backend).redis.xadd(f"{backend.prefix}:events:not a job id", {"data": "{}"})
    else:
        (backend.store_dir / "events" / "not a job id.log").write_bytes(b"")
    orphans = plant_orphans(server)
    report = server.sweeper.sweep()
    assert all(store.blob_info(key) is None for key in orphans), report.removed
    assert store.get(TRAIN_REQUEST, "ghost-request") is None
    assert store.get(TRAIN_REQUEST, "bad-request") is not None  # for an operator to look at
    assert store.get(JOB, "j-modelless") is not None
    assert "sweep: job j-modelless skipped, its record is damaged" in caplog.text


def test_delete_model_frees_a_model_claimed_by_an_ended_job(backend, start_server) -> None:
    """A server that marked a job interrupted and was cut off from the store before freeing
    its model leaves the model claimed by an ended job. DeleteModel frees it, as Train
    does, rather than asking to cancel a job that can no longer be cancelled."""
    server = start_server()
    with LMClient(server.address, retries=0) as client:
        job_id = start_long_job(client, "stuck")
        cancel(client, job_id)
        server.models.claim("stuck", job_id)  # claimed, and the job ended
        with pytest.raises(FailedPrecondition, match="nothing to cancel"):
            client.cancel(job_id)
        assert client.delete_model("stuck") == 0
        with pytest.raises(NotFound):
            client.job(job_id)  # its ended jobs went with it
        busy = start_long_job(client, "busy", tag=2)  # a live job still holds its model
        with pytest.raises(FailedPrecondition, match="cancel the job before deleting"):
            client.delete_model("busy")
        cancel(client, busy)
