"""``rnnlm plot`` against a real server: an ended job's curves as a PNG, a running job's so
far without waiting for its end, and one-line errors for an unknown job and a job that has
reported no progress."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")  # the dev extra brings it (rnnlm[plot])
from matplotlib.image import imread

from rnnlm.client import LMClient

from .conftest import SMALL_MODEL, train_small, wait_until


@pytest.fixture
def lm(server):
    with LMClient(server.address, timeout=30.0) as client:
        yield client


def test_plot_writes_an_ended_jobs_curves(cli, lm, corpus_bytes, tmp_path):
    job = train_small(lm, corpus_bytes, "plotted")
    assert job.state == "completed"
    code, out, err = cli("plot", job.job_id, "-o", str(tmp_path / "x.png"), "--title", "T")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "x.png")
    height, width, _ = imread(tmp_path / "x.png").shape
    assert (width, height) == (1000, 700)


def test_plot_draws_a_running_job_so_far_and_returns(cli, lm, corpus_bytes, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the default output is JOB_ID.png, here
    corpus = lm.upload_corpus(corpus_bytes, filename="pydoc.txt")
    # Long enough that it is still running after the plot (it is cancelled below).
    job = lm.train("running", corpus, **SMALL_MODEL, epochs=200, batch_size=32, log_every=2)
    try:
        wait_until(lambda: lm.job(job.job_id).progress, what="a first progress report")
        code, out, err = cli("plot", job.job_id)
        assert code == 0, err
        assert f"job {job.job_id} is running: drawn up to step" in err
        assert lm.job(job.job_id).state == "running"  # the plot did not wait for the end
        written = out.strip()
        assert written == f"{job.job_id}.png"
        assert imread(written).shape[:2] == (700, 1000)
    finally:
        lm.cancel(job.job_id)
        for _ in lm.watch(job.job_id):  # until it has stopped
            pass


def test_plot_errors_are_one_line(cli, lm, corpus_bytes, tmp_path):
    code, out, err = cli("plot", "no-such-job", "-o", str(tmp_path / "ghost.png"))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "NOT_FOUND" in err
    assert not (tmp_path / "ghost.png").exists()

    # Cancelled before its first report: progress comes every log_every steps and at the
    # end of an epoch, and a stop ends the run before either.
    corpus = lm.upload_corpus(corpus_bytes * 3, filename="pydoc.txt")
    job = lm.train("silent", corpus, **SMALL_MODEL, epochs=5, batch_size=8, log_every=100_000)
    lm.cancel(job.job_id)
    for _ in lm.watch(job.job_id):
        pass
    code, out, err = cli("plot", job.job_id, "-o", str(tmp_path / "silent.png"))
    assert code == 1 and out == ""
    assert err.strip() == f"error: job {job.job_id} has no progress events yet (it is cancelled)"
    assert not (tmp_path / "silent.png").exists()
