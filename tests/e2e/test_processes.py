"""``rnnlm serve --processes 2``: a real parent process and its two servers on one port. A
model trained through them, 200 concurrent clients (a connection each, which the kernel
spreads) all given the right score, both processes seen serving in the one ``/metrics``, a
child killed with SIGKILL started again and counted, SIGTERM to the parent drains both and
exits 0. And the ways it refuses to start."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from rnnlm.client import LMClient
from tests.fixtures_redis import free_port

from .conftest import Backend, Scrape, scrape_when, serve_process, train_small, wait_until

SENTENCE = "the function returns a new list of the items ."
CLIENTS = 200
CALLS_EACH = 2
# Without a local subchannel pool, channels to one target share one TCP connection, which
# would pin every client to one process.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def serving_children(parent: subprocess.Popen, log: Path, count: int = 2) -> set[int]:
    """The parent's server processes, once ``count`` of them run and the log says all serve."""

    def ready() -> set[int] | None:
        assert parent.poll() is None, log.read_text()[-3000:]
        pids = {c.pid for c in psutil.Process(parent.pid).children()}
        return pids if len(pids) == count and "with 2 processes" in log.read_text() else None

    return wait_until(ready, timeout=90, what="the server processes to serve")


def served_by(scrape: Scrape) -> dict[int, float]:
    """Calls each process (pid) finished."""
    return {
        int(s.labels["pid"]): s.value
        for s in scrape.samples
        if s.name == "rnnlm_process_requests_total"
    }


def score_concurrently(target: str) -> list[float]:
    """CLIENTS threads, each with its own channel and connection, scoring SENTENCE."""

    def one_client(_: int) -> list[float]:
        with LMClient(target, options=OWN_CONNECTION, retries=3, timeout=60) as lm:
            return [lm.score("small", [SENTENCE]).scores[0].logprob for _ in range(CALLS_EACH)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [x for scores in pool.map(one_client, range(CLIENTS)) for x in scores]


def test_two_processes_share_the_port_the_metrics_and_the_work(tmp_path, corpus_bytes):
    backend = Backend("local", tmp_path / "store", None, "rnnlm")
    port, metrics_port, log = free_port(), free_port(), tmp_path / "serve.log"
    flags = ["--processes", "2", "--metrics-address", f"127.0.0.1:{metrics_port}"]
    parent = serve_process(backend, port, *flags, log=log)
    target = f"127.0.0.1:{port}"
    try:
        first = serving_children(parent, log)
        with LMClient(target, retries=3, timeout=60) as client:
            job = train_small(client, corpus_bytes)
            assert job.state == "completed"
            reference = client.score("small", [SENTENCE]).scores[0].logprob

        scores = score_concurrently(target)
        assert len(scores) == CLIENTS * CALLS_EACH
        assert scores == [pytest.approx(reference, rel=1e-5)] * len(scores)

        scrape = Scrape(metrics_port)
        served = served_by(scrape)
        assert set(served) == first and min(served.values()) > 0, served
        # One endpoint adds up every process: all the calls, the job run exactly once.
        calls = sum(s.value for s in scrape.samples if s.name == "rnnlm_requests_total")
        assert calls == sum(served.values())
        ok = scrape.value("rnnlm_requests_total", method="ScoreSentence", code="OK")
        assert ok == CLIENTS * CALLS_EACH + 1
        assert scrape.value("rnnlm_training_jobs_finished_total", state="completed") == 1
        assert scrape.value("rnnlm_training_jobs_running") == 0
        assert scrape.value("rnnlm_store_up") == 1
        assert scrape.value("rnnlm_processes") == 2
        assert scrape.value("rnnlm_process_restarts_total") == 0
        # Gauges of state are sampled in each process and summed over the live ones.
        scrape_when(metrics_port, lambda s: s.value("rnnlm_model_cache_models") == 2)

        killed = min(first)
        psutil.Process(killed).send_signal(signal.SIGKILL)
        scrape = scrape_when(
            metrics_port,
            lambda s: (
                s.value("rnnlm_process_restarts_total") == 1 and s.value("rnnlm_processes") == 2
            ),
        )
        wait_until(lambda: True if "serves again" in log.read_text() else None, timeout=90)
        now = {c.pid for c in psutil.Process(parent.pid).children()}
        assert len(now) == 2 and killed not in now and (first - {killed}) < now
        assert "died (killed by SIGKILL)" in log.read_text()
        # The dead process' calls still count, its gauges no longer; the new one serves.
        scrape = Scrape(metrics_port)
        assert served_by(scrape)[killed] == served[killed]
        assert scrape.value("rnnlm_model_cache_models") == 1
        assert score_concurrently(target) == [pytest.approx(reference, rel=1e-5)] * len(scores)
        scrape_when(metrics_port, lambda s: s.value("rnnlm_model_cache_models") == 2)

        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert not any(psutil.pid_exists(pid) for pid in now)
        assert log.read_text().count("INFO rnnlm.server: stopped") == 2
    finally:
        parent.kill()
        parent.wait()


def test_a_port_taken_by_another_program_stops_the_start(tmp_path):
    with socket.socket() as taken:  # no SO_REUSEPORT: nobody may share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "rnnlm.server", "--address", f"127.0.0.1:{port}"]
        done = subprocess.run(
            [*command, "--processes", "2", "--store-dir", str(tmp_path / "store")],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_a_process_that_cannot_start_stops_them_all(tmp_path):
    """No restarting for ever: a child that fails before serving ends the start, with its
    exit status."""
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    backend = Backend("local", not_a_folder, None, "rnnlm")
    log = tmp_path / "serve.log"
    parent = serve_process(backend, free_port(), "--processes", "2", log=log)
    try:
        assert parent.wait(timeout=90) == 1
    finally:
        parent.kill()
    text = log.read_text()
    assert "ended before all served" in text and "restart" not in text
