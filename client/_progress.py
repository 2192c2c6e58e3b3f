"""Progress for the person at the terminal: tqdm bars for training jobs, uploads and
rescoring, plain lines where the output is not a terminal (a pipe, a log file)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm

from rnnlm.client._output import eprint, progress_summary, to_json
from rnnlm.client.errors import NotFound
from rnnlm.client.sync import LMClient
from rnnlm.client.types import SUCCESS_JOB_STATES, TrainingEvent, TrainingJob, TrainingProgress

# Redraws at most this often (seconds): a bar must not cost the work it shows.
BAR_INTERVAL_S = 0.25


def progress_bar(out: TextIO, *, total: int | None, unit: str, desc: str = "", **kw: Any) -> tqdm:
    """A tqdm bar on ``out`` when it is a terminal; elsewhere a disabled one (every call on
    it does nothing), so callers never ask which they have."""
    return tqdm(
        total=total,
        unit=unit,
        desc=desc or None,
        file=out,
        disable=not out.isatty(),
        mininterval=BAR_INTERVAL_S,
        dynamic_ncols=True,
        **kw,
    )


def bytes_bar(out: TextIO, total: int, desc: str) -> tqdm:
    """A bar over ``total`` bytes (shown as kB, MB, ...)."""
    return progress_bar(out, total=total, unit="B", desc=desc, unit_scale=True, unit_divisor=1024)


def duration(seconds: float) -> str:
    """42s, 3m05s, 1h02m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(p: TrainingProgress) -> str:
    line = f"{progress_summary(p)}  {p.tokens_per_second:,.0f} tok/s  lr {p.learning_rate:.3g}"
    return line if p.kind == "epoch" else f"{line}  ETA {duration(p.eta_seconds)}"


def _bar_postfix(p: TrainingProgress, valid_ppl: float | None) -> str:
    parts = [f"epoch {p.epoch}/{p.epochs}", f"loss {p.loss:.3f}", f"ppl {p.perplexity:.1f}"]
    if valid_ppl is not None:
        parts.append(f"valid ppl {valid_ppl:.1f}")
    return ", ".join([*parts, f"{p.tokens_per_second:,.0f} tok/s"])


class ProgressView:
    """A job's events for a person. On a terminal: a tqdm bar over the job's steps (rate
    and ETA, with the epoch, loss, perplexity, last validation perplexity and tokens/s
    beside it), and epoch ends, checkpoints and state changes printed above it as they
    come. Elsewhere (a pipe, a log file): one plain line per event."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._bar: tqdm | None = None
        self._valid_ppl: float | None = None

    def line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.out)  # above the bar, which is redrawn below
        else:
            self.out.write(text + "\n")
            self.out.flush()

    def event(self, ev: TrainingEvent) -> None:
        if ev.kind == "progress" and ev.progress is not None:
            p = self._valid(ev.progress)
            if self.tty:
                self._advance(p)
            if p.kind == "epoch":
                self.line(f"end of {progress_line(p)}")
            elif not self.tty:
                self.line(progress_line(p))
        elif ev.kind == "checkpoint":
            self.line(f"checkpoint written at step {ev.checkpoint_step}")
        elif ev.kind == "state":  # a failure's reason comes once, in the last line
            version = f" (model version {ev.model_version})" if ev.model_version else ""
            self.line(f"job {ev.state}{version}")

    def _valid(self, p: TrainingProgress) -> TrainingProgress:
        if p.valid_perplexity is not None:
            self._valid_ppl = p.valid_perplexity
        return p

    def _advance(self, p: TrainingProgress) -> None:
        if self._bar is None:  # joining a running job: the bar starts where the job is
            self._bar = tqdm(
                total=p.total_steps,
                initial=p.step,
                unit=" steps",
                desc="training",
                file=self.out,
                mininterval=BAR_INTERVAL_S,
                dynamic_ncols=True,
            )
        if p.total_steps != self._bar.total:  # a resumed job may have more epochs
            self._bar.total = p.total_steps
        self._bar.set_postfix_str(_bar_postfix(p, self._valid_ppl), refresh=False)
        self._bar.update(max(p.step - self._bar.n, 0))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def job_outcome(job: TrainingJob) -> str:
    """Why a job published no model, and what to type next."""
    if job.state == "cancelled":
        return f"job {job.job_id} was cancelled; rnnlm resume {job.job_id} continues it"
    if job.state == "interrupted":
        return (
            f"job {job.job_id} was interrupted ({job.error or 'its server stopped'}); "
            f"rnnlm resume {job.job_id} continues it from its last checkpoint"
        )
    return (
        f"job {job.job_id} {job.state}: {job.error}"
        if job.error
        else f"job {job.job_id} {job.state}"
    )


def follow_job(
    client: LMClient,
    job_id: str,
    *,
    after_event_id: str | None = None,
    out: TextIO | None = None,
    as_json: bool = False,
) -> TrainingJob:
    """Show a job's events until it ends (``as_json``: one JSON object a line on stdout);
    returns the job as it finally stands. A ``KeyboardInterrupt`` propagates (the watch is
    cancelled, the job is not)."""
    view = ProgressView(out or sys.stderr)
    try:
        for ev in client.watch(job_id, after_event_id=after_event_id):
            if as_json:
                print(to_json(ev), flush=True)
            else:
                view.event(ev)
    finally:
        view.close()
    return client.job(job_id)


def watch_and_report(
    client: LMClient, job_id: str, after: str | None = None, *, as_json: bool = False
) -> int:
    """Follow a job to its end; 0 when it published a model, 1 otherwise, 130 on Ctrl-C.
    ``as_json``: the events, then the final job, as JSON lines on stdout."""
    job = client.job(job_id)  # an unknown job is an error before anything else is said
    if job.done:
        eprint(f"job {job_id} has ended ({job.state}); its events:")
    else:
        eprint(f"watching job {job_id} (Ctrl-C detaches; the job keeps running)")
    try:
        job = follow_job(client, job_id, after_event_id=after, as_json=as_json)
    except KeyboardInterrupt:
        eprint(f"detached; the job keeps running: rnnlm job {job_id}; rnnlm watch {job_id}")
        return 130
    if as_json:
        print(to_json(job), flush=True)
    for warning in job.warnings:
        eprint(f"warning: {warning}")
    if job.state not in SUCCESS_JOB_STATES:
        eprint(f"error: {job_outcome(job)}")
        return 1
    try:
        client.model(job.model_id)
    except NotFound:  # a replayed job whose model is gone
        eprint(f"job {job.job_id} is {job.state}, but model {job.model_id} was deleted since")
        return 1
    eprint(f"model {job.model_id} version {job.model_version} is ready")
    return 0
