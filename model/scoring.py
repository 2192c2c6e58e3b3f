"""Sentence scoring: per-token log-probabilities, totals, perplexity, unknown words.

``bos``/``eos`` follow KenLM: with ``bos`` the first word is predicted from
``SENTENCE_START``; without it the text is a fragment, so its first word is read as context
and not scored. With ``eos`` the probability of ``SENTENCE_END`` after the last word counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .batching import length_sorted_batches
from .engines import Engine
from .text import Tokenizer
from .vocab import SENTENCE_END, UNK_ID, Vocabulary

LN10 = math.log(10)
SentenceInput = str | Sequence[str]


@dataclass(frozen=True)
class TokenScore:
    token: str  # the word as the model saw it (case-folded), or SENTENCE_END
    logprob: float  # ln p(token | preceding tokens)
    unknown: bool  # the word is outside the vocabulary and was scored as UNKNOWN_TOKEN


@dataclass(frozen=True)
class SentenceScore:
    words: list[str]  # the sentence's words after tokenisation and case folding
    tokens: list[TokenScore]  # one per scored token
    logprob: float  # natural log of the sentence probability
    perplexity: float  # exp(-logprob / len(tokens)); nan when nothing was scored
    unknown_words: list[str]  # words outside the vocabulary, in order of first occurrence

    @property
    def log10prob(self) -> float:
        return self.logprob / LN10


def sentence_words(tokenizer: Tokenizer, sentence: SentenceInput, position: int) -> list[str]:
    """Raw text is tokenised; a list of words (already tokenised) is only case-folded."""
    if isinstance(sentence, str):
        return tokenizer.words(sentence)
    if isinstance(sentence, Sequence) and all(isinstance(w, str) for w in sentence):
        return tokenizer.normalize(sentence)
    raise ValueError(
        f"sentences[{position}] must be a string or a list of word strings, "
        f"got {type(sentence).__name__}"
    )


def score_sentences(
    engine: Engine,
    tokenizer: Tokenizer,
    vocab: Vocabulary,
    sentences: Sequence[SentenceInput],
    *,
    bos: bool = True,
    eos: bool = True,
    batch_size: int = 64,
) -> list[SentenceScore]:
    """Score each sentence; results are in input order and independent of the batching."""
    if isinstance(sentences, str):
        raise ValueError("sentences must be a list of sentences, not one string")
    if not isinstance(sentences, Sequence):
        raise ValueError(f"sentences must be a list of sentences, got {type(sentences).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    words = [sentence_words(tokenizer, s, i) for i, s in enumerate(sentences)]
    framed = [vocab.frame(w, bos=bos, eos=eos) for w in words]
    logps: list[np.ndarray] = [np.zeros(0)] * len(framed)
    scorable = [i for i, ids in enumerate(framed) if len(ids) >= 2]
    if scorable:
        for idx, batch in length_sorted_batches([framed[i] for i in scorable], batch_size):
            rows = engine.token_log_probs(batch)  # (B, T)
            for row, j in enumerate(idx):
                logps[scorable[j]] = rows[row, : batch.lengths[row]]
    return [_sentence_score(w, ids, lp, vocab, bos) for w, ids, lp in zip(words, framed, logps)]


def _sentence_score(
    words: list[str], ids: np.ndarray, logp: np.ndarray, vocab: Vocabulary, bos: bool
) -> SentenceScore:
    # Target k is ids[k + 1]: word k after SENTENCE_START, word k + 1 without it, and
    # SENTENCE_END past the last word.
    first_word = 0 if bos else 1
    tokens = []
    for k, (target, lp) in enumerate(zip(ids[1:], logp)):
        w = k + first_word
        is_word = w < len(words)
        tokens.append(
            TokenScore(
                words[w] if is_word else SENTENCE_END, float(lp), bool(is_word and target == UNK_ID)
            )
        )
    total = float(np.sum(logp))
    perplexity = math.exp(-total / len(tokens)) if tokens else math.nan
    unknown = list(dict.fromkeys(w for w in words if w not in vocab))
    return SentenceScore(words, tokens, total, perplexity, unknown)
