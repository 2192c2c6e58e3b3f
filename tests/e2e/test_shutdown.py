"""Graceful shutdown of a real ``rnnlm serve`` process on a real signal: health watchers see
NOT_SERVING at once, new calls get UNAVAILABLE, a call in flight finishes, the running job
writes a checkpoint and is marked interrupted (another server resumes it), exit status 0."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rnnlm.client import LMClient, Unavailable
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc
from tests.fixtures_redis import free_port

from .conftest import SMALL_MODEL, Backend, Scrape, serve_process, wait_until

FIRST, SECOND = b"the cat sat on the mat .\n" * 50, b"a dog slept on the rug .\n" * 50


class HeldUpload:
    """An UploadCorpus call kept open by the client: header and first chunk sent, the second
    chunk only once ``release()`` is called. Proves a call is in flight at a chosen moment."""

    def __init__(self, target: str) -> None:
        self._release = threading.Event()
        self._channel = grpc.insecure_channel(target)
        stub = rnnlm_pb2_grpc.LanguageModelServiceStub(self._channel)
        self.future = stub.UploadCorpus.future(self._requests())

    def _requests(self) -> Iterator[pb.UploadCorpusRequest]:
        data = FIRST + SECOND
        header = pb.CorpusHeader(
            filename="held.txt", size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
        )
        yield pb.UploadCorpusRequest(header=header)
        yield pb.UploadCorpusRequest(chunk=FIRST)
        self._release.wait(60)
        yield pb.UploadCorpusRequest(chunk=SECOND)

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self.release()
        self._channel.close()


def uploads_in_flight(port: int) -> float | None:
    """UploadCorpus calls in flight on the server, or None while there are none."""
    return Scrape(port).value("rnnlm_requests_in_flight", method="UploadCorpus") or None


def start_serving(backend: Backend, tmp_path: Path, grace: float) -> tuple:
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "server.log"
    process = serve_process(
        backend,
        port,
        "--metrics-address",
        f"127.0.0.1:{metrics_port}",
        log=log,
        checkpoint_every=5,
        shutdown_grace_s=grace,
    )
    return process, port, metrics_port, log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_drains_calls_checkpoints_the_job_and_exits_0(
    sig, backend, start_server, corpus_bytes, tmp_path
):
    process, port, metrics_port, log = start_serving(backend, tmp_path, grace=20.0)
    held = health_channel = None
    try:
        with LMClient(f"127.0.0.1:{port}", retries=10, backoff=0.3) as client:
            corpus = client.upload_corpus(corpus_bytes)  # retried until the server is up
            job = client.train("longjob", corpus, **SMALL_MODEL, epochs=100, log_every=1)
            next(e for e in client.watch(job.job_id) if e.kind == "checkpoint")
            held = HeldUpload(f"127.0.0.1:{port}")
            wait_until(lambda: uploads_in_flight(metrics_port), what="the upload to be in flight")
            # What a load balancer does: watch the health service.
            health_channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            health = health_pb2_grpc.HealthStub(health_channel).Watch(
                health_pb2.HealthCheckRequest(), timeout=60
            )
            assert next(health).status == health_pb2.HealthCheckResponse.SERVING

            process.send_signal(sig)

            assert next(health).status == health_pb2.HealthCheckResponse.NOT_SERVING
        # Once it has stopped listening (a call at that very instant may be cut off with
        # CANCELLED, which the client retries like UNAVAILABLE), new calls are refused.
        wait_until(lambda: "draining" if "calls in flight have" in log.read_text() else None)
        with LMClient(f"127.0.0.1:{port}", retries=0, timeout=5) as fresh:
            with pytest.raises(Unavailable):
                fresh.models()
            with contextlib.suppress(Unavailable):  # refused: as good a "no" for a check
                assert fresh.health() == "NOT_SERVING"
        assert process.poll() is None  # still draining: the upload is in flight

        held.release()
        try:
            uploaded = held.future.result(timeout=15)  # finished, not cut off
        except grpc.RpcError as err:
            raise AssertionError(f"the upload failed: {err}\n{log.read_text()[-3000:]}") from err
        assert uploaded.size_bytes == len(FIRST + SECOND)
        # Not the 20 s grace: once our calls are done, the health watch is cut off.
        assert process.wait(timeout=10) == 0
    finally:
        if held is not None:
            held.close()
        process.kill()
        process.wait()
        if health_channel is not None:
            health_channel.close()
    output = log.read_text()
    assert "shutting down" in output and "stopped" in output, output[-3000:]

    # The job stopped at a checkpoint and is resumable on another server.
    with LMClient(start_server().address, retries=0) as client:
        stopped = client.job(job.job_id)
        assert stopped.state == "interrupted"
        assert "shut down" in stopped.error
        assert stopped.checkpoint_step >= 5
        assert stopped.checkpoint_step == stopped.progress.step  # checkpointed as it stopped
        assert client.resume(job.job_id).state in ("queued", "running")
        client.cancel(job.job_id)


@contextmanager
def serving_a_held_call(tmp_path: Path, grace: float) -> Iterator[tuple]:
    """A server process on a local store with an upload held in flight: (process, held
    upload, log path). The process is killed on the way out if it is still there."""
    backend = Backend("local", tmp_path / "store", None, "rnnlm")
    process, port, metrics_port, log = start_serving(backend, tmp_path, grace=grace)
    held = None
    try:
        with LMClient(f"127.0.0.1:{port}", retries=10, backoff=0.3) as client:
            client.models()  # retried until the server is up
        held = HeldUpload(f"127.0.0.1:{port}")
        wait_until(lambda: uploads_in_flight(metrics_port), what="the upload to be in flight")
        yield process, held, log
    finally:
        if held is not None:
            held.close()
        if process.poll() is None:
            process.kill()
        process.wait()


def test_a_call_outliving_the_grace_period_is_cut_off_and_the_exit_is_still_clean(tmp_path):
    with serving_a_held_call(tmp_path, grace=1.0) as (process, held, _log):
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0  # without waiting for the held call
        with pytest.raises(grpc.RpcError) as failure:
            held.future.result(timeout=10)
        assert failure.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def test_a_second_signal_exits_at_once(tmp_path):
    with serving_a_held_call(tmp_path, grace=60.0) as (process, _held, log):
        process.send_signal(signal.SIGTERM)
        wait_until(lambda: "draining" if "shutting down" in log.read_text() else None)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 1  # not the 60 s grace
    assert "SIGINT again: exiting without waiting" in log.read_text()


def test_a_server_that_cannot_start_says_why(tmp_path):
    """A port already taken: exit status 1 and a log line naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        backend = Backend("local", tmp_path / "store", None, "rnnlm")
        process = serve_process(backend, port, log=tmp_path / "log")
        assert process.wait(timeout=60) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in (tmp_path / "log").read_text()
