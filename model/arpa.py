"""ARPA back-off language model files, read and written as the arrays of ``ngram.py``.

    \\data\\
    ngram 1=V
    ngram 2=...

    \\1-grams:
    log10prob<TAB>word[<TAB>log10backoff]
    ...
    \\end\\

The arrays are ``keys``, ``logp`` and ``backoff`` by order, as ``NgramModel`` keeps them.
The special tokens are written <unk>, <s>, </s>, as KenLM and SRILM spell them.
"""

from __future__ import annotations

import contextlib
import gc
import math
import re
from collections.abc import Iterable, Iterator
from typing import TextIO

import numpy as np

from rnnlm.model.config import MAX_NGRAM_ORDER
from rnnlm.model.vocab import SPECIAL_TOKENS, UNK_ID

LN10 = math.log(10.0)
ARPA_SPECIALS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2
# KenLM gives a missing <unk> log10 probability -100.
MISSING_UNK_LOG10 = -100.0


# ---------------------------------------------------------------------------------------
# Writing


def _arpa_names(vocab: list[str]) -> list[str]:
    """The vocabulary as ARPA words: specials renamed, the rest checked to survive split()."""
    names = [*ARPA_SPECIALS, *vocab[len(ARPA_SPECIALS) :]]
    for i, word in enumerate(names[len(ARPA_SPECIALS) :], start=len(ARPA_SPECIALS)):
        if word.split() != [word] or word in ARPA_SPECIALS:
            raise ValueError(f"word {i} ({word!r}) cannot be written as an ARPA word")
    return names


def write(out: TextIO, vocab: list[str], keys: list, logp: list, backoff: list) -> None:
    order, size = len(logp) - 1, len(vocab)
    names = _arpa_names(vocab)
    out.write("\\data\\\n")
    for k in range(1, order + 1):
        out.write(f"ngram {k}={len(logp[k])}\n")
    text = names  # text[i]: the words of the i-th n-gram of the current order
    for k in range(1, order + 1):
        if k >= 2:
            prefix, last = (keys[k] // size).tolist(), (keys[k] % size).tolist()
            text = [f"{text[p]} {names[w]}" for p, w in zip(prefix, last)]
        out.write(f"\n\\{k}-grams:\n")
        probs = (logp[k] / LN10).tolist()
        if k == order:
            out.writelines(f"{p:.7f}\t{t}\n" for p, t in zip(probs, text))
            continue
        # A context must carry its backoff even when it is 0: KenLM reads a missing backoff
        # as "no longer n-gram starts here" and would then stop matching early.
        is_context = np.zeros(len(probs), dtype=bool)
        is_context[keys[k + 1] // size] = True
        bows = (backoff[k] / LN10).tolist()
        out.writelines(
            f"{p:.7f}\t{t}\t{b:.7f}\n" if c else f"{p:.7f}\t{t}\n"
            for p, t, b, c in zip(probs, text, bows, is_context.tolist())
        )
    out.write("\n\\end\\\n")


# ---------------------------------------------------------------------------------------
# Reading


def _quote(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


class _Lines:
    """Numbered, stripped lines with one-line look-ahead and uniform error messages."""

    def __init__(self, lines: Iterable[str]):
        self._it: Iterator[tuple[int, str]] = enumerate(lines, start=1)
        # The current line; text None at end of file.
        self.number: int = 0
        self.text: str | None = None
        self.advance()

    def advance(self) -> None:
        for number, raw in self._it:
            self.number, self.text = number, raw.strip()
            return
        self.number, self.text = self.number + 1, None

    def error(self, expected: str) -> ValueError:
        got = "end of file" if self.text is None else _quote(self.text)
        return ValueError(f"line {self.number}: expected {expected}, got {got}")

    def expect(self, literal: str) -> None:
        while self.text == "":  # blank lines
            self.advance()
        if self.text != literal:
            raise self.error(repr(literal))
        self.advance()

    def take(self, count: int, what: str) -> tuple[list[str], list[int]]:
        """The next ``count`` non-blank lines, none of them a section header; their numbers.
        One tight loop: sections hold most of a file's lines."""
        rows: list[str] = []
        numbers: list[int] = []
        text, number = self.text, self.number
        while len(rows) < count:
            if text is None or text.startswith("\\"):
                self.text, self.number = text, number
                raise self.error(f"{what} {len(rows) + 1} of {count} (the count in \\data\\)")
            if text:
                rows.append(text)
                numbers.append(number)
            number, raw = next(self._it, (number + 1, None))
            text = raw if raw is None else raw.strip()
        self.text, self.number = text, number
        return rows, numbers


_COUNT = re.compile(r"ngram\s+(\d+)\s*=\s*(\d+)")


def _read_counts(lines: _Lines, max_order: int) -> list[int]:
    """The ``ngram k=count`` lines after \\data\\; counts[k - 1] is the count of order k."""
    counts: list[int] = []
    while lines.text and not lines.text.startswith("\\"):
        match = _COUNT.fullmatch(lines.text)
        if not match or int(match.group(1)) != len(counts) + 1:
            raise lines.error(f"'ngram {len(counts) + 1}=<count>'")
        if len(counts) + 1 > max_order:
            raise ValueError(
                f"line {lines.number}: order {len(counts) + 1} > max_order {max_order}"
            )
        counts.append(int(match.group(2)))
        lines.advance()
    if not counts:
        raise lines.error("'ngram 1=<count>'")
    return counts


def _numbers(fields: list[str], numbers: list[int], what: str, finite: bool) -> np.ndarray:
    """log10 values -> ln, shape (n,); a bad one is a ValueError naming its line."""
    try:
        values = np.array(fields, dtype=np.float64)
    except ValueError:
        values = np.array([_float_or_nan(f) for f in fields])
    bad = np.isnan(values) | (values > 0) | (~np.isfinite(values) if finite else False)
    if bad.any():
        i = int(np.argmax(bad))
        limit = "a finite" if finite else "a"
        raise ValueError(
            f"line {numbers[i]}: expected {limit} {what} <= 0, got {_quote(fields[i])}"
        )
    return values * LN10


def _float_or_nan(field: str) -> float:
    try:
        return float(field)
    except ValueError:
        return math.nan


def _read_section(lines: _Lines, k: int, count: int, highest: bool):
    """The n-grams of order k as (word lists, ln p, ln backoff, line numbers)."""
    lines.expect(f"\\{k}-grams:")
    rows, numbers = lines.take(count, f"{k}-gram")
    fields = [row.split() for row in rows]
    width = np.array([len(f) for f in fields], dtype=np.int64)  # (n,)
    bad = (width != k + 1) if highest else ((width < k + 1) | (width > k + 2))
    if bad.any():
        i = int(np.argmax(bad))
        layout = " ".join(["log10prob", *(f"w{j}" for j in range(1, k + 1))])
        want = f"{k + 1} fields '{layout}'"
        if not highest:
            want = f"{k + 1} or {k + 2} fields '{layout} [backoff]'"
        raise ValueError(f"line {numbers[i]}: expected {want}, got {width[i]}: {_quote(rows[i])}")
    probs = _numbers([f[0] for f in fields], numbers, "log10 probability", finite=False)
    bows = np.zeros(len(fields))
    with_bow = np.flatnonzero(width == k + 2)
    if with_bow.size:
        bows[with_bow] = _numbers(
            [fields[i][k + 1] for i in with_bow],
            [numbers[i] for i in with_bow],
            "log10 backoff",
            finite=True,
        )
    grams = [f[1 : k + 1] for f in fields]
    return grams, probs, bows, np.array(numbers, dtype=np.int64)


def _unigram_vocab(lines: _Lines, grams, numbers) -> tuple[list[str], dict[str, int], list[int]]:
    """Ids: <unk>, <s>, </s> are 0, 1, 2; the other words follow in file order."""
    index = {name: i for i, name in enumerate(ARPA_SPECIALS)}
    vocab, seen, ids = list(SPECIAL_TOKENS), set(), []
    for (word,), number in zip(grams, numbers):
        if word in seen:
            raise ValueError(f"line {number}: 1-gram {_quote(word)} is listed twice")
        if word in SPECIAL_TOKENS:
            raise ValueError(f"line {number}: the word {_quote(word)} is reserved for an id")
        seen.add(word)
        if word not in index:
            index[word] = len(vocab)
            vocab.append(word)
        ids.append(index[word])
    for name in ARPA_SPECIALS[1:]:
        if name not in seen:
            raise ValueError(f"line {lines.number}: the 1-grams lack {name}")
    return vocab, index, ids


def _ids(grams: list[list[str]], index: dict[str, int], numbers: np.ndarray, k: int):
    try:
        return np.array([[index[w] for w in gram] for gram in grams], dtype=np.int64).reshape(-1, k)
    except KeyError as err:
        bad = next(i for i, gram in enumerate(grams) if any(w not in index for w in gram))
        raise ValueError(
            f"line {numbers[bad]}: word {_quote(err.args[0])} is not among the 1-grams"
        ) from None


def _keys(ids: np.ndarray, keys: list, size: int, numbers: np.ndarray) -> np.ndarray:
    """Hierarchical keys of order k = ids.shape[1]; every prefix must be listed."""
    index = ids[:, 0]
    for j in range(2, ids.shape[1]):
        query = index * size + ids[:, j - 1]
        at = np.minimum(np.searchsorted(keys[j], query), max(len(keys[j]) - 1, 0))
        missing = np.flatnonzero(keys[j][at] != query) if len(keys[j]) else np.arange(len(at))
        if missing.size:
            raise ValueError(
                f"line {numbers[missing[0]]}: the prefix of this {ids.shape[1]}-gram is not "
                f"listed among the {j}-grams (prefixes of n-grams must be listed)"
            )
        index = at
    return index * size + ids[:, -1]


@contextlib.contextmanager
def _gc_paused():
    """Parsing makes a list per line, all kept: the cyclic collector would scan them again
    and again for nothing (it doubles the reading time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@_gc_paused()
def read(lines: Iterable[str] | TextIO, *, max_order: int = MAX_NGRAM_ORDER):
    """Parse an ARPA file into (order, vocab, keys, logp, backoff) (see the module doc)."""
    src = _Lines(lines)
    src.expect("\\data\\")
    counts = _read_counts(src, max_order)
    order = len(counts)
    # Indexed by n-gram order: order 0 (and keys' order 1, the unigram ids) hold nothing.
    keys: list[np.ndarray | None] = [None, None]
    logp: list[np.ndarray | None] = [None]
    backoff: list[np.ndarray | None] = [None]
    for k in range(1, order + 1):
        grams, lp, bow, numbers = _read_section(src, k, counts[k - 1], k == order)
        if k == 1:
            vocab, index, ids = _unigram_vocab(src, grams, numbers)
            size = len(vocab)
            p1, b1 = np.zeros(size), np.zeros(size)
            p1[UNK_ID] = MISSING_UNK_LOG10 * LN10  # replaced when the file lists <unk>
            p1[ids], b1[ids] = lp, bow
            logp.append(p1)
            if order > 1:
                backoff.append(b1)
            continue
        gram_keys = _keys(_ids(grams, index, numbers, k), keys, size, numbers)
        by_key = np.argsort(gram_keys, kind="stable")
        sorted_keys = gram_keys[by_key]
        twice = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        if twice.size:
            raise ValueError(f"line {numbers[by_key[twice[0] + 1]]}: this {k}-gram is listed twice")
        keys.append(sorted_keys)
        logp.append(lp[by_key])
        if k < order:
            backoff.append(bow[by_key])
    src.expect("\\end\\")
    return order, vocab, keys, logp, backoff
