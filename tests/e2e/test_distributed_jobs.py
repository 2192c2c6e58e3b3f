"""Data-parallel training jobs through a real server: the ``processes`` option, a killed
training process, and ``torchrun`` with ``rnnlm.server.torchrun`` on the server's store,
seen, cancelled and resumed through the server like any job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from rnnlm.client import LMClient
from tests.e2e.conftest import SMALL_MODEL, wait_until

# One store and one client kind: what is under test here is the training, not those.
pytestmark = [
    pytest.mark.parametrize("backend", ["local"], indirect=True),
    pytest.mark.parametrize("client_kind", ["sync"], indirect=True),
]

# No dropout, so that one process and two take the same steps (each process draws its own
# masks); epochs and checkpoints as the tests need them.
MODEL = {**SMALL_MODEL, "dropout": 0.0, "ngram_order": 0}
TRAINING = {"epochs": 2, "batch_size": 16, "seed": 2, "log_every": 5}
SENTENCES = ["the value of the function is returned .", "a class may define methods ."]


def finished(client: LMClient, job_id: str):
    for _ in client.watch(job_id):
        pass
    return client.job(job_id)


def training_processes(rank: str) -> list[psutil.Process]:
    children = psutil.Process().children(recursive=True)
    return [
        p
        for p in children
        if "rnnlm.model.distributed" in " ".join(p.cmdline()) and p.environ().get("RANK") == rank
    ]


def test_a_job_with_processes_trains_data_parallel(client: LMClient, corpus_bytes: bytes):
    """processes=2: the job completes, its record and events are those of any job, and the
    model scores as the one-process model trained the same way."""
    corpus = client.upload_corpus(corpus_bytes, filename="pydoc.txt")
    one = finished(client, client.train("one", corpus, **MODEL, **TRAINING).job_id)
    job = client.train("two", corpus, **MODEL, **TRAINING, processes=2)
    two = finished(client, job.job_id)
    assert (one.state, two.state) == ("completed", "completed"), two.error
    assert two.model_version == 1 and two.training["processes"] == 2
    assert two.progress.step == one.progress.step  # the same global batches
    progress = [e for e in client.watch(job.job_id) if e.progress is not None]
    assert progress and progress[-1].progress.step == two.progress.step
    ones, twos = client.score("one", SENTENCES).scores, client.score("two", SENTENCES).scores
    for a, b in zip(ones, twos, strict=True):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-3)


def test_a_killed_training_process_interrupts_the_job(client: LMClient, corpus_bytes: bytes):
    """Kill rank 1 of a running job: INTERRUPTED, saying which process died, no version
    published; resumed, it completes."""
    corpus = client.upload_corpus(corpus_bytes, filename="pydoc.txt")
    training = {**TRAINING, "epochs": 30, "patience": 0, "checkpoint_every": 5}
    job = client.train("killed", corpus, **MODEL, **training, processes=2)
    wait_until(lambda: client.job(job.job_id).checkpoint_step >= 5 or None, 60, "a checkpoint")
    (rank_1,) = wait_until(lambda: training_processes("1") or None, 10, "rank 1")
    os.kill(rank_1.pid, signal.SIGKILL)
    ended = finished(client, job.job_id)
    assert ended.state == "interrupted"
    assert "training process 1 of 2 ended (killed by SIGKILL)" in ended.error
    assert "resume the job" in ended.error
    assert client.model("killed").versions == ()
    wait_until(lambda: training_processes("0") == [] or None, 30, "the other process to go")
    resumed = client.resume(job.job_id, epochs=training["epochs"])
    client.cancel(resumed.job_id)  # long enough to see it run again; a cancel ends it
    assert finished(client, job.job_id).state == "cancelled"


def torchrun(store_dir: Path, *flags: str, nproc: int = 2) -> subprocess.Popen:
    """``torchrun --standalone`` with ``nproc`` CPU processes on ``store_dir``."""
    command = [
        shutil.which("torchrun", path=os.path.dirname(sys.executable)) or "torchrun",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "rnnlm.server.torchrun",
        *flags,
        "--",
        *("--store-dir", str(store_dir), "--device", "cpu", "--job-lease-s", "1"),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def job_line(process: subprocess.Popen) -> str:
    """The job id from torchrun's output ("job j-...: training on 2 processes; ...")."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("job ") and "training on" in line:
            return line.split()[1].rstrip(":")
    output = "".join(seen)[-3000:]
    raise AssertionError(f"torchrun ended without a job (exit {process.wait()}):\n{output}")


def test_torchrun_trains_a_job_that_the_server_sees(backend, server, client, corpus_bytes):
    """torchrun with two processes, on the server's store: the job and its events through
    the server, its version published, scores as any model's."""
    corpus = client.upload_corpus(corpus_bytes, filename="pydoc.txt")
    run = torchrun(
        backend.store_dir,
        *("--model", "cluster", "--corpus-id", corpus.corpus_id),
        *("--model-config", '{"cell": "gru", "vocab_size": 600, "hidden_size": 32}'),
        *("--train-config", '{"epochs": 1, "batch_size": 16, "log_every": 5}'),
    )
    output, _ = run.communicate(timeout=240)
    assert run.returncode == 0, output[-3000:]
    job_id = next(w for w in output.split() if w.startswith("j-")).rstrip(":")
    job = client.job(job_id)
    assert job.state == "completed" and job.model_version == 1, job.error
    assert job.training["processes"] == 2
    assert [e for e in client.watch(job_id) if e.progress is not None]
    assert client.score("cluster", SENTENCES).scores[0].logprob < 0


def test_a_torchrun_job_is_cancelled_and_resumed_through_the_server(
    backend, server, client, corpus_bytes
):
    corpus = client.upload_corpus(corpus_bytes, filename="pydoc.txt")
    run = torchrun(
        backend.store_dir,
        *("--model", "cut", "--corpus-id", corpus.corpus_id),
        *("--model-config", '{"cell": "gru", "vocab_size": 600, "hidden_size": 32}'),
        *("--train-config", '{"epochs": 40, "batch_size": 16, "patience": null, "log_every": 5}'),
    )
    job_id = job_line(run)
    wait_until(lambda: client.job(job_id).progress is not None or None, 60, "progress")
    client.cancel(job_id)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 1, output[-3000:]
    assert f"job {job_id}: cancelled" in output
    assert client.job(job_id).state == "cancelled"
    resumed = client.resume(job_id, epochs=40)  # on the server now: processes=2 fits here
    assert resumed.state in ("queued", "running")
    wait_until(lambda: (client.job(job_id).progress.step or 0) > 0 or None, 60, "steps")
    client.cancel(job_id)
    assert finished(client, job_id).state == "cancelled"


def test_torchrun_refuses_a_bad_request_and_every_process_leaves(backend, server, client):
    """Refused before training (rank 0 says why): the other rank is told, and all exit."""
    run = torchrun(
        backend.store_dir,
        *("--model", "refused", "--corpus-id", "c-" + "0" * 64),
        *("--train-config", '{"patience": 0}'),
    )
    output, _ = run.communicate(timeout=120)
    assert run.returncode != 0
    assert "error: train_config.patience must be an integer >= 1, got 0" in output
    assert "[rank0]: Traceback" not in output and "[rank1]: Traceback" not in output  # ours
