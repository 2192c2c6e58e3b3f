"""Sentence scoring: per-token log-probabilities, totals, perplexity, unknown words.

``bos``/``eos`` are KenLM's switches: with ``bos`` the first word is predicted from
``SENTENCE_START``; without it the text is a fragment, and (unlike KenLM, which scores it
from an empty context) its first word is read as context and not scored. With ``eos`` the
probability of ``SENTENCE_END`` after the last word counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, overload

import numpy as np

from rnnlm.model.batching import length_sorted_batches
from rnnlm.model.checks import number, one_of
from rnnlm.model.engines import Engine
from rnnlm.model.ngram import NgramModel
from rnnlm.model.prefix_tree import build_prefix_tree, score_prefix_tree
from rnnlm.model.stopping import ShouldStop, check
from rnnlm.model.vocab import SENTENCE_END, UNK_ID, Vocabulary

LN10 = math.log(10)


class Words(tuple[str, ...]):
    """A sentence as the words a model scores: tokenised and case-folded by
    ``LanguageModel.words``, and taken as they are wherever a sentence is expected (never
    tokenised or folded again). They belong to the model that made them."""


# Raw text, a list of words tokenised elsewhere (case-folded on use), or ``Words``.
SentenceInput = str | Sequence[str]


@dataclass(frozen=True)
class TokenScore:
    token: str  # the word as the model saw it (case-folded), or SENTENCE_END
    logprob: float  # ln p(token | preceding tokens)
    unknown: bool  # the word is outside the vocabulary and was scored as UNKNOWN_TOKEN
    ngram_order: int = 0  # longest n-gram that matched (KenLM's ngram_length); 0: none used


class TokenScores(Sequence[TokenScore]):
    """A sentence's scored tokens as a read-only list of ``TokenScore``, kept as arrays: the
    objects are made only when read, so that a caller that wants the totals alone (or a
    reply built from the arrays, ``columns``) never makes one per token."""

    __slots__ = ("_first_word", "_logprobs", "_orders", "_unknown", "_words")

    def __init__(
        self,
        words: Sequence[str],
        first_word: int,
        logprobs: np.ndarray,
        unknown: np.ndarray,
        orders: np.ndarray | None,
    ) -> None:
        self._words = words  # token k is words[k + first_word], SENTENCE_END past the end
        self._first_word = first_word
        self._logprobs = logprobs  # (n,) float64
        self._unknown = unknown  # (n,) bool
        self._orders = orders  # (n,) int, or None: no n-gram part used

    def columns(self) -> tuple[list[str], list[float], list[bool], list[int]]:
        """The fields of every token, column by column (token, logprob, unknown,
        ngram_order), as Python values."""
        n = len(self._logprobs)
        words = list(self._words[self._first_word : self._first_word + n])
        tokens = words + [SENTENCE_END] * (n - len(words))
        orders = [0] * n if self._orders is None else self._orders.tolist()
        return tokens, self._logprobs.tolist(), self._unknown.tolist(), orders

    def __len__(self) -> int:
        return len(self._logprobs)

    def __iter__(self) -> Iterator[TokenScore]:
        return map(TokenScore, *self.columns())

    @overload
    def __getitem__(self, index: int) -> TokenScore: ...
    @overload
    def __getitem__(self, index: slice) -> list[TokenScore]: ...
    def __getitem__(self, index: int | slice) -> TokenScore | list[TokenScore]:
        if isinstance(index, slice):
            return list(self)[index]
        n = len(self)
        at = index + n if index < 0 else index
        if not 0 <= at < n:
            raise IndexError(f"token index {index} out of range for {n} tokens")
        word = at + self._first_word  # one object, not the whole list
        return TokenScore(
            self._words[word] if word < len(self._words) else SENTENCE_END,
            float(self._logprobs[at]),
            bool(self._unknown[at]),
            0 if self._orders is None else int(self._orders[at]),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # a list: compared by value, unhashable

    def __repr__(self) -> str:
        return repr(list(self))


@dataclass(frozen=True)
class SentenceScore:
    words: list[str]  # the sentence's words after tokenisation and case folding
    tokens: Sequence[TokenScore]  # one per scored token (``TokenScores``, a list to read)
    logprob: float  # natural log of the sentence probability
    perplexity: float  # exp(-logprob / len(tokens)); nan when nothing was scored
    unknown_words: list[str]  # words outside the vocabulary, in order of first occurrence

    @property
    def log10prob(self) -> float:
        return self.logprob / LN10


class SequenceScores(NamedTuple):
    """What ``score_sequences`` gives for one framed sequence: ln p of each target ``s[1:]``
    by the network, and by the n-gram part with the order of the longest n-gram matched
    (None: not computed)."""

    neural: np.ndarray
    ngram: np.ndarray | None = None
    orders: np.ndarray | None = None


# (framed sequences, should_stop=None) -> ``SequenceScores`` of each; a batcher is one too.
SequenceScorer = Callable[..., list[SequenceScores]]
LENGTH_NORMS = ("none", "average", "gnmt")
_LENGTH_NORM, _GNMT_ALPHA = one_of(LENGTH_NORMS), number("[0, 10]")  # made once, not per score
# Sequences per prefix tree: bounds the tree's index arrays and the widest level's states
# (the engines run the output layer in fixed-size chunks as they walk the tree).
TREE_MAX_SEQUENCES = 2048
DEFAULT_GNMT_ALPHA = 0.6
# Padded tokens per scoring batch: long sentences come in fewer rows, so that the output
# layer's (rows, V) logits stay near 8192 x 8000 float32 = 262 MB whatever the lengths.
BATCH_MAX_TOKENS = 8192


def neural_token_log_probs(
    engine: Engine,
    sequences: Sequence[np.ndarray],
    batch_size: int = 64,
    should_stop: ShouldStop | None = None,
) -> list[np.ndarray]:
    """ln p of each target ``s[1:]`` of each framed sequence, in input order.

    Sequences that share prefixes (an n-best list) are scored as a prefix tree, each shared
    prefix once; others in length-sorted padded batches. Either way a score is independent
    of what else is in the call, up to float32 rounding (about 1e-6). ``should_stop`` is
    checked before every batch and every chunk of a tree's output layer (``Stopped``).
    """
    logps: list[np.ndarray] = []
    for start in range(0, len(sequences), TREE_MAX_SEQUENCES):
        check(should_stop)
        chunk = sequences[start : start + TREE_MAX_SEQUENCES]
        tree = build_prefix_tree(chunk)
        if tree.worthwhile:
            logps.extend(score_prefix_tree(engine, tree, should_stop))
        else:
            logps.extend(batched_token_log_probs(engine, chunk, batch_size, should_stop))
    return logps


def score_sequences(
    engine: Engine,
    ngram: NgramModel | None,
    sequences: Sequence[np.ndarray],
    batch_size: int = 64,
    should_stop: ShouldStop | None = None,
) -> list[SequenceScores]:
    """The network's scores of each framed sequence (``neural_token_log_probs``) and, with
    ``ngram`` (in the network's ids), the n-gram model's: in one call for every sequence, so
    that a batcher scores both parts of all its requests at once (one n-gram lookup for a
    batch costs about what one for a single sentence does). Each score is what scoring the
    sequence alone gives: the n-gram part's to the bit, the network's up to float32 rounding.
    """
    neural = neural_token_log_probs(engine, sequences, batch_size, should_stop)
    if ngram is None:
        return [SequenceScores(logp) for logp in neural]
    check(should_stop)
    logps, orders = ngram.token_log_probs(sequences)
    return list(map(SequenceScores, neural, logps, orders))


def batched_token_log_probs(
    engine: Engine,
    sequences: Sequence[np.ndarray],
    batch_size: int,
    should_stop: ShouldStop | None = None,
) -> list[np.ndarray]:
    logps: list[np.ndarray] = [np.zeros(0)] * len(sequences)
    scorable = [i for i, ids in enumerate(sequences) if len(ids) >= 2]
    picked = [sequences[i] for i in scorable]
    for idx, batch in length_sorted_batches(picked, batch_size, max_tokens=BATCH_MAX_TOKENS):
        check(should_stop)
        rows = engine.token_log_probs(batch)  # (B, T)
        for row, j in enumerate(idx):
            logps[scorable[j]] = rows[row, : batch.lengths[row]]
    return logps


def length_normalized(
    score: SentenceScore, length_norm: str = "none", alpha: float | None = None
) -> float:
    """The value to rank by: the sum (none), the mean per token (average), or GNMT's
    ``logprob / ((5 + n)^alpha / 6^alpha)`` (Wu et al. 2016), n the scored tokens."""
    _LENGTH_NORM.check("length_norm", length_norm)
    n = len(score.tokens)
    if length_norm == "none" or n == 0:
        return score.logprob
    if length_norm == "average":
        return score.logprob / n
    alpha = _GNMT_ALPHA.check("length_alpha", DEFAULT_GNMT_ALPHA if alpha is None else alpha)
    return score.logprob / (((5 + n) / 6) ** alpha)


@dataclass(frozen=True)
class RankedScore:
    index: int  # the sentence's position in the input
    score: SentenceScore
    rank_score: float  # what ranking sorts by: ``length_normalized`` of the score


def rank_scores(
    scores: Sequence[SentenceScore],
    length_norm: str = "none",
    length_alpha: float | None = None,
    *,
    sort: bool = True,
) -> list[RankedScore]:
    """Each score with its rank score (``length_normalized``), most probable first (n-best
    rescoring, ties in input order); with ``sort=False`` in input order."""
    ranked = [
        RankedScore(i, s, length_normalized(s, length_norm, length_alpha))
        for i, s in enumerate(scores)
    ]
    return sorted(ranked, key=lambda r: -r.rank_score) if sort else ranked


def sentence_score(
    words: list[str],
    ids: np.ndarray,
    logp: np.ndarray,
    vocab: Vocabulary,
    bos: bool,
    orders: np.ndarray | None,
) -> SentenceScore:
    # ids: vocab.frame(words, bos=bos, eos=...). Target k is ids[k + 1]: word k after
    # SENTENCE_START, word k + 1 without it, and SENTENCE_END past the last word.
    first_word = 0 if bos else 1
    n = min(len(logp), max(len(ids) - 1, 0))
    logprobs = np.asarray(logp[:n], dtype=np.float64)  # float32 widens exactly, as float()
    unknown = ids[1 : n + 1] == UNK_ID
    unknown[max(len(words) - first_word, 0) :] = False  # SENTENCE_END is no unknown word
    tokens = TokenScores(
        words, first_word, logprobs, unknown, None if orders is None else orders[:n]
    )
    total = float(np.sum(logp))
    perplexity = math.exp(-total / n) if n else math.nan
    # ids are vocab.frame(words): a word outside the vocabulary has UNK_ID there, so only
    # those few are looked at, not every word.
    start = 1 if bos else 0
    unk_at = np.flatnonzero(ids[start : start + len(words)] == UNK_ID).tolist()
    unknown_words = list(dict.fromkeys(words[i] for i in unk_at if words[i] not in vocab))
    return SentenceScore(words, tokens, total, perplexity, unknown_words)
