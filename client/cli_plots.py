"""The ``rnnlm plot`` command: a training job's curves as a picture (needs ``rnnlm[plot]``).

rnnlm plot JOB_ID                         # JOB_ID.png: loss, perplexity, rate, |g|
rnnlm plot JOB_ID -o curves.svg --title "GRU 256 on news"
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import closing

from rnnlm.client import plots
from rnnlm.client._output import eprint
from rnnlm.client.sync import LMClient
from rnnlm.client.types import TrainingJob, TrainingProgress

PLOT_EPILOG = """\
A running job is drawn as far as it has got: the command reads the progress reported so far
and returns, without waiting for the job to end. The format follows the output's suffix
(.png, .svg, .pdf). Exit 1 when the job does not exist or has reported no progress yet."""


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the command with the parser's ``command(name, func, help, **kw)``."""
    p = command(
        "plot",
        cmd_plot,
        "draw a training job's loss, perplexity, learning rate and gradient norm",
        epilog=PLOT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("job_id")
    p.add_argument("-o", "--output", help="the picture to write (default: JOB_ID.png)")
    p.add_argument("--title", help="a title above the plots (default: the model and job)")


def cmd_plot(args: argparse.Namespace, client: LMClient) -> int:
    try:
        plots.require_matplotlib()  # before any call: the fix is an install, not a retry
    except plots.PlotDependencyError as err:
        eprint(f"error: {err}")
        return 1
    picture = plots.picture_path(args.output or f"{args.job_id}.png")  # before any call
    job = client.job(args.job_id)
    progress = progress_so_far(client, job)
    if not progress:
        eprint(f"error: job {args.job_id} has no progress events yet (it is {job.state})")
        return 1
    title = args.title or f"model {job.model_id}, job {job.job_id} ({job.state})"
    path = plots.plot_training(progress, picture, title)
    if not job.done:
        last = progress[-1]
        eprint(f"job {job.job_id} is {job.state}: drawn up to step {last.step}/{last.total_steps}")
    print(path)
    return 0


def progress_so_far(client: LMClient, job: TrainingJob) -> list[TrainingProgress]:
    """The progress reports of ``job`` (a record read a moment ago) so far, without waiting
    for a running job. WatchTrainingJob replays a job's events, then follows the job until
    it ends: an ended job's stream ends by itself; a running job's is closed once it reaches
    the record's latest report (the server appends each report to the events before it
    updates the record, so the replay holds it already)."""
    reports: list[TrainingProgress] = []
    if not job.done and job.progress is None:  # queued, or no step reported yet
        return reports
    with closing(client.watch(job.job_id)) as stream:
        for event in stream:
            if event.progress is None:
                continue
            reports.append(event.progress)
            if not job.done and event.progress == job.progress:
                break
    return reports
