"""Edge cases and user errors: each gives a clear ValueError, or the right result."""

import json
import math
import struct

import numpy as np
import pytest

from rnnlm.model import (
    SENTENCE_END,
    CheckpointError,
    Corpus,
    LanguageModel,
    ModelConfig,
    TrainConfig,
    Vocabulary,
    train,
)
from rnnlm.model.decoding import beam_search, sample_events
from rnnlm.model.engines.base import NumpyDecoding
from rnnlm.model.generation import GenerationConfig
from rnnlm.model.vocab import END_ID

TINY = ModelConfig(cell="rnn", vocab_size=300, hidden_size=16)


class FixedEngine(NumpyDecoding):
    """A stand-in engine with a known distribution over [UNK, START, END, 'a']: after
    SENTENCE_START, 'a' 0.6 and END 0.4; after 'a', 'a' 0.55 and END 0.45."""

    vocab_size = 4

    def initial_state(self, rows):
        return np.zeros(rows, dtype=np.int64)

    def step(self, tokens, state):
        first = np.array([[1e-9, 1e-9, 0.4, 0.6]])
        later = np.array([[1e-9, 1e-9, 0.45, 0.55]])
        probs = np.where((tokens == 1)[:, None], first, later)
        return np.log(probs), state + 1

    def select_state(self, state, rows):
        return state[rows]


def test_beam_width_one_is_greedy_even_when_an_early_end_scores_higher():
    vocab = Vocabulary(["UNKNOWN_TOKEN", "SENTENCE_START", "SENTENCE_END", "a"])
    config = GenerationConfig(method="beam", beam_width=1, min_length=0, max_length=4)
    greedy = [
        e.token
        for e in sample_events(
            FixedEngine(),
            vocab,
            np.zeros(0, np.int64),
            GenerationConfig(method="greedy", min_length=0, max_length=4),
        )
    ]
    ((ids, _, reason),) = beam_search(FixedEngine(), vocab, np.zeros(0, np.int64), config)
    assert greedy == ["a"] * 4 and vocab.decode(ids) == greedy and reason == "length"
    # A wider beam does find the better, shorter sentence ('SENTENCE_END' at once: ln 0.4).
    wide = beam_search(
        FixedEngine(),
        vocab,
        np.zeros(0, np.int64),
        GenerationConfig(method="beam", beam_width=2, min_length=0, max_length=4),
    )
    assert wide[0][0] == [] and wide[0][1] == pytest.approx([math.log(0.4)])


def test_special_token_names_in_text_are_ordinary_unknown_words():
    vocab = Vocabulary.build([["SENTENCE_END", "cat"]], max_size=10)
    assert vocab.frame(["SENTENCE_END", "cat"]).tolist() == [1, 0, 3, END_ID]
    assert "SENTENCE_END" not in vocab and "cat" in vocab
    with pytest.raises(ValueError, match="no words besides the special token names"):
        train(
            "SENTENCE_END UNKNOWN_TOKEN",
            ModelConfig(cell="rnn", lowercase=False),
            TrainConfig(epochs=1, valid_fraction=0),
        )


def test_reloaded_resumable_checkpoint_saves_back_unchanged(small_lm, pydoc_corpus):
    data = small_lm.to_bytes(resumable=True)
    assert LanguageModel.from_bytes(data, device="cpu").to_bytes(resumable=True) == data


def test_epoch_events_report_the_epochs_training_loss(pydoc_corpus):
    events = []
    lm = train(pydoc_corpus, TINY, TrainConfig(epochs=2, log_every=1), on_progress=events.append)
    epoch_events = [e for e in events if e.kind == "epoch"]
    assert len(epoch_events) == 2
    for event, summary in zip(epoch_events, lm.training_state.history):
        assert event.loss == pytest.approx(summary["train_loss"])
        assert event.valid_loss == pytest.approx(summary["valid_loss"])
        assert event.tokens_per_sec > 0
    assert all(e.tokens_per_sec > 0 for e in events)


OPTIMIZER = TrainConfig().optimizer  # the default, which the first run below uses


def test_resume_checks_and_new_learning_rate(pydoc_corpus):
    saved = []
    train(
        pydoc_corpus,
        TINY,
        TrainConfig(epochs=1),
        on_checkpoint=lambda m: saved.append(m.to_bytes(resumable=True)),
    )

    def restored():
        return LanguageModel.from_bytes(saved[-1])

    with pytest.raises(ValueError, match=f"train_config.optimizer must stay '{OPTIMIZER}'"):
        train(pydoc_corpus, TINY, TrainConfig(epochs=2, optimizer="sgd"), resume_from=restored())
    with pytest.raises(ValueError, match="corpus differs"):
        train(
            pydoc_corpus.text + "\n\nMore text.",
            TINY,
            TrainConfig(epochs=2),
            resume_from=restored(),
        )
    lm = train(
        pydoc_corpus, TINY, TrainConfig(epochs=2, learning_rate=0.001), resume_from=restored()
    )
    assert lm.training_state.history[-1]["learning_rate"] in (0.001, 0.0005)


@pytest.mark.parametrize("size", [0, -1, 2.5, "8"])
def test_score_batch_size_is_checked(small_lm, size):
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        small_lm.score(["a sentence ."], batch_size=size)


def test_clear_errors_for_user_mistakes(small_lm, tmp_path):
    with pytest.raises(ValueError, match="unknown option.*topk.*allowed: method"):
        small_lm.generate(topk=3)
    with pytest.raises(ValueError, match="temperature"):
        small_lm.generate(temperature=True)
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda'"):
        LanguageModel.from_bytes(small_lm.to_bytes(), device="gpu")
    with pytest.raises(ValueError, match="is a directory"):
        LanguageModel.load(tmp_path)
    with pytest.raises(ValueError, match="must be a list of sentences, got NoneType"):
        small_lm.score(None)
    with pytest.raises(ValueError, match="corpus must be a Corpus or a str"):
        train(b"bytes are not text", TINY)


def test_checkpoint_metadata_that_is_not_an_object_is_refused():
    header = json.dumps({"__metadata__": {"rnnlm": json.dumps("just a string")}}).encode()
    data = struct.pack("<Q", len(header)) + header
    with pytest.raises(CheckpointError, match="not an rnnlm checkpoint"):
        LanguageModel.from_bytes(data)


def test_csv_with_long_fields(tmp_path):
    long_comment = "word " * 40_000 + "end."  # 200 KB: over the csv module's default limit
    path = tmp_path / "long.csv"
    path.write_text(f'body\n"{long_comment}"\n"short one."\n', encoding="utf-8")
    assert len(Corpus.from_file(path)) == 2


def test_generated_end_token_is_reported_once(small_lm):
    events = list(small_lm.stream(seed=0, num_sentences=3, max_length=40))
    for sentence in range(3):
        tokens = [e.token for e in events if e.sentence == sentence]
        assert tokens.count(SENTENCE_END) <= 1
        assert SENTENCE_END not in tokens[:-1]


def test_without_log_every_progress_comes_from_the_first_step(pydoc_corpus):
    """log_every unset: a step event after the first step (a watcher sees progress and an
    ETA at once), then by the clock; tokens/s stays positive and finite."""
    events = []
    train(pydoc_corpus, TINY, TrainConfig(epochs=1), on_progress=events.append)
    steps = [e for e in events if e.kind == "step"]
    assert steps and steps[0].step == 1 and steps[0].eta_seconds > 0
    assert all(e.tokens_per_second > 0 and math.isfinite(e.tokens_per_second) for e in steps)
