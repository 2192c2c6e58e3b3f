"""Reading text as MT and speech users write it: one sentence a line, whitespace words,
``<unk>`` for rare words, and an ``UNKNOWN_TOKEN`` that is trained."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from rnnlm.model import (
    Corpus,
    LanguageModel,
    ModelConfig,
    Tokenizer,
    TrainConfig,
    Vocabulary,
    train,
)
from rnnlm.model.corpus import resolve_sentence_mode
from rnnlm.model.dataset import LONG_SENTENCE_WORDS, long_sentence_warning
from rnnlm.model.text import PUNKT_UNUSED
from rnnlm.model.vocab import UNK_ID

MT_LINES = "acme co. said profits rose .\nwidget inc. fell 3 % .\nthe s&p gained .\n"
TINY = {"cell": "rnn", "hidden_size": 12}


def _mt_corpus(n: int = 200) -> str:
    """Pre-tokenised lines, no blank lines, with <unk> and symbol-laden tokens."""
    rng = np.random.default_rng(0)
    subjects = ["the s&p", "acme co.", "widget inc.", "the hk$", "the <unk>"]
    verbs = ["rose", "fell", "gained", "slipped"]
    return "\n".join(
        f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.integers(1, 9)} @-@ {i % 7} ."
        for i in range(n)
    )


@pytest.fixture(scope="module")
def mt_model() -> LanguageModel:
    return train(
        _mt_corpus(),
        ModelConfig(words="whitespace", **TINY),
        TrainConfig(epochs=1, valid_fraction=0.1, device="cpu"),
    )


# -- words ---------------------------------------------------------------------------------


def test_whitespace_words_keep_pretokenised_tokens_whole():
    tok = Tokenizer.fit("", words="whitespace", sentences="line")
    assert tok.words("The <unk> of S&P and HK$ 5 @-@ 6") == [
        "the", "<unk>", "of", "s&p", "and", "hk$", "5", "@-@", "6",
    ]  # fmt: skip


def test_nltk_words_keep_angle_bracket_tokens_whole():
    tok = Tokenizer.fit("", sentences="line")
    assert tok.words("The <unk> co. said <UNK>.") == ["the", "<unk>", "co.", "said", "<unk>", "."]
    assert tok.words("a</s> <s>b") == ["a", "</s>", "<s>", "b"]
    # Only "<...>" without spaces is protected; loose brackets are split as before.
    assert tok.words("x < y > z") == ["x", "<", "y", ">", "z"]
    assert tok.words("don't") == ["do", "n't"]


# -- sentences -----------------------------------------------------------------------------


def test_line_mode_never_cuts_after_abbreviations_and_trains_no_punkt():
    tok = Tokenizer.fit(MT_LINES * 50, words="whitespace", sentences="line", use_pretrained=False)
    assert tok.sentences(MT_LINES + "\n\n") == [
        ["acme", "co.", "said", "profits", "rose", "."],
        ["widget", "inc.", "fell", "3", "%", "."],
        ["the", "s&p", "gained", "."],
    ]
    data = tok.to_json()
    assert data["punkt_source"] == PUNKT_UNUSED and data["sentences"] == "line"
    assert data["punkt"]["abbrev_types"] == [] and data["punkt"]["ortho_context"] == {}


def test_old_tokenizer_json_without_modes_reads_nltk_words_and_punkt_sentences():
    data = Tokenizer.fit("Some text. More text.", use_pretrained=False).to_json()
    del data["words"], data["sentences"]
    old = Tokenizer.from_json(data)
    assert (old.words_mode, old.sentences_mode) == ("nltk", "split")


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("one line .\nanother line .\na third .", "line"),  # no blank lines at all
        ("\n".join(["a line ."] * 45) + "\n\n" + "\n".join(["b line ."] * 45), "line"),
        ("A paragraph. Wrapped\nhere.\n\nAnother one.\n\nAnd a third.", "split"),
        ("Just one line. Two sentences.", "split"),
    ],
)
def test_auto_reads_line_files_by_line_and_prose_by_punkt(text, mode):
    assert resolve_sentence_mode(Corpus.from_text(text), "auto")[0] == mode


def test_auto_follows_the_corpus_layout_and_explicit_modes_win():
    rows = Corpus.from_csv_text("body\none row\nanother row\n")
    assert resolve_sentence_mode(rows, "auto")[0] == "split"
    lines = Corpus.from_text("a b\n\nc d\n\ne f", paragraphs="line")
    assert resolve_sentence_mode(lines, "auto")[0] == "line"
    assert resolve_sentence_mode(rows, "line") == ("line", "sentences='line'")


def test_auto_decision_is_logged_and_stored(caplog):
    with caplog.at_level(logging.INFO, logger="rnnlm.model"):
        lm = train(MT_LINES * 20, ModelConfig(**TINY), TrainConfig(epochs=1, device="cpu"))
    assert lm.tokenizer.sentences_mode == "line"
    assert "read as one sentence a line (no blank lines); set sentences='split' for prose" in (
        caplog.text
    )


# -- warnings ------------------------------------------------------------------------------


def test_absurdly_long_sentences_are_reported_once(caplog):
    # Unpunctuated lines read as prose: the whole paragraph is one "sentence".
    text = "\n".join(" ".join(f"w{(i + j) % 30}" for j in range(20)) for i in range(30))
    with caplog.at_level(logging.WARNING, logger="rnnlm.model"):
        lm = train(
            text + "\n\n" + text,
            ModelConfig(sentences="split", **TINY),
            TrainConfig(epochs=1, max_length=50, valid_fraction=0, device="cpu"),
        )
    expected = "2 sentences longer than 250 words (longest 600): is this one sentence a line?"
    assert [w[: len(expected)] for w in lm.training_state.warnings] == [expected]
    assert "set sentences='line'" in lm.training_state.warnings[0]
    assert expected in caplog.text
    again = LanguageModel.from_bytes(lm.to_bytes())
    assert again.training_state.warnings == lm.training_state.warnings


def test_no_warning_for_ordinary_sentences():
    assert long_sentence_warning([["w"] * LONG_SENTENCE_WORDS], "split") is None
    line = long_sentence_warning([["w"] * (LONG_SENTENCE_WORDS + 1)], "line")
    assert line.startswith("1 sentence longer") and "sentences='split'" in line


# -- vocabulary ----------------------------------------------------------------------------


def test_unknown_aliases_are_unk_and_never_vocabulary_entries():
    vocab = Vocabulary.build([["<unk>", "<UNK>", "<s>", "</s>", "cat"]] * 3, max_size=10)
    assert vocab.tokens[3:] == ["cat"]
    assert vocab.encode(["<unk>", "<Unk>", "</s>", "cat"]).tolist() == [UNK_ID] * 3 + [3]
    with pytest.raises(ValueError, match="may not list '<unk>'"):
        Vocabulary(["UNKNOWN_TOKEN", "SENTENCE_START", "SENTENCE_END", "<unk>"])


def test_min_count_drops_rare_words_keeping_frequency_order():
    sentences = [["b", "a", "c"], ["a", "b", "d"], ["c", "a"]]
    assert Vocabulary.build(sentences, 10, min_count=2).tokens[3:] == ["a", "b", "c"]
    assert Vocabulary.build(sentences, 5, min_count=2).tokens[3:] == ["a", "b"]
    assert Vocabulary.build(sentences, 10).tokens[3:] == ["a", "b", "c", "d"]


def test_min_count_that_filters_every_word_says_what_to_do():
    with pytest.raises(ValueError, match="lower min_count"):
        train("a b c d\ne f g h", ModelConfig(min_count=2, **TINY), TrainConfig(valid_fraction=0))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sentences", "paragraph", "model_config.sentences must be one of 'auto', 'split'"),
        ("words", "spacy", "model_config.words must be one of 'nltk', 'whitespace'"),
        ("min_count", 0, "model_config.min_count must be an integer >= 1, got 0"),
        ("min_count", True, "model_config.min_count must be an integer >= 1"),
    ],
)
def test_text_options_are_validated(field, value, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{field: value})


def _unk_logprob(min_count: int) -> float:
    """ln p(UNKNOWN_TOKEN) for a word never seen in training, after a short training."""
    rng = np.random.default_rng(1)
    nouns = ["cat", "dog", "fox", "owl", "ant", "bee"]
    lines = []
    for i in range(600):  # a third of the nouns are words seen once
        noun = f"rare{i}" if i % 3 == 0 else rng.choice(nouns)
        lines.append(f"the {noun} sat on the {rng.choice(nouns)} .")
    lm = train(
        "\n".join(lines),
        ModelConfig(cell="rnn", hidden_size=16, min_count=min_count),
        TrainConfig(epochs=3, valid_fraction=0, device="cpu"),
    )
    token = lm.score([["the", "zebra", "sat", "on", "the", "cat", "."]])[0].tokens[1]
    assert token.unknown
    return token.logprob


def test_unknown_token_is_trained_with_min_count():
    trained, untrained = _unk_logprob(2), _unk_logprob(1)
    assert trained > -2.5  # about ln(1/3): a third of the nouns were rare
    assert untrained < trained - 3  # never a target: pushed down with every step


# -- checkpoints and scoring ---------------------------------------------------------------


def test_checkpoint_keeps_the_modes_and_scoring_uses_them(mt_model):
    again = LanguageModel.from_bytes(mt_model.to_bytes(), device="cpu")
    assert (again.tokenizer.words_mode, again.tokenizer.sentences_mode) == ("whitespace", "line")
    assert (again.config.words, again.config.min_count) == ("whitespace", 2)
    score = again.score(["The S&P rose 5 @-@ 3 ."])[0]
    assert score.words == ["the", "s&p", "rose", "5", "@-@", "3", "."]
    assert "s&p" in again.vocab and score.unknown_words == []
    unk = again.score(["the <unk> rose ."])[0]
    assert unk.tokens[1].unknown and unk.unknown_words == ["<unk>"]
    # Running text is read as it was in training too: one sentence a line.
    assert math.isfinite(again.perplexity("acme co. rose 2 @-@ 1 .\nthe s&p fell 3 @-@ 2 ."))
