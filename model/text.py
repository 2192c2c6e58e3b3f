"""Text pipeline: sentences with Punkt, words with NLTK's Treebank-style tokenizer.

Works offline. The pretrained English Punkt parameters are used where NLTK's ``punkt_tab``
data is installed; otherwise Punkt is trained on the training text itself (unsupervised,
a second or two per megabyte). Either way the parameters are kept in JSON with the model,
so that scoring splits and tokenises exactly as training did, on any machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer, PunktTrainer
from nltk.tokenize.treebank import TreebankWordDetokenizer

# Punkt learns abbreviations and sentence starters from word statistics: a few MB of text
# is plenty, and the cost grows linearly, so larger corpora train it on their start only.
PUNKT_TRAINING_CHARS = 4_000_000

_WORD_TOKENIZER = NLTKWordTokenizer()
_DETOKENIZER = TreebankWordDetokenizer()


def _pretrained_punkt() -> PunktParameters | None:
    """The installed English ``punkt_tab`` parameters, or None where NLTK data is absent."""
    try:
        from nltk.tokenize.punkt import PunktTokenizer
    except ImportError:  # NLTK older than 3.9 has no pickle-free punkt_tab loader
        return None
    try:
        return PunktTokenizer("english")._params
    except LookupError:
        return None


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
    for word, flags in data["ortho_context"].items():
        params.ortho_context[word] = int(flags)
    return params


@dataclass
class Tokenizer:
    """Splits text into sentences of words, the same way at training and at scoring time."""

    punkt: PunktParameters
    punkt_source: str  # "pretrained:english" or "trained"
    lowercase: bool = True

    def __post_init__(self) -> None:
        self._splitter = PunktSentenceTokenizer(self.punkt)

    @classmethod
    def fit(cls, text: str, *, lowercase: bool = True, use_pretrained: bool = True) -> Tokenizer:
        """Pretrained Punkt where installed (and allowed), otherwise Punkt trained on ``text``."""
        params = _pretrained_punkt() if use_pretrained else None
        if params is not None:
            return cls(params, "pretrained:english", lowercase)
        trainer = PunktTrainer()
        trainer.train(text[:PUNKT_TRAINING_CHARS], finalize=True)
        return cls(trainer.get_params(), "trained", lowercase)

    def words(self, sentence: str) -> list[str]:
        """Words of one sentence (no sentence splitting: an MT candidate is one sentence)."""
        return self.normalize(_WORD_TOKENIZER.tokenize(sentence))

    def normalize(self, words: Iterable[str]) -> list[str]:
        """Apply the model's case folding to words that were tokenised elsewhere."""
        return [w.lower() for w in words] if self.lowercase else list(words)

    def sentences(self, text: str) -> list[list[str]]:
        """Every non-empty sentence of ``text`` as a list of words."""
        out = []
        for sentence in self._splitter.tokenize(text):
            words = self.words(sentence)
            if words:
                out.append(words)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "lowercase": self.lowercase,
            "punkt_source": self.punkt_source,
            "punkt": _params_to_json(self.punkt),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tokenizer:
        try:
            return cls(
                _params_from_json(data["punkt"]), str(data["punkt_source"]), bool(data["lowercase"])
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"tokenizer parameters are malformed: {err!r}") from err


def detokenize(words: list[str]) -> str:
    """Words back to readable text ("do n't" -> "don't", no space before punctuation)."""
    return _DETOKENIZER.detokenize(words)
