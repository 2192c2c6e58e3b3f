"""Read and write n-best lists, keeping every line's bytes: pure Python, no gRPC.

Two formats:

* **Moses**: ``id ||| hypothesis ||| features ||| total [||| more fields]``, with features
  such as ``LM0= -12.3 TM0= -1 -2.5`` (a name ending in ``=``, or the older ``:``, followed
  by numbers; a sparse ``name=value`` is read too). Fields after the total are kept as they
  are. A blank line is passed through, unscored.
* **Plain**: one hypothesis a line, optionally prefixed by ``id<TAB>`` (an id holds no
  whitespace). Lines without an id all have the id ``""``, so a file of bare lines is one
  n-best list (the candidates for one sentence). An empty line is an empty hypothesis.

Consecutive lines with the same id form a group: the n-best list of one source sentence.
Writing a rescored line inserts the new feature at the end of the feature field (Moses:
``... TM0= -1 -2.5 RNNLM0= -23.456 ||| ...``; plain: a TAB and the value at the end) and,
only when asked, rewrites the total; every other byte, line endings (LF or CRLF) included,
stays as read. Read files in binary mode (or text mode with ``newline=""``): universal
newlines would turn CRLF into LF.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import IO, Any

MOSES, PLAIN = "moses", "plain"
FORMATS = ("auto", MOSES, PLAIN)
SEPARATOR = "|||"
_QUOTE_CHARS = 40
_BLANK = " \t"
BOM = "\ufeff"


class NBestFormatError(ValueError):
    """A line that does not parse; ``line_no`` is 1-based."""

    def __init__(self, line_no: int, text: str, problem: str) -> None:
        shown = text if len(text) <= _QUOTE_CHARS else text[:_QUOTE_CHARS] + "..."
        super().__init__(f"line {line_no}: {problem}: {shown!r}")
        self.line_no = line_no


Features = tuple[tuple[str, tuple[float, ...]], ...]


@dataclass(frozen=True)
class NBestEntry:
    """One line of an n-best list.

    ``hypothesis`` is ``None`` for a blank line of a Moses file (written back unchanged,
    never scored). ``total`` is the Moses total score (0 for plain lines). ``group`` numbers
    the runs of consecutive lines with the same id. ``text`` is the line as read, without
    its ``ending`` ("\\n", "\\r\\n" or "" for a last line without one).
    """

    line_no: int
    group: int
    id: str
    hypothesis: str | None
    total: float
    features: Features
    text: str
    ending: str
    format: str
    insert_at: int  # where in ``text`` a new feature goes
    total_span: tuple[int, int] = (0, 0)  # where the total's number is in ``text`` (Moses)

    @property
    def scored(self) -> bool:
        return self.hypothesis is not None

    def feature(self, name: str) -> tuple[float, ...] | None:
        """The values of feature ``name``, or None when the line has none."""
        return next((values for n, values in self.features if n == name), None)


@dataclass(frozen=True)
class Rescored:
    """An entry with its new feature: ``value`` (None for a blank line) and ``total``, the
    entry's total plus weight times value, which re-ranking sorts by."""

    entry: NBestEntry
    feature: str
    value: float | None
    total: float

    def line(self, update_total: bool = False) -> str:
        """The output line, ending included: the input line with the feature inserted (and
        the total replaced by ``total`` when ``update_total``), byte for byte otherwise."""
        e = self.entry
        if self.value is None:
            return e.text + e.ending
        if e.format == PLAIN:
            if update_total:
                raise ValueError("a plain n-best list has no total to update")
            return f"{e.text}\t{format_number(self.value)}{e.ending}"
        text = e.text
        if update_total:
            start, end = e.total_span
            text = text[:start] + format_number(self.total) + text[end:]
        added = f" {self.feature}= {format_number(self.value)}"
        if text[e.insert_at : e.insert_at + 1] == "|":  # keep a space before the next |||
            added += " "
        return text[: e.insert_at] + added + text[e.insert_at :] + e.ending


def format_number(value: float) -> str:
    """At most 6 decimals, no trailing zeros: -23.456, 12, -0.000001."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def check_feature_name(name: str) -> str:
    """``name`` if it can be written as ``name=`` without breaking the Moses line."""
    bad = not name or not name.isprintable() or any(c.isspace() or c in "|=:" for c in name)
    if bad:
        raise ValueError(
            f"feature name {name!r} is not allowed: use a non-empty name without whitespace, "
            "'|', '=' or ':' (e.g. RNNLM0)"
        )
    return name


def rescored(
    entry: NBestEntry, feature: str, value: float | None, weight: float | None
) -> Rescored:
    """The :class:`Rescored` of ``entry``; refuses a line that has ``feature`` already."""
    if entry.feature(feature) is not None:
        raise NBestFormatError(
            entry.line_no, entry.text, f"the line has a {feature} feature already; choose another"
        )
    bonus = 0.0 if value is None or weight is None else weight * value
    return Rescored(entry, feature, value, entry.total + bonus)


def rerank(group: list[Rescored]) -> list[Rescored]:
    """A group best first by ``total``; equal totals keep their order (the sort is stable)."""
    return sorted(group, key=lambda r: -r.total)


# -- reading ---------------------------------------------------------------------------


def read_nbest(
    source: str | Iterable[str] | Iterable[bytes], format: str = "auto"
) -> Iterator[NBestEntry]:
    """The entries of an n-best list, read lazily.

    ``source`` is the whole text (a str), or lines with their endings: str, or bytes (a file
    opened in binary mode), decoded as UTF-8. ``format`` is "auto" (Moses when the first
    non-blank line has ``|||``), "moses" or "plain". Raises :class:`NBestFormatError`.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    if isinstance(source, str):
        # Lines end at "\n" only: a form feed or a Unicode separator may be in a hypothesis.
        source = io.StringIO(source, newline="\n")
    return _entries(_decoded(iter(source)), format)


def parse_nbest(
    source: str | Iterable[str] | Iterable[bytes], format: str = "auto"
) -> list[NBestEntry]:
    """:func:`read_nbest` as a list."""
    return list(read_nbest(source, format))


def write_nbest(out: IO[Any], items: Iterable[Rescored], update_total: bool = False) -> int:
    """Write rescored lines to a text file (opened with ``newline=""``) or a binary one;
    returns how many were written."""
    binary = not isinstance(out, io.TextIOBase)
    count = 0
    for count, item in enumerate(items, 1):  # noqa: B007 (the count is the result)
        text = item.line(update_total)
        out.write(text.encode() if binary else text)
    return count


def _decoded(lines: Iterator[str | bytes]) -> Iterator[tuple[int, str]]:
    for line_no, line in enumerate(lines, 1):
        yield line_no, line if isinstance(line, str) else _utf8(line, line_no)


def _utf8(line: bytes, line_no: int) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        shown = line.decode("utf-8", "replace")
        raise NBestFormatError(line_no, shown, f"not UTF-8 ({err.reason})") from None


def _entries(lines: Iterator[tuple[int, str]], format: str) -> Iterator[NBestEntry]:
    if format == "auto":
        peeked: list[tuple[int, str]] = []
        for item in lines:
            peeked.append(item)
            if item[1].strip():
                break
        format = MOSES if peeked and SEPARATOR in peeked[-1][1] else PLAIN
        lines = chain(peeked, lines)
    parse = _parse_moses if format == MOSES else _parse_plain
    group, last_id = -1, None
    for line_no, raw in lines:
        text, ending = _ending(raw)
        bom = 1 if line_no == 1 and text.startswith(BOM) else 0  # kept, but not in the id
        entry_id, fields = parse(line_no, text[bom:])
        if bom:
            fields["insert_at"] += bom
            fields["total_span"] = tuple(i + bom for i in fields.get("total_span", (0, 0)))
        if entry_id != last_id or entry_id is None:  # a blank Moses line is its own group
            group, last_id = group + 1, entry_id
        yield NBestEntry(line_no, group, entry_id or "", text=text, ending=ending, **fields)


def _ending(line: str) -> tuple[str, str]:
    ending = "\r\n" if line.endswith("\r\n") else "\n" if line.endswith("\n") else ""
    return line.removesuffix(ending), ending


def _parse_plain(line_no: int, text: str) -> tuple[str, dict]:
    head, tab, rest = text.partition("\t")
    has_id = bool(tab and head) and not any(c.isspace() for c in head)
    fields = {
        "hypothesis": rest if has_id else text,
        "total": 0.0,
        "features": (),
        "format": PLAIN,
        "insert_at": len(text),
    }
    return (head if has_id else ""), fields


def _parse_moses(line_no: int, text: str) -> tuple[str | None, dict]:
    if not text.strip():
        blank = {"hypothesis": None, "total": 0.0, "features": (), "insert_at": len(text)}
        return None, {**blank, "format": MOSES}
    parts = text.split(SEPARATOR)
    if len(parts) < 4:
        found = f"{len(parts)} field(s)"
        raise NBestFormatError(
            line_no, text, f"expected 'id ||| hypothesis ||| features ||| total', got {found}"
        )
    entry_id = parts[0].strip(_BLANK)
    if not entry_id:
        raise NBestFormatError(line_no, text, "the id (first field) is empty")
    feature_start = len(parts[0]) + len(parts[1]) + 2 * len(SEPARATOR)
    total_start = feature_start + len(parts[2]) + len(SEPARATOR)
    number = parts[3].strip(_BLANK)
    lead = len(parts[3]) - len(parts[3].lstrip(_BLANK))
    return entry_id, {
        "hypothesis": parts[1].strip(_BLANK),
        "total": _number(number, line_no, text, "the total"),
        "features": _features(parts[2], line_no, text),
        "format": MOSES,
        "insert_at": feature_start + len(parts[2].rstrip(_BLANK)),
        "total_span": (total_start + lead, total_start + lead + len(number)),
    }


def _features(field: str, line_no: int, text: str) -> Features:
    """``LM0= -1.5 TM0= -1 -2 d: 0 sparse_x=1``; numbers before any name get the name ""."""
    found: list[tuple[str, tuple[float, ...]]] = []
    name: str | None = None
    values: list[float] = []

    def close() -> None:  # the feature read so far, if any
        if name is not None or values:
            found.append((name or "", tuple(values)))

    for token in field.split():
        if len(token) > 1 and token[-1] in "=:":
            close()
            name, values = token[:-1], []
        elif "=" in token[1:]:  # a sparse feature, name and value in one token
            close()
            key, _, value = token.rpartition("=")
            found.append((key, (_number(value, line_no, text, f"feature {key}"),)))
            name, values = None, []
        else:
            values.append(_number(token, line_no, text, f"feature {name or '(unnamed)'}"))
    close()
    return tuple(found)


def _number(token: str, line_no: int, text: str, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise NBestFormatError(line_no, text, f"{what}: {token!r} is not a number") from None
