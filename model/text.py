"""Text pipeline: sentences with Punkt (or one a line), words with NLTK's Treebank-style
tokenizer (or split at whitespace, for text that is tokenised already).

Sentence modes: "split" cuts paragraphs into sentences with Punkt; "line" takes each line as
exactly one sentence (MT and speech data, where Punkt would cut after "co." or "inc.").
Word modes: "nltk" ("don't" -> "do n't"; ``<unk>``-like tokens are kept whole) and
"whitespace" (``str.split``: ``s&p``, ``hk$`` and ``@-@`` stay as they are).

Punkt works offline. The pretrained English Punkt parameters are used where NLTK's ``punkt_tab``
data is installed; otherwise Punkt is trained on the training text itself (unsupervised,
a second or two per megabyte). Either way the parameters are kept in JSON with the model,
so that scoring splits and tokenises exactly as training did, on any machine. Line mode
never runs Punkt, so it trains none and stores empty parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer, PunktTrainer

from rnnlm.model.checks import one_of
from rnnlm.model.config import WORD_MODES
from rnnlm.model.detokenize import detokenize

# Punkt learns abbreviations and sentence starters from word statistics: a few MB of text
# is plenty, and the cost grows linearly, so larger corpora train it on their start only.
PUNKT_TRAINING_CHARS = 4_000_000

_WORD_TOKENIZER = NLTKWordTokenizer()
TOKENIZER_SENTENCE_MODES = ("split", "line")  # what "auto" resolves to; see corpus.py
# Markup tokens such as <unk>, <s>, </s> (no spaces inside), which NLTK cuts into "<" "unk" ">".
_ANGLE_TOKEN = re.compile(r"<[^\s<>]+>")
PUNKT_UNUSED = "unused"  # punkt_source of a line-mode tokenizer
# Text NLTK's word tokenizer gives back as it is, split at whitespace (the fast path of
# ``_nltk_words``): words of ASCII letters and digits, and the marks and clitics it leaves
# whole when they stand alone, as MT and ASR pipelines write their (tokenised) output;
# ``<unk>``-like tokens, which it cuts and ``_rejoin_angle_tokens`` glues back; and the few
# tokens it rewrites the same way wherever they stand alone (``_REWRITTEN``: a lone ``"``
# that starts the text or follows a space, not a tab or a newline, is an opening quote to
# NLTK; WikiText's ``@-@`` joiners have their "@"s padded). NLTK's own contraction patterns
# ("cannot" -> "can not", "gonna") send text the long way. Checked against NLTK on every
# line of the shared corpora and on generated text (tests/model/test_text.py).
_PLAIN_MARKS = ["n't", "'s", "'re", "'ll", "'ve", "'m", "'d", "'", "--", "...", "-"]
_REWRITTEN = {
    '"': ["``"],
    "@-@": ["@", "-", "@"],
    "@,@": ["@", ",", "@"],
    "@.@": ["@", ".", "@"],
}
_PLAIN_WORD = (
    rf"(?:[A-Za-z0-9]+|{'|'.join(map(re.escape, _PLAIN_MARKS))}|[,.?!;:()\[\]{{}}$%&#*+=/]"
    rf"|<[A-Za-z0-9]+>|{'|'.join(map(re.escape, _REWRITTEN))})"
)
_PLAIN_TEXT = re.compile(rf"\s*{_PLAIN_WORD}(?:\s+{_PLAIN_WORD})*\s*", re.ASCII)
_CONTRACTIONS = [*NLTKWordTokenizer.CONTRACTIONS2, *NLTKWordTokenizer.CONTRACTIONS3]
# Where the fast path would go wrong: NLTK's contractions, and a quote after a tab or a
# newline (NLTK reads that one as a closing quote).
_NLTK_SPLITS_WORDS = re.compile(
    "|".join([*(f"(?:{p.pattern.removeprefix('(?i)')})" for p in _CONTRACTIONS), '[^ ]"']),
    re.IGNORECASE,
)


def _literal(pattern: str) -> str:
    """The text a contraction pattern matches ("cannot", " 'tis"); "" (found in any text)
    for one that is more than a word with markers around it."""
    text = re.sub(r"\(\?i\)|\\b|\(\?#X\)|\(\?=\\s\)|[()]", "", pattern)
    return text if re.fullmatch(r"[a-z' ]+", text) else ""


# What the text must hold (lowercased) for ``_NLTK_SPLITS_WORDS`` to match: on the fast
# path's ASCII text, a substring test is exact and 10x cheaper than the search itself.
_SPLIT_HINTS = (*sorted({_literal(p.pattern) for p in _CONTRACTIONS}), '"')


def _pretrained_punkt() -> PunktParameters | None:
    """The installed English ``punkt_tab`` parameters, or None where NLTK data is absent."""
    try:
        from nltk.tokenize.punkt import PunktTokenizer  # NLTK 3.9+: loads punkt_tab, no pickle

        return PunktTokenizer("english")._params
    except (ImportError, LookupError):  # an older NLTK, or no punkt_tab data
        return None


def _rejoin_angle_tokens(tokens: list[str], wanted: set[str]) -> list[str]:
    """Glue back the pieces NLTK cut an ``<unk>``-like token into (see ``_angle_runs``)."""
    return ["".join(tokens[start:end]) for start, end in _angle_runs(tokens, wanted)]


def _angle_runs(tokens: list[str], wanted: set[str]) -> list[tuple[int, int]]:
    """The words of ``tokens`` as [start, end) runs of token indices: from a "<", the
    shortest run of pieces that concatenates to an ``<unk>``-like token of the sentence
    (``wanted``); every other piece stays a word of its own, as NLTK left it."""
    out, i = [], 0
    while i < len(tokens):
        joined, end = tokens[i], i + 1
        if joined == "<":
            while (
                joined not in wanted
                and end < len(tokens)
                and any(w.startswith(joined) for w in wanted)
            ):
                joined, end = joined + tokens[end], end + 1
        if joined not in wanted:
            joined, end = tokens[i], i + 1
        out.append((i, end))
        i = end
    return out


def _plain(sentence: str) -> bool:
    """Does NLTK give ``sentence.split()`` back (``_REWRITTEN`` tokens rewritten)?"""
    if not _PLAIN_TEXT.fullmatch(sentence):
        return False
    # Spaced at both ends as NLTK spaces it before its contraction patterns: "I wanna" ends
    # in "wan na" (a "wanna" at the very end once took the fast path, whole).
    spaced = f" {sentence} "
    lowered = spaced.lower()  # ASCII here: the pattern above allows nothing else
    return not any(h in lowered for h in _SPLIT_HINTS) or not _NLTK_SPLITS_WORDS.search(spaced)


def _nltk_words(sentence: str) -> list[str]:
    if _plain(sentence):
        words = sentence.split()  # what NLTK would return, 10-30x sooner
        if not any(w in _REWRITTEN for w in words):
            return words
        return [piece for w in words for piece in _REWRITTEN.get(w, (w,))]
    tokens = _WORD_TOKENIZER.tokenize(sentence)
    wanted = set(_ANGLE_TOKEN.findall(sentence))
    return _rejoin_angle_tokens(tokens, wanted) if wanted else tokens


def _params_to_json(params: PunktParameters) -> dict[str, Any]:
    # Sorted so that the same parameters always serialise to the same bytes.
    return {
        "abbrev_types": sorted(params.abbrev_types),
        "collocations": sorted([a, b] for a, b in params.collocations),
        "sent_starters": sorted(params.sent_starters),
        "ortho_context": dict(sorted(params.ortho_context.items())),
    }


def _params_from_json(data: dict[str, Any]) -> PunktParameters:
    params = PunktParameters()
    params.abbrev_types = set(data["abbrev_types"])
    params.collocations = {(a, b) for a, b in data["collocations"]}
    params.sent_starters = set(data["sent_starters"])
    params.ortho_context.update((w, int(flags)) for w, flags in data["ortho_context"].items())
    return params


@dataclass
class Tokenizer:
    """Splits text into sentences of words, the same way at training and at scoring time."""

    punkt: PunktParameters
    punkt_source: str  # "pretrained:english", "trained" or PUNKT_UNUSED (line mode)
    lowercase: bool = True
    # What checkpoints written before these modes existed did.
    words_mode: str = "nltk"  # WORD_MODES
    sentences_mode: str = "split"  # TOKENIZER_SENTENCE_MODES ("auto" is resolved before)

    def __post_init__(self) -> None:
        one_of(WORD_MODES).check("tokenizer words mode", self.words_mode)
        one_of(TOKENIZER_SENTENCE_MODES).check("tokenizer sentences mode", self.sentences_mode)
        self._splitter = PunktSentenceTokenizer(self.punkt)

    @classmethod
    def fit(
        cls,
        text: str,
        *,
        lowercase: bool = True,
        use_pretrained: bool = True,
        words: str = "nltk",
        sentences: str = "split",
    ) -> Tokenizer:
        """Pretrained Punkt where installed (and allowed), otherwise Punkt trained on ``text``;
        no Punkt at all for ``sentences="line"``."""
        if sentences == "line":
            return cls(PunktParameters(), PUNKT_UNUSED, lowercase, words, sentences)
        params = _pretrained_punkt() if use_pretrained else None
        if params is not None:
            return cls(params, "pretrained:english", lowercase, words, sentences)
        trainer = PunktTrainer()
        trainer.train(text[:PUNKT_TRAINING_CHARS], finalize=True)
        return cls(trainer.get_params(), "trained", lowercase, words, sentences)

    def words(self, sentence: str) -> list[str]:
        """Words of one sentence (no sentence splitting: an MT candidate is one sentence)."""
        raw = sentence.split() if self.words_mode == "whitespace" else _nltk_words(sentence)
        return self.normalize(raw)

    def word_spans(self, sentence: str) -> list[WordSpan]:
        """``words(sentence)``, each with where it is in ``sentence``: the [start, end)
        character offsets of the text it came from. A word NLTK rewrote spans the original
        characters (a ``"`` it writes as ``` `` ``` or ``''``), a word glued from pieces
        (``<unk>``) spans them all, and case folding changes no offset."""
        if self.words_mode == "whitespace":
            tokens = sentence.split()
            runs = [(i, i + 1) for i in range(len(tokens))]
        else:
            tokens = _WORD_TOKENIZER.tokenize(sentence)
            wanted = set(_ANGLE_TOKEN.findall(sentence))
            runs = (
                _angle_runs(tokens, wanted) if wanted else [(i, i + 1) for i in range(len(tokens))]
            )
        spans = _align(tokens, sentence)
        words = self.normalize("".join(tokens[start:end]) for start, end in runs)
        return [
            WordSpan(word, spans[start][0], spans[end - 1][1])
            for word, (start, end) in zip(words, runs)
        ]

    def normalize(self, words: Iterable[str]) -> list[str]:
        """Apply the model's case folding to words that were tokenised elsewhere."""
        return [w.lower() for w in words] if self.lowercase else list(words)

    def sentences(self, text: str) -> list[list[str]]:
        """Every non-empty sentence of ``text`` as a list of words (line mode: every
        non-empty line)."""
        if self.sentences_mode == "line":
            pieces = text.splitlines()
        else:
            pieces = self._splitter.tokenize(text)
        return [words for words in map(self.words, pieces) if words]

    def to_json(self) -> dict[str, Any]:
        return {
            "lowercase": self.lowercase,
            "words": self.words_mode,
            "sentences": self.sentences_mode,
            "punkt_source": self.punkt_source,
            "punkt": _params_to_json(self.punkt),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tokenizer:
        try:
            # Older checkpoints lack the mode keys; the field defaults are what they did.
            modes = {
                field: str(data[key])
                for key, field in (("words", "words_mode"), ("sentences", "sentences_mode"))
                if key in data
            }
            return cls(
                _params_from_json(data["punkt"]),
                str(data["punkt_source"]),
                bool(data["lowercase"]),
                **modes,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"tokenizer parameters are malformed: {err!r}") from err


class WordSpan(NamedTuple):
    """A word of a text (``Tokenizer.word_spans``) and the characters it came from."""

    word: str  # as ``Tokenizer.words`` gives it (case-folded)
    start: int  # offset of its first character in the text
    end: int  # one past its last


# The quotes NLTK writes as `` or '' whatever the text had: ", '' or ``.
_QUOTE_TOKENS = ("``", "''")
_QUOTE_SOURCES = ("``", "''", '"')


def _align(tokens: list[str], text: str) -> list[tuple[int, int]]:
    """The [start, end) characters of ``text`` each token came from. The tokens of NLTK's
    word tokenizer (or ``str.split``) are the text's characters in order, whitespace left
    out, except for quotes (``_QUOTE_TOKENS``), which stand for whichever quote is there."""
    spans, pos = [], 0
    for token in tokens:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if text.startswith(token, pos):
            end = pos + len(token)
        elif token in _QUOTE_TOKENS and any(text.startswith(q, pos) for q in _QUOTE_SOURCES):
            end = pos + len(next(q for q in _QUOTE_SOURCES if text.startswith(q, pos)))
        else:
            # A rewrite this code does not know (a future NLTK): the token's next occurrence,
            # or an empty span where the text was reached, so that the words stay exact.
            found = text.find(token, pos)
            if found < 0:
                spans.append((pos, pos))
                continue
            pos, end = found, found + len(token)
        spans.append((pos, end))
        pos = end
    return spans


class TextAssembler:
    """Generated words as text that continues a prompt. ``add(word)`` returns what the word
    adds, the space before it included, so that the prompt's text followed by the pieces
    reads as ``detokenize`` writes the prompt's words and the generated ones (the one place
    generated words become text is still ``detokenize``). Where a longer sentence changes
    text already handed out (a closing quote can), the word is added after a space.

    Each word is read in the context of the ``CONTEXT_WORDS`` before it (detokenising is
    local), so that a word costs the same however long the sentence is."""

    CONTEXT_WORDS = 16

    def __init__(self, prompt: Sequence[str], prompt_text: str = "") -> None:
        self._words = list(prompt)[-self.CONTEXT_WORDS :]
        self._text = detokenize(self._words)
        # A prompt that ends in a space ("The cat ") already has the space a word needs.
        self._spaced = prompt_text[-1:].isspace()

    def add(self, word: str) -> str:
        self._words.append(word)
        text = detokenize(self._words)
        piece = text[len(self._text) :] if text.startswith(self._text) else f" {word}"
        self._words = self._words[-self.CONTEXT_WORDS :]
        self._text = detokenize(self._words) if len(self._words) == self.CONTEXT_WORDS else text
        if self._spaced:
            piece, self._spaced = piece.lstrip(), False
        return piece


def detokenize_with_offsets(words: list[str]) -> tuple[str, list[int]]:
    """``detokenize(words)``, and where each word starts in it."""
    text = detokenize(words)
    return text, [start for start, _ in _align(words, text)]
