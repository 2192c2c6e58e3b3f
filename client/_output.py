"""What the CLI (and the demo) print: training progress, tables, JSON, streamed sentences."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, TextIO

from rnnlm.client.sync import LMClient
from rnnlm.client.types import (
    SENTENCE_END,
    SUCCESS_JOB_STATES,
    Corpus,
    GeneratedToken,
    ModelInfo,
    SentenceScore,
    TrainingEvent,
    TrainingJob,
    TrainingProgress,
)


def duration(seconds: float) -> str:
    """42s, 3m05s, 1h02m."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(p: TrainingProgress) -> str:
    parts = [f"epoch {p.epoch}/{p.epochs}", f"step {p.step}/{p.total_steps}"]
    parts += [f"loss {p.loss:.3f}", f"ppl {p.perplexity:.1f}"]
    if p.valid_perplexity is not None:
        parts.append(f"valid ppl {p.valid_perplexity:.1f}")
    parts += [f"{p.tokens_per_second:,.0f} tok/s", f"lr {p.learning_rate:.3g}"]
    if p.kind != "epoch":
        parts.append(f"ETA {duration(p.eta_seconds)}")
    return "  ".join(parts)


class ProgressView:
    """Training events on a terminal: step progress redrawn on one line (``\\r``) when the
    stream is a TTY, so the screen does not scroll; epoch ends, checkpoints and state
    changes always get a line of their own. Not a TTY (a log file): one line per event."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._open = False  # a redrawn line is on screen without its newline

    def line(self, text: str) -> None:
        self.out.write(("\r\x1b[K" if self._open else "") + text + "\n")
        self.out.flush()
        self._open = False

    def event(self, ev: TrainingEvent) -> None:
        if ev.kind == "progress" and ev.progress is not None:
            text = progress_line(ev.progress)
            if ev.progress.kind == "epoch":
                self.line(f"end of {text}")
            elif self.tty:
                self.out.write("\r" + text + "\x1b[K")
                self.out.flush()
                self._open = True
            else:
                self.line(text)
        elif ev.kind == "checkpoint":
            self.line(f"checkpoint written at step {ev.checkpoint_step}")
        elif ev.kind == "state":
            extra = f": {ev.error}" if ev.error else ""
            version = f" (model version {ev.model_version})" if ev.model_version else ""
            self.line(f"job {ev.state}{version}{extra}")

    def close(self) -> None:
        if self._open:
            self.line("")


def follow_job(
    client: LMClient, job_id: str, *, after_event_id: str | None = None, out: TextIO | None = None
) -> TrainingJob:
    """Show a job's events until it ends; returns the job as it finally stands. A
    ``KeyboardInterrupt`` propagates (the watch is cancelled, the job is not)."""
    view = ProgressView(out or sys.stderr)
    try:
        for ev in client.watch(job_id, after_event_id=after_event_id):
            view.event(ev)
    finally:
        view.close()
    return client.job(job_id)


def watch_and_report(client: LMClient, job_id: str, after: str | None = None) -> int:
    """Follow a job to its end; 0 when it published a model, 1 otherwise, 130 on Ctrl-C."""
    eprint(f"watching job {job_id} (Ctrl-C detaches; the job keeps running)")
    try:
        job = follow_job(client, job_id, after_event_id=after)
    except KeyboardInterrupt:
        eprint(
            f"detached; the job keeps running: rnnlm job {job_id} / "
            f"watch with: rnnlm watch {job_id}"
        )
        return 130
    for warning in job.warnings:
        eprint(f"warning: {warning}")
    if job.state in SUCCESS_JOB_STATES:
        eprint(f"model {job.model_id} version {job.model_version} is ready")
        return 0
    eprint(f"job {job.job_id} is {job.state}" + (f": {job.error}" if job.error else ""))
    return 1


def eprint(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Collection[int] = ()
) -> str:
    """A plain text table; the columns numbered in ``right`` align right (numbers), the
    last column is never padded (free text)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        padded = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r[:-1], widths))
        ]
        lines.append("  ".join([*padded, r[-1]]).rstrip())
    return "\n".join(lines)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(obj: Any, *, indent: int | None = None, **extra: Any) -> str:
    """A result dataclass as one JSON object (datetimes in ISO 8601), ``extra`` keys first."""
    data = {**extra, **dataclasses.asdict(obj)}
    return json.dumps(data, default=_json_default, indent=indent, ensure_ascii=False)


def scores_table(
    scores: Sequence[SentenceScore],
    sentences: Sequence[str],
    *,
    ranked: bool,
    tokens: bool,
    rank_score: bool = False,
) -> str:
    """Score rows (rank first when ranked; ``rank_score``, the length-normalised score,
    after log10 p); with ``tokens``, each sentence's per-token log-probabilities below it."""
    headers = ["rank", "#"] if ranked else ["#"]
    headers += ["log10 p", *(["rank score"] if rank_score else []), "ppl", "unk", "sentence"]
    out = []
    for r, s in enumerate(scores, 1):
        text = sentences[s.index] if 0 <= s.index < len(sentences) else " ".join(s.words)
        row: list[object] = [r, s.index] if ranked else [s.index]
        row.append(f"{s.log10prob:.3f}")
        row += [f"{s.rank_score:.4f}"] if rank_score else []
        out.append([*row, f"{s.perplexity:.1f}", len(s.unknown_words), text])
    rendered = table(headers, out, right=range(len(headers) - 1)).splitlines()
    if not tokens:
        return "\n".join(rendered)
    lines = [rendered[0]]
    for row_text, s in zip(rendered[1:], scores):
        lines.append(row_text)
        for t in s.tokens:
            order = f"  {t.ngram_order}-gram" if t.ngram_order else ""
            unknown = "  unknown" if t.unknown else ""
            lines.append(f"      {t.token:<20} ln p {t.logprob:8.3f}{order}{unknown}")
    return "\n".join(lines)


def models_table(models: Sequence[ModelInfo]) -> str:
    rows = []
    for m in models:
        current = m.current
        ppl = current.valid_perplexity if current is not None else None
        rows.append(
            [
                m.model_id,
                m.state,
                m.current_version or "-",
                m.config.get("cell", "-"),
                m.vocabulary_size or "-",
                f"{ppl:.1f}" if ppl is not None else "-",
            ]
        )
    return table(["id", "state", "version", "cell", "vocab", "valid ppl"], rows, right=(2, 4, 5))


def jobs_table(jobs: Sequence[TrainingJob]) -> str:
    rows = []
    for j in jobs:
        p = j.progress
        created = j.created_at.strftime("%Y-%m-%d %H:%M:%S") if j.created_at else "-"
        rows.append(
            [
                j.job_id,
                j.model_id,
                j.state,
                f"{p.epoch}/{p.epochs}" if p else "-",
                f"{p.step}/{p.total_steps}" if p else "-",
                f"{p.loss:.3f}" if p else "-",
                created,
            ]
        )
    return table(
        ["job", "model", "state", "epoch", "step", "loss", "created"], rows, right=(3, 4, 5)
    )


def corpora_table(corpora: Sequence[Corpus]) -> str:
    rows = [
        [
            c.corpus_id,
            f"{c.size_bytes:,}",
            c.created_at.strftime("%Y-%m-%d %H:%M:%S") if c.created_at else "-",
            c.filename,
        ]
        for c in corpora
    ]
    return table(["corpus", "bytes", "uploaded", "file"], rows, right=(1,))


class SentencePrinter:
    """Prints streamed tokens as text: words joined by spaces as they arrive, a newline
    at each sentence's end. Sentences may arrive interleaved; later ones are held back
    until the one on screen ends, so lines never mix."""

    def __init__(self, out: TextIO, prompt: str | None = None) -> None:
        self.out = out
        self.prompt = prompt or ""
        self._current = 0
        self._held: dict[int, list[GeneratedToken]] = {}
        self._line_open = False
        self._column = 0  # words on the current line

    def add(self, token: GeneratedToken) -> None:
        self._held.setdefault(token.sentence, []).append(token)
        while self._current in self._held:
            if not self._write(self._held.pop(self._current)):
                break
            self._current += 1

    def close(self) -> None:
        """Print what is held (sentences cut off by an error) and end the last line."""
        for index in sorted(self._held):
            self._write(self._held.pop(index))
        if self._line_open:
            self._newline()

    def _write(self, tokens: list[GeneratedToken]) -> bool:
        """Print tokens of one sentence; True when its last token was among them."""
        for t in tokens:
            if not self._line_open:
                self.out.write(self.prompt)
                self._line_open = True
            if t.token != SENTENCE_END:
                sep = " " if self.prompt or self._column else ""
                self.out.write(sep + t.token)
                self._column += 1
            if t.finish_reason:
                self._newline()
                return True
        self.out.flush()
        return False

    def _newline(self) -> None:
        self.out.write("\n")
        self.out.flush()
        self._line_open, self._column = False, 0
