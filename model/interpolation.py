"""The n-gram part of a language model, and its interpolation with the network.

Every model trained with ``ngram_order > 0`` carries a modified Kneser-Ney n-gram model
estimated on exactly the tokens the network trained on (same tokenizer, framing and
vocabulary); a user's own ARPA model can take its place. Scores mix per token, as the RNNLM
toolkit's ``-lambda`` does::

    p(w | h) = λ · p_network(w | h) + (1 - λ) · p_ngram(w | h)

λ (``neural_weight``) is chosen by EM on the validation split at the end of training (the
likelihood is concave in λ, so EM finds the best weight) and stored with the version.

An attached ARPA model keeps its own vocabulary: a sentence's words (after the model's
tokenisation and case folding) are looked up by spelling, and a word the ARPA model lacks
is its ``<unk>``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnlm.model.batching import split_long
from rnnlm.model.checks import number
from rnnlm.model.ngram import NgramModel
from rnnlm.model.vocab import SPECIAL_TOKENS, START_ID, UNK_ID, Vocabulary, frame_ids

log = logging.getLogger("rnnlm.model")

SCORERS = ("neural", "ngram", "interpolated")
SOURCE_BUILT_IN = "built-in"
EM_ITERATIONS = 200
EM_TOLERANCE = 1e-7
# Validation sentences kept with a version, so that an n-gram model attached later can have
# its weight tuned on the same held-out text (a few hundred KB of ids at most).
HELDOUT_MAX_TOKENS = 200_000


@dataclass
class NgramPart:
    """An n-gram model attached to a network, with the weight that mixes them."""

    model: NgramModel
    source: str  # SOURCE_BUILT_IN, or "arpa:<file name>"
    neural_weight: float = 0.5  # λ, the network's share
    # Validation perplexities at the end of training: neural, ngram, interpolated.
    valid_perplexity: dict[str, float] = field(default_factory=dict)

    @property
    def shares_vocab(self) -> bool:
        """The built-in model numbers words as the network does: its ids need no mapping."""
        return self.source == SOURCE_BUILT_IN

    def frame(self, words: Sequence[str], *, bos: bool, eos: bool) -> np.ndarray:
        """A sentence in the n-gram model's own ids, framed like ``Vocabulary.frame``."""
        return frame_ids(self.model.ids(words), bos=bos, eos=eos)

    def to_meta(self, network_vocab: Vocabulary) -> dict[str, Any]:
        same = self.model.vocab == network_vocab.tokens
        return {
            "order": self.model.order,
            "source": self.source,
            "neural_weight": self.neural_weight,
            "valid_perplexity": self.valid_perplexity,
            # The built-in model's vocabulary is the network's: not stored twice.
            "vocab": None if same else list(self.model.vocab),
        }

    @classmethod
    def from_checkpoint(
        cls, meta: dict[str, Any], tensors: dict[str, np.ndarray], network_vocab: Vocabulary
    ) -> NgramPart:
        vocab = meta.get("vocab") or network_vocab.tokens
        model = NgramModel.from_tensors(tensors, list(vocab), int(meta["order"]))
        weight = check_neural_weight(float(meta["neural_weight"]))
        return cls(model, str(meta["source"]), weight, dict(meta.get("valid_perplexity") or {}))


def check_neural_weight(weight: Any) -> float:
    return float(number("[0, 1]").check("neural_weight", weight))


class NoNgramPart(ValueError):
    """The model has no n-gram part for what was asked (a state of the model, not a bad
    argument: the service answers FAILED_PRECONDITION)."""


def mix(neural_logp: np.ndarray, ngram_logp: np.ndarray, neural_weight: float) -> np.ndarray:
    """ln(λ·e^a + (1-λ)·e^b) elementwise, exact at λ = 0 and λ = 1."""
    a = np.asarray(neural_logp, dtype=np.float64)
    b = np.asarray(ngram_logp, dtype=np.float64)
    if neural_weight >= 1.0:
        return a
    if neural_weight <= 0.0:
        return b
    return np.logaddexp(math.log(neural_weight) + a, math.log1p(-neural_weight) + b)


def tune_neural_weight(neural_logp: np.ndarray, ngram_logp: np.ndarray) -> float:
    """The λ that maximises the held-out likelihood of the mixture: EM from λ = 0.5, each
    iteration setting λ to the network's mean posterior share of the tokens."""
    a = np.asarray(neural_logp, dtype=np.float64)
    b = np.asarray(ngram_logp, dtype=np.float64)
    if a.size == 0:
        return 0.5
    weight = 0.5
    for _ in range(EM_ITERATIONS):
        posterior = np.exp(math.log(weight) + a - mix(a, b, weight))  # (N,) the network's share
        weight, before = float(np.clip(posterior.mean(), 1e-6, 1.0 - 1e-6)), weight
        if abs(weight - before) < EM_TOLERANCE:
            break
    # EM only approaches an optimum at 0 or 1 (one part is better on every token that
    # matters); take the end itself when it is at least as likely.
    candidates = (round(weight, 6), 0.0, 1.0)
    return max(candidates, key=lambda w: float(mix(a, b, w).sum()))


def perplexity(loss: float) -> float:
    """exp(loss), capped where float64 would overflow; loss: mean negative ln p per token."""
    return math.exp(min(loss, 700.0))


def fit_part(
    part: NgramPart,
    neural_logps: list[np.ndarray],
    ngram_logps: list[np.ndarray],
    neural_weight: float | None = None,
) -> NgramPart:
    """Tune (or take) the weight on held-out per-token scores and record the perplexities."""
    a = np.concatenate(neural_logps) if neural_logps else np.zeros(0)
    b = np.concatenate(ngram_logps) if ngram_logps else np.zeros(0)
    if neural_weight is None:
        part.neural_weight = tune_neural_weight(a, b)
    else:
        part.neural_weight = check_neural_weight(neural_weight)
    if a.size:
        part.valid_perplexity = {
            "neural": perplexity(-a.mean()),
            "ngram": perplexity(-b.mean()),
            "interpolated": perplexity(-mix(a, b, part.neural_weight).mean()),
        }
    return part


@dataclass
class Heldout:
    """Validation sentences kept with a version. Ids below the network's vocabulary size are
    its words; id ``V + k`` is ``extra_words[k]``, a word the network does not know, kept by
    spelling so that an attached n-gram model with its own vocabulary scores it as it
    would score it in a request."""

    sequences: list[np.ndarray]  # framed, cut to max_length windows
    extra_words: list[str]

    @classmethod
    def from_sentences(
        cls, sentences: Sequence[Sequence[str]], vocab: Vocabulary, max_length: int
    ) -> Heldout:
        extra: dict[str, int] = {}
        sequences, tokens = [], 0
        for words in sentences:
            if tokens + len(words) + 2 > HELDOUT_MAX_TOKENS:
                break
            ids = vocab.frame(words)
            for k, word in enumerate(words):
                if ids[k + 1] == UNK_ID:
                    ids[k + 1] = len(vocab) + extra.setdefault(word, len(extra))
            sequences.append(ids)
            tokens += len(ids)
        return cls(split_long(sequences, max_length), list(extra))

    def network_ids(self, vocab: Vocabulary) -> list[np.ndarray]:
        return [np.where(s >= len(vocab), UNK_ID, s) for s in self.sequences]

    def ngram_ids(self, part: NgramPart, vocab: Vocabulary) -> list[np.ndarray]:
        """The same windows in the n-gram model's ids (same framing)."""
        if part.shares_vocab:
            return self.network_ids(vocab)
        # By spelling; the network's special tokens are the n-gram model's.
        lookup = part.model.ids([*vocab.tokens, *self.extra_words])  # (V + extra,)
        lookup[: len(SPECIAL_TOKENS)] = np.arange(len(SPECIAL_TOKENS))
        return [lookup[s] for s in self.sequences]

    def to_checkpoint(self) -> tuple[dict[str, np.ndarray], list[str]]:
        ids = np.concatenate(self.sequences).astype(np.int32)
        lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)
        return {"ids": ids, "lengths": lengths}, self.extra_words

    @classmethod
    def from_checkpoint(
        cls, tensors: dict[str, np.ndarray], extra_words: list[str], vocab_size: int
    ) -> Heldout:
        ids, lengths = tensors["ids"].astype(np.int64), tensors["lengths"].astype(np.int64)
        limit = vocab_size + len(extra_words)
        if lengths.sum() != len(ids) or (len(ids) and (ids.min() < 0 or ids.max() >= limit)):
            raise ValueError("held-out ids do not fit the vocabulary")
        sequences = np.split(ids, np.cumsum(lengths)[:-1]) if len(lengths) else []
        return cls(sequences, [str(w) for w in extra_words])


def check_vocab_overlap(part: NgramPart, network_vocab: Vocabulary) -> None:
    """Refuse an n-gram model that knows none of the network's words: it would score every
    word as its ``<unk>``, which is surely not what its owner meant to attach."""
    if part.shares_vocab:
        return
    words = set(part.model.vocab[len(SPECIAL_TOKENS) :])
    if words.isdisjoint(network_vocab.tokens[len(SPECIAL_TOKENS) :]):
        sample = ", ".join(repr(w[:20]) for w in list(part.model.vocab)[3:6])
        raise ValueError(
            "the ARPA model shares no word with the model's vocabulary "
            f"({len(words):,} ARPA words, e.g. {sample}; {len(network_vocab) - 3:,} model "
            "words): was it built for another language, or with other case folding or "
            "tokenisation than the model's?"
        )


def join_windows(sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Undo ``batching.split_long``: a window that does not start with SENTENCE_START
    continues the previous one (windows overlap by one id), so n-grams are counted on whole
    sentences, each token once."""
    joined: list[np.ndarray] = []
    for seq in sequences:
        if joined and len(seq) and seq[0] != START_ID:
            joined[-1] = np.concatenate([joined[-1], seq[1:]])
        else:
            joined.append(seq)
    return joined


def add_ngram_part(
    lm: Any,
    train_seqs: Sequence[np.ndarray],
    valid_sentences: Sequence[Sequence[str]],
    ngram: NgramModel | None = None,
    source: str = SOURCE_BUILT_IN,
) -> None:
    """At the end of training: keep the validation split with ``lm``, and give it its
    n-gram part (``ngram`` as given, else estimated on the training split at
    ``lm.config.ngram_order``) with the weight tuned on that split."""
    lm.heldout = Heldout.from_sentences(valid_sentences, lm.vocab, lm.train_config.max_length)
    if ngram is None:
        if lm.config.ngram_order == 0:
            return
        ngram = NgramModel.estimate(
            join_windows(train_seqs), lm.vocab.tokens, lm.config.ngram_order
        )
        source = SOURCE_BUILT_IN
    try:
        # Without a validation split there is nothing to tune on: an even mix.
        lm.attach_ngram(ngram, source, None if lm.heldout.sequences else 0.5)
    except ValueError as err:  # the trained network is worth keeping on its own
        warning = f"the n-gram part was not attached: {err}"
        log.warning("%s", warning)
        lm.training_state.warnings.append(warning)
