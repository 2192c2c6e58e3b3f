"""Training data: tokenise a corpus, hold out a validation split, build the vocabulary
and encode both splits as framed id sequences."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from rnnlm.model.batching import split_long
from rnnlm.model.config import ModelConfig, TrainConfig
from rnnlm.model.corpus import Corpus, resolve_sentence_mode
from rnnlm.model.text import Tokenizer
from rnnlm.model.vocab import SPECIAL_TOKENS, UNKNOWN_ALIASES, Vocabulary

if TYPE_CHECKING:
    from rnnlm.model.lm import LanguageModel

log = logging.getLogger("rnnlm.model")

# No real sentence is this long: such "sentences" are whole files read as one paragraph
# (one sentence a line without blank lines) or whole documents on one line.
LONG_SENTENCE_WORDS = 250

_MODE_WORDS = {  # how each sentence mode reads the corpus, and how to ask for the other one
    "line": ("one sentence a line", "set sentences='split' for prose"),
    "split": ("paragraphs split into sentences by Punkt", "set sentences='line' for one a line"),
}


class Prepared(NamedTuple):
    tokenizer: Tokenizer
    vocab: Vocabulary
    train: list[np.ndarray]  # framed id sequences, cut to max_length
    valid: list[np.ndarray]
    warnings: list[str]  # things about the corpus worth telling the user
    valid_sentences: list[list[str]]  # the validation split as words (kept with the model)


def _split(sentences: list[list[str]], fraction: float, seed: int) -> tuple[list, list]:
    order = np.random.default_rng(seed).permutation(len(sentences))
    n_valid = min(round(fraction * len(sentences)), len(sentences) - 1)  # keep some to train on
    valid_idx = set(order[:n_valid].tolist())
    train = [s for i, s in enumerate(sentences) if i not in valid_idx]
    valid = [s for i, s in enumerate(sentences) if i in valid_idx]
    return train, valid


def fit_tokenizer(corpus: Corpus, model_config: ModelConfig) -> Tokenizer:
    """The tokenizer for a new model, reading the corpus as ``model_config`` asks."""
    mode, reason = resolve_sentence_mode(corpus, model_config.sentences)
    how, other = _MODE_WORDS[mode]
    hint = f"; {other}" if model_config.sentences == "auto" else ""
    log.info("corpus read as %s (%s)%s", how, reason, hint)
    return Tokenizer.fit(
        corpus.text, lowercase=model_config.lowercase, words=model_config.words, sentences=mode
    )


def long_sentence_warning(sentences: list[list[str]], mode: str) -> str | None:
    """One line about sentences too long to be sentences, or None when there are none."""
    lengths = [len(s) for s in sentences if len(s) > LONG_SENTENCE_WORDS]
    if not lengths:
        return None
    noun = "sentence" if len(lengths) == 1 else "sentences"
    hint = (
        "is this one sentence a line? set sentences='line'"
        if mode == "split"
        else "do lines hold whole paragraphs? set sentences='split'"
    )
    return (
        f"{len(lengths):,} {noun} longer than {LONG_SENTENCE_WORDS} words "
        f"(longest {max(lengths):,}): {hint}"
    )


def _build_vocab(train_sents: list[list[str]], model_config: ModelConfig) -> Vocabulary:
    vocab = Vocabulary.build(train_sents, model_config.vocab_size, model_config.min_count)
    if len(vocab) > len(SPECIAL_TOKENS):
        return vocab
    if len(Vocabulary.build(train_sents, model_config.vocab_size)) > len(SPECIAL_TOKENS):
        raise ValueError(
            f"no word occurs model_config.min_count={model_config.min_count} times or more "
            "in the training sentences; lower min_count (1 keeps every word) or give more text"
        )
    names = ", ".join([*SPECIAL_TOKENS, *sorted(UNKNOWN_ALIASES)])
    raise ValueError(
        f"corpus has no words besides the special token names ({names}); give ordinary text"
    )


def prepare(
    corpus: Corpus,
    model_config: ModelConfig,
    train_config: TrainConfig,
    resume_from: LanguageModel | None,
) -> Prepared:
    """Tokenise, split and encode. Warnings are logged here and returned for the caller
    to keep (``train`` puts them in ``TrainingState.warnings``)."""
    if resume_from is not None:
        tokenizer = resume_from.tokenizer  # read the corpus exactly as the run started to
    else:
        tokenizer = fit_tokenizer(corpus, model_config)
    sentences = [s for paragraph in corpus.paragraphs for s in tokenizer.sentences(paragraph)]
    if not sentences:
        raise ValueError("corpus has no words after tokenisation; give text with words in it")
    train_sents, valid_sents = _split(sentences, train_config.valid_fraction, train_config.seed)
    vocab = (
        resume_from.vocab if resume_from is not None else _build_vocab(train_sents, model_config)
    )
    warnings = [w for w in [long_sentence_warning(sentences, tokenizer.sentences_mode)] if w]
    for warning in warnings:
        log.warning("corpus: %s", warning)

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
    return Prepared(
        tokenizer, vocab, encode(train_sents), encode(valid_sents), warnings, valid_sents
    )


def target_counts(sequences: list[np.ndarray], vocab_size: int) -> np.ndarray:
    """(V,) how often each id is predicted in training (windows overlap by one id, which
    is the input of the next window, so ``seq[1:]`` counts every target once)."""
    targets = [seq[1:] for seq in sequences]
    joined = np.concatenate(targets) if targets else np.zeros(0, dtype=np.int64)
    return np.bincount(joined, minlength=vocab_size)
