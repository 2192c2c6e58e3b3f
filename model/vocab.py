"""Vocabulary: the N most frequent words plus the three special tokens of the tutorial.

The literal tokens ``<unk>``, ``<s>`` and ``</s>`` (any case) in text are the unknown word,
as in MT and LM data (KenLM reads them so too): they are encoded as ``UNK_ID`` and never
become vocabulary entries. Words seen fewer than ``min_count`` times in the training split
are left out, so that ``UNKNOWN_TOKEN`` is trained on them and an unseen word costs what a
rare word does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

UNKNOWN_TOKEN = "UNKNOWN_TOKEN"
SENTENCE_START = "SENTENCE_START"
SENTENCE_END = "SENTENCE_END"
SPECIAL_TOKENS = (UNKNOWN_TOKEN, SENTENCE_START, SENTENCE_END)
UNK_ID, START_ID, END_ID = 0, 1, 2
# Markup that stands for the unknown word (or sentence boundaries, which framing adds).
UNKNOWN_ALIASES = frozenset({"<unk>", "<s>", "</s>"})


def lookup(index: dict[str, int], words: Sequence[str]) -> np.ndarray:
    """Ids of ``words`` in ``index``, ``UNK_ID`` for words it lacks and for the names of the
    special tokens (the text "SENTENCE_END" is a word, not the end of the sentence), (n,)."""
    get = index.get
    ids = np.fromiter((get(w, UNK_ID) for w in words), dtype=np.int64, count=len(words))
    ids[ids < len(SPECIAL_TOKENS)] = UNK_ID
    return ids


def frame_ids(ids: np.ndarray, *, bos: bool, eos: bool) -> np.ndarray:
    """``SENTENCE_START ids SENTENCE_END`` (either end switchable), int64."""
    start = [START_ID] if bos else []
    end = [END_ID] if eos else []
    return np.concatenate([start, ids, end]).astype(np.int64)


def _is_word(token: str) -> bool:
    """Can ``token`` be a vocabulary entry (not a special token's name or an <unk> alias)?"""
    return token not in SPECIAL_TOKENS and token.lower() not in UNKNOWN_ALIASES


@dataclass
class Vocabulary:
    """Index <-> token. Ids 0..2 are the special tokens; words follow, most frequent first."""

    tokens: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[:3]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary starts with {', '.join(SPECIAL_TOKENS)}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("a vocabulary may not list a token twice")
        aliases = [t for t in self.tokens if t.lower() in UNKNOWN_ALIASES]
        if aliases:  # they must stay the unknown word, which encode relies on
            raise ValueError(f"a vocabulary may not list {aliases[0]!r}: it means UNKNOWN_TOKEN")
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(
        cls, sentences: Iterable[Sequence[str]], max_size: int, min_count: int = 1
    ) -> Vocabulary:
        """Keep the ``max_size - 3`` most frequent words seen at least ``min_count`` times;
        ties go to the alphabetically first word so that the same corpus always gives the
        same vocabulary. Build it from the training split only, so that held-out words are
        unknown as unseen words will be."""
        counts = Counter(word for sentence in sentences for word in sentence)
        kept = [(w, n) for w, n in counts.items() if n >= min_count and _is_word(w)]
        ranked = sorted(kept, key=lambda item: (-item[1], item[0]))
        words = [word for word, _ in ranked[: max(0, max_size - len(SPECIAL_TOKENS))]]
        return cls([*SPECIAL_TOKENS, *words])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, word: str) -> bool:
        """Is ``word`` an ordinary word of the vocabulary (special tokens are not words)?"""
        return self.index.get(word, UNK_ID) >= len(SPECIAL_TOKENS)

    def encode(self, words: Sequence[str]) -> np.ndarray:
        """Word ids, ``UNK_ID`` for words outside the vocabulary (see ``lookup``)."""
        return lookup(self.index, words)

    def frame(self, words: Sequence[str], *, bos: bool = True, eos: bool = True) -> np.ndarray:
        """``SENTENCE_START w1 .. wn SENTENCE_END`` as ids (either end switchable)."""
        return frame_ids(self.encode(words), bos=bos, eos=eos)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def to_json(self) -> list[str]:
        return list(self.tokens)

    @classmethod
    def from_json(cls, data: list[str]) -> Vocabulary:
        if not isinstance(data, list) or not all(isinstance(t, str) for t in data):
            raise ValueError("vocabulary must be a list of strings")
        return cls(data)
