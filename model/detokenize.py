"""Words back to text: NLTK's Treebank detokenizer ("do n't" -> "don't", no space before
punctuation), replayed step for step but for the substitutions that cannot match.

NLTK runs ~27 regular-expression substitutions (each under a timeout) on every call; most
need a character or a word pair that a generated sentence lacks (a bracket, a quote, "can
not"), so checking for it first skips all but ~3 of them: the same text, 3-4x sooner.
Checked against NLTK on every line of the shared corpora and on generated word lists
(tests/model/test_text.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from nltk.tokenize.treebank import TreebankWordDetokenizer

_DETOKENIZER = TreebankWordDetokenizer()


def detokenize(words: list[str]) -> str:
    """Words back to readable text ("do n't" -> "don't", no space before punctuation):
    NLTK's Treebank detokenizer, step for step, skipping the rules that cannot match
    (``_RULE_NEEDS``): most generated sentences need 3 of its 27 substitutions."""
    text = f" {' '.join(words)} "
    folded = _folded(text)
    for pattern, pair in _CONTRACTION_STEPS:
        if folded is None or pair is None or pair in folded:
            undone = pattern.sub(r"\1\2", text)
            if undone != text:
                text, folded = undone, _folded(undone)
    text = _substitute(_ENDING_QUOTE_STEPS, text).strip()
    text = _substitute(_PUNCTUATION_STEPS, text)
    return _substitute(_STARTING_QUOTE_STEPS, text).strip()


# NLTK's detokenizer undoes CONTRACTIONS3, then CONTRACTIONS2 ("can not" -> "cannot").
_CONTRACTIONS_UNDONE = [
    *TreebankWordDetokenizer.CONTRACTIONS3,
    *TreebankWordDetokenizer.CONTRACTIONS2,
]


def _word_pair(pattern: str) -> str | None:
    """The two words a contraction pattern joins, as they stand in the text ("can not"
    for "(can)\\s(not)"), which every match holds where the only whitespace is spaces
    (lowercased: the patterns ignore case); None for a pattern not of that shape."""
    found = re.fullmatch(
        r"\(\?i\)(?: |\\b)\(([a-z']+)\)\\s\(([a-z']+)\)(?:\\b|\(\?=\\s\))", pattern
    )
    return f"{found[1]} {found[2]}" if found else None


def _folded(text: str) -> str | None:
    """``text`` lowercased, to look for a contraction's words in; None where a pattern
    ignoring case, or whitespace other than spaces, could match what a substring cannot
    (non-ASCII text, tabs): then every contraction pattern runs."""
    return text.lower() if text.isascii() and not _OTHER_SPACE.search(text) else None


_OTHER_SPACE = re.compile(r"[^\S ]")  # whitespace but the space
# What every match of NLTK's other detokenizer rules holds: one of these strings. A rule
# whose text holds none of them is skipped; a rule not listed (another NLTK) always runs.
_RULE_NEEDS: dict[str, tuple[str, ...]] = {
    r"([^' ])\s('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ": ("'",),
    r"([^' ])\s('[sS]|'[mM]|'[dD]|') ": ("'",),
    r"([^'\s])\s(\'\')": ("''",),
    r"([,.;:!?'])\s+(\"|\'\')": ('"', "''"),
    r"(\'\')\s([.,:)\]>};%])": ("''",),
    r"''": ("''",),
    r'([,.;:!?])"(\')': ('"',),
    r" -- ": (" -- ",),
    r"([\[\(\{\<])\s": ("[", "(", "{", "<"),
    r"\s([\]\)\}\>])": ("]", ")", "}", ">"),
    r"([\]\)\}\>])\s([:;,.])": ("]", ")", "}", ">"),
    r"([^'])\s'\s": ("'",),
    r"\s([?!])": ("?", "!"),
    r'([^\.])\s(\.)(?!\.)([\]\)}>"\']*)': (".",),
    r"([#$])\s": ("#", "$"),
    r"\s([;%])": (";", "%"),
    r"\s\.\.\.\s": ("...",),
    r"\s([:,])": (":", ","),
    r"([ (\[{<])\s``": ("``",),
    r"(``)\s": ("``",),
    r"``": ("``",),
}


def _steps(rules: Iterable[tuple[Any, str]]) -> list[tuple[Any, str, tuple[str, ...] | None]]:
    """NLTK's (pattern, replacement) ``rules``, each with what its matches need."""
    return [(p, replacement, _RULE_NEEDS.get(p.pattern)) for p, replacement in rules]


_CONTRACTION_STEPS = [(p, _word_pair(p.pattern)) for p in _CONTRACTIONS_UNDONE]
_ENDING_QUOTE_STEPS = _steps(_DETOKENIZER.ENDING_QUOTES)
_PUNCTUATION_STEPS = _steps(
    [_DETOKENIZER.DOUBLE_DASHES, *_DETOKENIZER.PARENS_BRACKETS, *_DETOKENIZER.PUNCTUATION]
)
_STARTING_QUOTE_STEPS = _steps(_DETOKENIZER.STARTING_QUOTES)


def _substitute(steps: list[tuple[Any, str, tuple[str, ...] | None]], text: str) -> str:
    """``_steps`` in order on ``text``, but those that cannot match it."""
    for pattern, replacement, needs in steps:
        if needs is None or any(needle in text for needle in needs):
            text = pattern.sub(replacement, text)
    return text
