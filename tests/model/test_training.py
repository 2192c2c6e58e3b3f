"""Training: initial loss, real-corpus perplexity, seeds, resume, cancel, early stopping."""

import itertools
import math

import numpy as np
import pytest

from rnnlm.model import (
    Corpus,
    LanguageModel,
    ModelConfig,
    TrainConfig,
    evaluate,
    train,
)
from rnnlm.model.dataset import prepare
from rnnlm.model.engines import create_engine
from rnnlm.model.state import TrainingState, plateau_reached
from tests.conftest import ALL_CELLS, needs_torch, shared_file

TINY = {"vocab_size": 300, "embed_size": 16, "hidden_size": 16}


def weights(lm: LanguageModel) -> dict:
    return lm.engine.state_dict()


def assert_same_weights(a: LanguageModel, b: LanguageModel) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_initial_loss_is_ln_vocabulary_size(cell, pydoc_corpus):
    """The tutorial's check: an untrained model predicts close to uniformly."""
    needs_torch(cell)
    config = ModelConfig(cell=cell, vocab_size=2000, embed_size=64, hidden_size=100)
    prepared = prepare(pydoc_corpus, config, TrainConfig(valid_fraction=0), None)
    vocab, seqs = prepared.vocab, prepared.train
    engine = create_engine(config, len(vocab), seed=0, device="cpu")
    loss, tokens = evaluate(engine, seqs[:500])
    assert loss / tokens == pytest.approx(math.log(len(vocab)), rel=0.02)


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_training_on_a_real_corpus(cell):
    """A short run on real reddit comments: validation perplexity far below the vocabulary
    size (a uniform guess), and a fluent sentence outscores its own scramble."""
    needs_torch(cell)
    corpus = Corpus.from_file(shared_file("reddit/reddit-comments-2015-08-sample.csv"))
    config = ModelConfig(cell=cell, vocab_size=2000, embed_size=64, hidden_size=64)
    events = []
    lm = train(
        corpus,
        config,
        TrainConfig(epochs=3, seed=1, device="cpu", log_every=20),
        on_progress=events.append,
    )
    final = lm.training_state.history[-1]
    assert final["valid_perplexity"] < len(lm.vocab) / 6
    assert final["valid_perplexity"] < lm.training_state.history[0]["valid_perplexity"] * 1.05
    fluent, scrambled = lm.score(["i think it is a good idea .", "idea good a is it think i ."])
    assert fluent.logprob > scrambled.logprob
    assert [e.kind for e in events].count("epoch") == 3
    for e in events:
        assert e.tokens_per_sec > 0 and e.learning_rate > 0 and math.isfinite(e.loss)
        assert e.grad_norm >= 0 and e.eta_s >= 0 and 1 <= e.epoch <= 3


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_same_seed_same_model(cell, pydoc_corpus):
    needs_torch(cell)
    dropout = 0.0 if cell == "rnn" else 0.2  # dropout randomness must be seeded too
    config = ModelConfig(cell=cell, dropout=dropout, **TINY)
    runs = [
        train(pydoc_corpus, config, TrainConfig(epochs=1, seed=s, device="cpu")) for s in (5, 5)
    ]
    assert_same_weights(*runs)
    other = train(pydoc_corpus, config, TrainConfig(epochs=1, seed=6, device="cpu"))
    assert not np.array_equal(
        weights(other)["W" if cell == "rnn" else "decoder.bias"],
        weights(runs[0])["W" if cell == "rnn" else "decoder.bias"],
    )


@pytest.mark.parametrize(
    ("cell", "optimizer"), [("rnn", "adam"), ("rnn", "rmsprop"), ("gru", "adam"), ("lstm", "sgd")]
)
def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(cell, optimizer, pydoc_corpus):
    needs_torch(cell)
    config = ModelConfig(cell=cell, dropout=0.0 if cell == "rnn" else 0.1, **TINY)
    tc = TrainConfig(
        epochs=2, batch_size=16, optimizer=optimizer, checkpoint_every=7, device="cpu", seed=2
    )
    saved = []
    full = train(
        pydoc_corpus, config, tc, on_checkpoint=lambda lm: saved.append(lm.to_bytes(resumable=True))
    )
    # A mid-epoch checkpoint from the second epoch, as if the process died after it.
    steps_per_epoch = full.training_state.history[0]["steps"]
    middle = next(b for i, b in enumerate(saved) if 7 * (i + 1) > steps_per_epoch + 2)
    restored = LanguageModel.from_bytes(middle, device="cpu")
    assert restored.training_state.epoch_step > 0
    resumed = train(pydoc_corpus, resume_from=restored)
    assert_same_weights(full, resumed)
    assert resumed.training_state.history == full.training_state.history


def test_cancel_stops_before_the_next_step(pydoc_corpus):
    polls = []
    saved = []

    def should_stop():
        polls.append(1)
        return len(polls) > 3

    lm = train(
        pydoc_corpus,
        ModelConfig(cell="rnn", **TINY),
        TrainConfig(epochs=5),
        should_stop=should_stop,
        on_checkpoint=lambda m: saved.append(m.to_bytes(resumable=True)),
    )
    assert lm.training_state.status == "cancelled"
    assert lm.training_state.global_step == 3
    # The final checkpoint is resumable and finishes the job.
    with pytest.raises(ValueError, match="train_config.seed must stay 0 when resuming"):
        train(
            pydoc_corpus,
            LanguageModel.from_bytes(saved[-1]).config,
            TrainConfig(seed=1),
            resume_from=LanguageModel.from_bytes(saved[-1]),
        )
    resumed = train(
        pydoc_corpus,
        resume_from=LanguageModel.from_bytes(saved[-1]),
        train_config=TrainConfig(epochs=1),
    )
    assert resumed.training_state.status == "completed"
    assert resumed.training_state.epoch == 1


def test_early_stopping_keeps_the_best_epoch_and_lr_rule(pydoc_corpus):
    """A model that overfits quickly: validation loss rises, the learning rate is halved
    after each epoch without a new best (lr_patience 1), training stops after `patience`
    bad epochs and the returned weights are those of the best epoch."""
    config = ModelConfig(cell="rnn", vocab_size=500, hidden_size=96)
    tc = TrainConfig(
        epochs=40, optimizer="adam", learning_rate=0.02, patience=2, seed=1, valid_fraction=0.2
    )
    lm = train(pydoc_corpus, config, tc)
    state = lm.training_state
    history = state.history
    assert state.status == "early_stopped" and len(history) < 40
    valid = [h["valid_loss"] for h in history]
    rates = [h["learning_rate"] for h in history]
    assert any(b > a for a, b in itertools.pairwise(valid))
    rate, replay = 0.02, TrainingState(0.02)
    for loss, logged in zip(valid, rates, strict=True):  # the plateau rule, replayed
        rate *= tc.lr_decay if plateau_reached(replay, loss, tc) else 1.0
        assert logged == pytest.approx(rate)
    assert rates[-1] < rates[0]
    assert state.best_epoch == 1 + int(np.argmin(valid))
    valid_seqs = prepare(pydoc_corpus, config, tc, lm).valid
    loss, tokens = evaluate(lm.engine, valid_seqs)
    assert loss / tokens == pytest.approx(min(valid), rel=1e-5)


def test_long_sentences_are_cut_to_max_length():
    text = " ".join(f"w{i % 50}" for i in range(500)) + "."
    lm = train(
        text,
        ModelConfig(cell="rnn", hidden_size=8),
        TrainConfig(epochs=1, max_length=20, valid_fraction=0),
    )
    assert lm.training_state.global_step >= 1
    seqs = prepare(Corpus.from_text(text), lm.config, TrainConfig(max_length=20), lm).train
    assert max(len(s) for s in seqs) == 21 and sum(len(s) - 1 for s in seqs) == 502


def test_divergence_is_reported(pydoc_corpus):
    with (
        pytest.raises(FloatingPointError, match="lower train_config.learning_rate"),
        np.errstate(all="ignore"),
    ):
        train(
            pydoc_corpus,
            ModelConfig(cell="rnn", activation="relu", **TINY),
            TrainConfig(epochs=3, optimizer="sgd", learning_rate=1e12, clip=None),
        )
