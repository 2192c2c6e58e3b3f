"""Several servers over one store: two replicas sharing Redis, and a server that dies in the
middle of a training job (a real process, killed with SIGKILL) and the job resumed by the
next one from its last checkpoint."""

from __future__ import annotations

import signal

import pytest

from rnnlm.client import LMClient
from tests.fixtures_redis import free_port

from .conftest import SMALL_MODEL, serve_process, train_small, wait_until

FLUENT = "the function returns a new list of the items ."


def test_two_servers_on_one_redis_share_models_and_jobs(start_server, backend, corpus_bytes):
    if backend.name != "redis":
        pytest.skip("replicas share a Redis store")
    a, b = start_server(), start_server()
    with LMClient(a.address) as on_a, LMClient(b.address) as on_b:
        corpus = on_a.upload_corpus(corpus_bytes)
        job = on_a.train("shared", corpus, **SMALL_MODEL, epochs=2, log_every=5)
        events = list(on_b.watch(job.job_id))  # joined from the other replica
        assert events[-1].state == "completed"
        assert on_b.job(job.job_id).server_id == a.config.server_id
        assert [j.job_id for j in on_b.jobs()] == [job.job_id]
        assert on_b.score("shared", [FLUENT]).model_version == 1
        train_small(on_a, corpus_bytes, model_id="shared", epochs=1, seed=9)
        assert on_b.score("shared", [FLUENT]).model_version == 2  # B picked up A's version

        long_job = on_a.train("other", corpus, **SMALL_MODEL, epochs=100, log_every=1)
        next(e for e in on_b.watch(long_job.job_id) if e.kind == "progress")
        on_b.cancel(long_job.job_id)  # A runs it; the cancellation reaches it via the store
        assert list(on_b.watch(long_job.job_id))[-1].state == "cancelled"
        assert {m.model_id for m in on_b.models()} == {"shared", "other"}

        # Deleted and trained anew: version numbers start again, yet B serves the new model.
        on_a.delete_model("shared")
        train_small(on_a, corpus_bytes, model_id="shared", epochs=1, seed=11, vocab_size=300)
        new_on_a = on_a.score("shared", [FLUENT])
        new_on_b = on_b.score("shared", [FLUENT])
        assert new_on_a.model_version == new_on_b.model_version == 1
        assert new_on_b.scores[0].logprob == pytest.approx(new_on_a.scores[0].logprob, rel=1e-5)


def test_a_job_of_a_killed_server_resumes_from_its_last_checkpoint(
    start_server, backend, corpus_bytes
):
    port = free_port()
    process = serve_process(backend, port, checkpoint_every=5)
    try:
        with LMClient(f"127.0.0.1:{port}", retries=8, backoff=0.25) as client:
            corpus = client.upload_corpus(corpus_bytes)  # retried until the server is up
            job = client.train("crash", corpus, **SMALL_MODEL, epochs=4, log_every=1)
            next(e for e in client.watch(job.job_id) if e.kind == "checkpoint")
            process.send_signal(signal.SIGKILL)  # no chance to clean up
            process.wait(10)
    finally:
        process.kill()

    server = start_server()
    with LMClient(server.address) as client:

        def interrupted_job():
            current = client.job(job.job_id)
            return current if current.state == "interrupted" else None

        interrupted = wait_until(interrupted_job, what="the orphaned job to be interrupted")
        assert "stopped responding" in interrupted.error
        checkpoint = interrupted.checkpoint_step
        assert checkpoint >= 5 and checkpoint % 5 == 0
        assert client.model("crash").state == "empty"  # no version, no job training it

        client.resume(job.job_id)
        events = list(client.watch(job.job_id))
        steps = [
            e.progress.step for e in events if e.kind == "progress" and e.progress.kind == "step"
        ]
        resumed = steps[steps.index(interrupted.progress.step) + 1 :]
        # At most one checkpoint interval of work was lost: it went on from the checkpoint.
        assert resumed[0] == checkpoint + 1
        done = client.job(job.job_id)
        assert done.state in ("completed", "early_stopped") and done.model_version == 1
        assert client.score("crash", [FLUENT]).model_version == 1
