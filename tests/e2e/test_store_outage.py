"""A store outage as a job finishes, against a real redis-server that the tests take away
and bring back: stopped with its data kept (SAVE, then SIGKILL; the restart loads the
snapshot, as a Redis with persistence would) or made read-only (REPLICAOF a port where
nobody listens: reads answer, writes fail, as during a failover). To be sure that the job
is still training when the store goes, Redis first holds every write (CLIENT PAUSE WRITE)
as soon as the job runs: the job blocks in its first progress report, and every step
reports.

- a model trained while Redis is down waits in memory and is published when it returns;
- while the store answers reads only, GetTrainingJob says the job waits to publish;
- past ``--publish-retry-s`` the job fails, saying why, once the store takes writes again;
- a run that was taken over (its lease's generation superseded by a resume) writes
  nothing more: it cannot undo the run that resumed it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from rnnlm.client import FailedPrecondition, LMClient, TrainingJob, Unavailable
from rnnlm.server.store import JOB
from tests.fixtures_redis import RedisServer, free_port

from .conftest import SMALL_MODEL, Backend, Scrape, serve_process, wait_until

FLUENT = "the function returns a new list of the items ."
# About 12 steps, each reported to the store.
TRAINING = {"epochs": 2, "batch_size": 32, "seed": 1, "log_every": 1}
# How long Redis holds writes at most (the test takes it away within moments).
HOLD_MS = 30_000
CORPUS_BYTES = 20_000
# Waits for what a loaded 2-core machine may take a while to do; never a timing assertion.
PATIENCE_S = 120.0


@pytest.fixture(scope="module")
def outage_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this module's own: its snapshot file must not reach other tests."""
    server = RedisServer(tmp_path_factory.mktemp("redis-outage"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def backend(outage_redis: RedisServer, tmp_path: Path) -> Backend:
    """Replaces the e2e ``backend``: these tests are about Redis going away."""
    outage_redis.start()
    return Backend("redis", tmp_path / "unused", outage_redis.url, f"o{uuid.uuid4().hex[:10]}")


def stop_keeping_data(server: RedisServer) -> None:
    """SAVE (reads and SAVE go on while writes are held), then SIGKILL."""
    with redis.Redis.from_url(server.url) as r:
        r.save()
    server.stop()


@contextlib.contextmanager
def read_only(server: RedisServer) -> Iterator[None]:
    """Redis as a replica of a master that is not there: it serves what it has, refuses
    every write (READONLY), and becomes a master again, data intact, on the way out. The
    writes held meanwhile are released (and refused)."""
    with redis.Redis.from_url(server.url) as r:
        r.replicaof("127.0.0.1", free_port())
        r.client_unpause()
        try:
            yield
        finally:
            r.replicaof("NO", "ONE")


def start_held_job(
    client: LMClient, corpus_bytes: bytes, model_id: str, server: RedisServer, metrics_port: int
) -> TrainingJob:
    """A job that runs, held in its first progress report: Redis holds writes from the
    moment the job says it runs (before its first step), and the server's metrics show
    that it reached a step (reported to the metrics before the store)."""
    corpus = client.upload_corpus(corpus_bytes[:CORPUS_BYTES], filename="pydoc.txt")
    job = client.train(model_id, corpus, **SMALL_MODEL, **TRAINING)
    next(e for e in client.watch(job.job_id) if e.kind == "state" and e.state == "running")
    with redis.Redis.from_url(server.url) as r:
        r.client_pause(HOLD_MS, all=False)  # writes only
    scrape_until(metrics_port, lambda s: (s.value("rnnlm_training_step") or 0) >= 1)
    return job


def job_when(client: LMClient, job_id: str, condition: Callable[[TrainingJob], bool]):
    """Poll the job (through a store that may still be coming back) until ``condition``."""

    def attempt() -> TrainingJob | None:
        with contextlib.suppress(Unavailable):
            job = client.job(job_id)
            return job if condition(job) else None
        return None

    return wait_until(attempt, timeout=PATIENCE_S, what=f"job {job_id} to meet a condition")


def scrape_until(port: int, condition: Callable[[Scrape], bool]) -> Scrape:
    def attempt() -> Scrape | None:
        scrape = Scrape(port)
        return scrape if condition(scrape) else None

    return wait_until(attempt, timeout=PATIENCE_S, what="a metric condition")


def waiting_to_publish(scrape: Scrape) -> bool:
    """Training is over and the model waits for the store (and has tried it twice)."""
    return (
        scrape.value("rnnlm_training_jobs_unpublished") == 1
        and (scrape.value("rnnlm_publish_retries_total") or 0) >= 2
    )


def test_a_model_trained_while_redis_is_down_is_published_when_it_returns(
    start_server, outage_redis, corpus_bytes, caplog
):
    caplog.set_level(logging.INFO, logger="rnnlm.server")
    server = start_server(metrics_address="127.0.0.1:0", publish_retry_s=300.0)
    with LMClient(server.address, timeout=30, retries=0) as client:
        job = start_held_job(client, corpus_bytes, "outage", outage_redis, server.metrics_port)
        stop_keeping_data(outage_redis)
        try:
            # The training ends during the outage; the trained model waits in memory.
            scrape_until(server.metrics_port, waiting_to_publish)
        finally:
            outage_redis.start()

        done = job_when(client, job.job_id, lambda j: j.state not in ("queued", "running"))
        assert (done.state, done.error, done.model_version) == ("completed", "", 1)
        assert done.phase == ""
        assert client.model("outage").state == "ready"  # and no job holds it any more
        assert client.score("outage", [FLUENT]).model_version == 1
        assert Scrape(server.metrics_port).value("rnnlm_training_jobs_unpublished") == 0
    assert "the model waits in memory and publishing is retried" in caplog.text


def test_while_the_store_takes_no_writes_the_job_says_it_waits_to_publish(
    start_server, outage_redis, corpus_bytes
):
    server = start_server(metrics_address="127.0.0.1:0", publish_retry_s=300.0)
    with LMClient(server.address, timeout=30, retries=0) as client:
        job = start_held_job(client, corpus_bytes, "readonly", outage_redis, server.metrics_port)
        with read_only(outage_redis):
            scrape_until(server.metrics_port, waiting_to_publish)
            waiting = client.job(job.job_id)  # reads still work
            assert waiting.state == "running"
            assert waiting.phase.startswith("publishing (store unavailable, retrying until ")
            assert client.jobs()[0].phase == waiting.phase

        done = job_when(client, job.job_id, lambda j: j.state != "running")
        assert (done.state, done.model_version, done.phase) == ("completed", 1, "")
        assert client.score("readonly", [FLUENT]).model_version == 1


def test_past_the_retry_window_the_job_fails_and_says_why(start_server, outage_redis, corpus_bytes):
    server = start_server(metrics_address="127.0.0.1:0", publish_retry_s=1.0)
    with LMClient(server.address, timeout=30, retries=0) as client:
        job = start_held_job(client, corpus_bytes, "toolate", outage_redis, server.metrics_port)
        stop_keeping_data(outage_redis)
        try:
            # Given up on publishing: the job ended here as failed (not yet recorded).
            scrape_until(
                server.metrics_port,
                lambda s: s.value("rnnlm_training_jobs_finished_total", state="failed") == 1,
            )
        finally:
            outage_redis.start()

        failed = job_when(client, job.job_id, lambda j: j.state != "running")
        assert failed.state == "failed"
        assert "store stayed unavailable" in failed.error
        assert "--publish-retry-s" in failed.error and "not published" in failed.error
        model = client.model("toolate")
        assert (model.state, model.versions, model.active_job_id) == ("empty", (), "")


def test_a_run_that_was_taken_over_cannot_undo_the_run_that_resumed_it(
    start_server, backend, outage_redis, corpus_bytes, tmp_path
):
    """Server A trains a job to the end while Redis is down, then freezes (SIGSTOP: a long
    pause, a partition) with the model unpublished. Redis returns, B marks the job
    interrupted and a client resumes it there with more epochs: a new lease generation.
    When A wakes, its stale publish and final state are refused: the job ends as B's run
    ends, with B's model."""
    port, metrics_port, log = free_port(), free_port(), tmp_path / "a.log"
    a = serve_process(
        backend, port, "--metrics-address", f"127.0.0.1:{metrics_port}", log=log,
        publish_retry_s=300.0, checkpoint_every=5,
    )  # fmt: skip
    try:
        with LMClient(f"127.0.0.1:{port}", timeout=30, retries=10, backoff=0.3) as on_a:
            job = start_held_job(on_a, corpus_bytes, "fenced", outage_redis, metrics_port)
        stop_keeping_data(outage_redis)
        try:
            scrape_until(metrics_port, waiting_to_publish)
            a.send_signal(signal.SIGSTOP)
        finally:
            outage_redis.start()

        with LMClient(start_server().address, timeout=30, retries=0) as on_b:
            job_when(on_b, job.job_id, lambda j: j.state == "interrupted")  # A is silent
            resumed = on_b.resume(job.job_id, epochs=TRAINING["epochs"] + 1)
            events = on_b.watch(job.job_id)
            for awaited in ("interrupted", "running"):  # A's run ended, B's began
                next(e for e in events if e.kind == "state" and e.state == awaited)
            next(e for e in events if e.kind == "progress")  # B trains

            a.send_signal(signal.SIGCONT)  # A carries on where it was: publishing
            wait_until(
                lambda: "a newer run holds the lease" in log.read_text() or None,
                timeout=PATIENCE_S,
                what="server A to notice that its run was taken over",
            )

            done = job_when(on_b, job.job_id, lambda j: j.state != "running")
            assert (done.state, done.model_version) == ("completed", 1)
            assert done.server_id == resumed.server_id
            model = on_b.model("fenced")
            assert [v.version for v in model.versions] == [1]  # A published nothing
            assert model.current.epochs_trained == TRAINING["epochs"] + 1  # B's model
            assert model.active_job_id == ""
    finally:
        a.send_signal(signal.SIGCONT)
        a.kill()
        a.wait()


def test_a_resume_sent_to_the_server_whose_run_is_alive_changes_nothing(start_server):
    """A replica marked the job interrupted while this server could not reach the store
    (its run is alive here, e.g. with a trained model waiting to publish), and a client
    resumes it through this server. Refused before any write: a take-over would fence off
    the live run, then fail to start its own ("already running here"), leaving the job
    queued with nobody running it until its lease lapsed again."""
    server = start_server(job_lease_s=10.0)  # heartbeats 2 s apart: none in between
    silent = {"epochs": 100_000, "checkpoint_every": 10**9, "log_every": 10**9}  # no writes
    with LMClient(server.address, timeout=30, retries=0) as client:
        corpus = client.upload_corpus(b"the cat sat on the mat .\n" * 30, filename="t.txt")
        tiny = {"vocab_size": 20, "embed_size": 4, "hidden_size": 4, "ngram_order": 0}
        job = client.train("alive", corpus, cell="gru", valid_fraction=0.0, **tiny, **silent)
        wait_until(lambda: client.job(job.job_id).state == "running" or None, what="running")

        def mark(record: dict | None) -> dict:  # what another replica's reaper writes
            assert record is not None
            return {**record, "state": "interrupted", "error": "server stopped responding"}

        server.store.update(JOB, job.job_id, mark)
        server.models.release("alive", job.job_id)
        with pytest.raises(FailedPrecondition, match="still running on this server"):
            client.resume(job.job_id)
        assert server.store.get(JOB, job.job_id)["lease_generation"] == 1  # not taken over
        # The live run takes its job back at its next heartbeat, and can be cancelled.
        wait_until(lambda: client.job(job.job_id).state == "running" or None, what="take back")
        assert client.model("alive").active_job_id == job.job_id
        client.cancel(job.job_id)
        ended = job_when(client, job.job_id, lambda j: j.state != "running")
        assert ended.state == "cancelled"


def test_a_server_stopped_just_after_the_store_returns_still_publishes(
    start_server, outage_redis, corpus_bytes
):
    """A restart right after a Redis incident: the trained model waits to publish, its
    attempts 4-5 s apart by then; Redis returns and the server is stopped before the next
    attempt. Stopping makes one last attempt instead of dropping the model unpublished
    ("the server shut down while the store was unavailable", which it no longer was)."""
    server = start_server(metrics_address="127.0.0.1:0", publish_retry_s=300.0)
    with LMClient(server.address, timeout=30, retries=0) as client:
        job = start_held_job(client, corpus_bytes, "restarted", outage_redis, server.metrics_port)
    stop_keeping_data(outage_redis)
    try:  # four failed attempts: the fifth comes 4 s after the fourth
        scrape_until(
            server.metrics_port, lambda s: (s.value("rnnlm_publish_retries_total") or 0) >= 4
        )
    finally:
        outage_redis.start()
    server.stop(grace=10.0)
    with LMClient(start_server().address, timeout=30, retries=0) as client:
        done = client.job(job.job_id)
        assert (done.state, done.error, done.model_version) == ("completed", "", 1)
        assert client.model("restarted").current_version == 1
