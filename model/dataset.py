"""Training data: tokenise a corpus, hold out a validation split, build the vocabulary
and encode both splits as framed id sequences."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from .batching import split_long
from .config import ModelConfig, TrainConfig
from .corpus import Corpus
from .text import Tokenizer
from .vocab import SPECIAL_TOKENS, Vocabulary

if TYPE_CHECKING:
    from .lm import LanguageModel

log = logging.getLogger("rnnlm.model")


def _split(sentences: list[list[str]], fraction: float, seed: int) -> tuple[list, list]:
    order = np.random.default_rng(seed).permutation(len(sentences))
    n_valid = round(fraction * len(sentences))
    n_valid = min(n_valid, len(sentences) - 1)  # always keep something to train on
    valid_idx = set(order[:n_valid].tolist())
    train = [s for i, s in enumerate(sentences) if i not in valid_idx]
    valid = [s for i, s in enumerate(sentences) if i in valid_idx]
    return train, valid


def prepare(
    corpus: Corpus,
    model_config: ModelConfig,
    train_config: TrainConfig,
    resume_from: LanguageModel | None,
):
    """Tokenise, split and encode: (tokenizer, vocab, train sequences, valid sequences)."""
    if resume_from is not None:
        tokenizer, vocab = resume_from.tokenizer, resume_from.vocab
    else:
        tokenizer = Tokenizer.fit(corpus.text, lowercase=model_config.lowercase)
    sentences = [s for paragraph in corpus.paragraphs for s in tokenizer.sentences(paragraph)]
    if not sentences:
        raise ValueError("corpus has no words after tokenisation; give text with words in it")
    train_sents, valid_sents = _split(sentences, train_config.valid_fraction, train_config.seed)
    if resume_from is None:
        vocab = Vocabulary.build(train_sents, model_config.vocab_size)
        if len(vocab) <= len(SPECIAL_TOKENS):
            raise ValueError(
                "corpus has no words besides the special token names "
                f"({', '.join(SPECIAL_TOKENS)}); give ordinary text"
            )

    def encode(sents):
        return split_long([vocab.frame(s) for s in sents], train_config.max_length)

    log.info(
        "corpus: %d sentences (%d train, %d validation), vocabulary %d, Punkt %s",
        len(sentences),
        len(train_sents),
        len(valid_sents),
        len(vocab),
        tokenizer.punkt_source,
    )
    return tokenizer, vocab, encode(train_sents), encode(valid_sents)
