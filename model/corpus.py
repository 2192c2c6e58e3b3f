"""Training text: plain text or a CSV column, split into paragraphs.

Paragraphs are the units Punkt splits into sentences. By default a blank line separates
paragraphs and single newlines inside one are line wrapping (prose, WikiText); with
``paragraphs="line"`` every line stands alone (verse, one-sentence-per-line files).

``resolve_sentence_mode`` decides what ``ModelConfig.sentences="auto"`` means for a corpus:
one sentence a line for MT and speech data (a file with no or hardly any blank lines), Punkt
sentences for prose and CSV rows.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from rnnlm.model.checks import one_of, read_file

PARAGRAPH_MODES = ("blank-line", "line")
LAYOUTS = (*PARAGRAPH_MODES, "csv")  # how a Corpus's paragraphs were cut from its source
# "auto" reads text as one sentence a line when there is less than one blank-line paragraph
# per this many lines: MT and speech files have no blank lines, prose has one every few lines.
LINES_PER_PARAGRAPH_FOR_LINES = 20
_BLANK_LINE = re.compile(r"\n\s*\n")
# Long reddit comments exceed the csv module's default 128 KiB field limit.
csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))


class MissingColumn(ValueError):
    """A CSV corpus without the column asked for. The message lists the header's names (for
    a local user); a service, whose caller may not see the file, says ``columns`` instead."""

    def __init__(self, message: str, column: str, columns: int) -> None:
        super().__init__(message)
        self.column, self.columns = column, columns


@dataclass(frozen=True)
class Corpus:
    """A list of paragraphs of raw text. Build it with one of the ``from_*`` constructors."""

    paragraphs: tuple[str, ...]
    layout: str = "blank-line"  # LAYOUTS: what a paragraph is, for sentences="auto"

    def __post_init__(self) -> None:
        one_of(LAYOUTS).check("corpus layout", self.layout)
        if not any(p.strip() for p in self.paragraphs):
            raise ValueError(
                "corpus is empty or only whitespace; give at least one sentence of text"
            )

    @classmethod
    def from_text(cls, text: str, *, paragraphs: str = "blank-line") -> Corpus:
        one_of(PARAGRAPH_MODES).check("corpus.paragraphs", paragraphs)
        if not isinstance(text, str):
            raise ValueError(f"corpus text must be str, got {type(text).__name__}")
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        pieces = text.split("\n") if paragraphs == "line" else _BLANK_LINE.split(text)
        return cls(tuple(p.strip() for p in pieces if p.strip()), paragraphs)

    @classmethod
    def from_csv_text(cls, text: str, *, column: str = "body") -> Corpus:
        """One paragraph per CSV row, taken from ``column`` (the reddit dump uses 'body')."""
        reader = csv.DictReader(io.StringIO(text))
        try:
            if reader.fieldnames is None or column not in reader.fieldnames:
                found = ", ".join(reader.fieldnames or []) or "none"
                raise MissingColumn(
                    f"corpus CSV has no column {column!r}; columns found: {found}",
                    column,
                    len(reader.fieldnames or []),
                )
            rows = [(row[column] or "").strip() for row in reader]
        except csv.Error as err:
            raise ValueError(f"corpus CSV is malformed at line {reader.line_num}: {err}") from None
        return cls(tuple(r for r in rows if r), "csv")

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        format: str = "text",
        column: str = "body",
        paragraphs: str = "blank-line",
        source: str = "the corpus",
    ) -> Corpus:
        """Decode UTF-8 bytes (``format`` 'text' or 'csv'), with errors that name ``source``."""
        one_of(("text", "csv")).check("corpus.format", format)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{source} is not valid UTF-8 (byte {err.start}: "
                f"{data[err.start : err.start + 1]!r}); save it as UTF-8 text"
            ) from None
        if format == "csv":
            return cls.from_csv_text(text, column=column)
        return cls.from_text(text, paragraphs=paragraphs)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        format: str = "auto",
        column: str = "body",
        paragraphs: str = "blank-line",
    ) -> Corpus:
        """Read a UTF-8 file; ``format='auto'`` treats ``*.csv`` as CSV, anything else as text."""
        path = Path(path)
        if format == "auto":
            format = "csv" if path.suffix.lower() == ".csv" else "text"
        data = read_file(path, "corpus")
        return cls.from_bytes(
            data, format=format, column=column, paragraphs=paragraphs, source=f"file {str(path)!r}"
        )

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs)

    def __len__(self) -> int:
        return len(self.paragraphs)


def resolve_sentence_mode(corpus: Corpus, requested: str) -> tuple[str, str]:
    """The sentence mode ("split" or "line") to read ``corpus`` with, and why (for the log).

    ``requested`` is ``ModelConfig.sentences``; only "auto" looks at the corpus.
    """
    if requested != "auto":
        return requested, f"sentences={requested!r}"
    if corpus.layout == "csv":
        return "split", "a CSV corpus, one paragraph per row"
    if corpus.layout == "line":
        return "line", "paragraphs='line'"
    lines = sum(p.count("\n") + 1 for p in corpus.paragraphs)
    paragraphs = len(corpus.paragraphs)
    if lines == 1:
        return "split", "a single line of text"
    if paragraphs == 1:
        return "line", "no blank lines"
    if paragraphs * LINES_PER_PARAGRAPH_FOR_LINES < lines:
        return "line", f"only {paragraphs:,} blank-line paragraphs in {lines:,} lines"
    return "split", f"{paragraphs:,} blank-line paragraphs in {lines:,} lines"
