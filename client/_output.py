"""What the CLI (and the demo) print: training progress, tables, JSON, streamed sentences."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TextIO

from rnnlm.client.types import (
    SENTENCE_END,
    Corpus,
    GeneratedToken,
    ModelInfo,
    SentenceScore,
    TrainingJob,
    TrainingProgress,
)


def eprint(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def say(as_json: bool, text: str, result: Any) -> None:
    """A command's result: ``text`` for people, or ``result`` (a result dataclass or a dict)
    as one JSON object for scripts."""
    if not as_json:
        print(text, flush=True)
    elif dataclasses.is_dataclass(result):
        print(to_json(result), flush=True)
    else:
        print(json.dumps(result, default=_json_default, ensure_ascii=False), flush=True)


def print_listing(items: Sequence[Any], as_json: bool, render: Callable[[Any], str]) -> int:
    """A listing as a table (``render``), or one JSON object a line; a warning names the
    stored records the server could not read (a ``Listing``'s ``unreadable_ids``)."""
    for line in [to_json(i) for i in items] if as_json else [render(items)]:
        print(line)
    if unreadable := getattr(items, "unreadable_ids", ()):
        eprint(
            f"warning: the server cannot read {len(unreadable)} stored record(s), left out: "
            + ", ".join(unreadable)
        )
    return 0


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


def plural(count: int, noun: str) -> str:
    """1 version, 2 versions."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def _settings(config: dict[str, Any]) -> str:
    def shown(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    return ", ".join(f"{k} {shown(v)}" for k, v in config.items() if v is not None)


def fields_view(rows: Sequence[tuple[str, Any]]) -> str:
    """``name  value`` lines, the names padded to one width; rows without a value left out."""
    shown = [(name, str(value)) for name, value in rows if value not in (None, "", ())]
    width = max(len(name) for name, _ in shown)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in shown)


def job_view(job: TrainingJob) -> str:
    """``rnnlm job``: one job for a person (``--json`` gives every field)."""
    p = job.progress
    state = job.state + (f" ({job.phase})" if job.phase else "")
    if job.model_version:
        state += f", published version {job.model_version}"
    return fields_view(
        [
            ("job", job.job_id),
            ("model", job.model_id),
            ("state", state),
            ("error", job.error),
            ("progress", progress_summary(p) if p else "not started"),
            ("checkpoint", f"step {job.checkpoint_step}" if job.checkpoint_step else None),
            ("corpus", job.corpus_id),
            ("created", _when(job.created_at)),
            ("updated", _when(job.updated_at)),
            ("model config", _settings(job.model_config)),
            ("training", _settings(job.training)),
            *[("warning", w) for w in job.warnings],
        ]
    )


def progress_summary(p: TrainingProgress) -> str:
    """A job's last progress in one line (epoch, step, loss, perplexities)."""
    parts = [f"epoch {p.epoch}/{p.epochs}", f"step {p.step}/{p.total_steps}"]
    parts += [f"loss {p.loss:.3f}", f"ppl {p.perplexity:.1f}"]
    if p.valid_perplexity is not None:
        parts.append(f"valid ppl {p.valid_perplexity:.1f}")
    return "  ".join(parts)


def model_view(model: ModelInfo) -> str:
    """``rnnlm model``: one model for a person, its versions newest first."""
    training = f" (job {model.active_job_id} training it)" if model.active_job_id else ""
    words = model.vocabulary_size
    head = fields_view(
        [
            ("model", model.model_id),
            ("state", model.state + training),
            ("current version", model.current_version or "none"),
            ("vocabulary", plural(words, "word") if words else None),
            ("config", _settings(model.config)),
            ("training", _settings(model.training)),
            ("created", _when(model.created_at)),
            ("updated", _when(model.updated_at)),
        ]
    )
    if not model.versions:
        return head + "\nno versions yet"
    rows = [
        [
            v.version,
            _when(v.created_at),
            v.training_status,
            v.epochs_trained,
            f"{v.valid_perplexity:.1f}" if v.valid_perplexity is not None else "-",
            f"{v.ngram_order}-gram, weight {v.neural_weight:.3g}" if v.ngram_order else "none",
            v.job_id or "-",
        ]
        for v in model.versions
    ]
    headers = ["version", "created", "status", "epochs", "valid ppl", "n-gram part", "job"]
    versions = table(headers, rows, right=(0, 3, 4))
    vocabulary = f"\nvocabulary: {' '.join(model.vocabulary)}" if model.vocabulary else ""
    return f"{head}\n\n{versions}{vocabulary}"
