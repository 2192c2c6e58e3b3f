"""Interpolation of the network with its n-gram part: the mixture, λ by EM, the part built at
the end of training, checkpoints, attaching an ARPA model, scorers and length norms."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from rnnlm.model import LanguageModel, ModelConfig, TrainConfig, train
from rnnlm.model.interpolation import NoNgramPart, join_windows, mix, tune_neural_weight
from rnnlm.model.ngram import NgramModel
from rnnlm.model.scoring import length_normalized
from rnnlm.model.vocab import SPECIAL_TOKENS, START_ID

SENTENCES = ["the function returns a new list .", "list new a returns function the ."]


@pytest.fixture(scope="module")
def lm(pydoc_text) -> LanguageModel:
    return train(
        pydoc_text[:150_000],
        ModelConfig(cell="gru", vocab_size=800, embed_size=32, hidden_size=32, ngram_order=3),
        TrainConfig(epochs=2, seed=1, log_every=10**6),
    )


def test_mix_is_exact_at_both_ends_and_a_mixture_between():
    a, b = np.log([0.2, 0.5]), np.log([0.6, 0.1])
    assert np.array_equal(mix(a, b, 1.0), a) and np.array_equal(mix(a, b, 0.0), b)
    assert np.allclose(np.exp(mix(a, b, 0.25)), 0.25 * np.exp(a) + 0.75 * np.exp(b))


def test_em_finds_the_likelihood_maximum():
    rng = np.random.default_rng(0)
    a = np.log(rng.uniform(0.01, 1, 5000))
    b = np.log(rng.uniform(0.01, 1, 5000))
    weight = tune_neural_weight(a, b)
    grid = np.linspace(0.001, 0.999, 999)
    best = grid[np.argmax([mix(a, b, w).sum() for w in grid])]
    assert abs(weight - best) < 2e-3
    assert mix(a, b, weight).sum() >= mix(a, b, best).sum() - 1e-6
    assert tune_neural_weight(a, a - 5) > 0.99  # the network always better: all weight on it


def test_join_windows_restores_whole_sentences():
    sentence = np.array([START_ID, 5, 6, 7, 8, 9, 2])
    other = np.array([START_ID, 4, 2])
    windows = [sentence[:4], sentence[3:], other]  # split_long's overlap of one id
    joined = join_windows(windows)
    assert [list(s) for s in joined] == [list(sentence), list(other)]


def _long_and_short_range_text(sentences: int = 2500, seed: int = 0) -> str:
    """Each line opens with a topic word and closes with that topic's word, six words later:
    out of a trigram's reach, easy for a GRU. In between, each word is followed by one of
    two successors: local structure that a trigram has exactly after one pass."""
    rng = np.random.default_rng(seed)
    topics = {"alpha": "yes", "beta": "no", "gamma": "maybe", "delta": "never"}
    fillers = [f"w{i}" for i in range(40)]
    lines = []
    for _ in range(sentences):
        topic = rng.choice(list(topics))
        words, w = [topic], int(rng.integers(40))
        for _ in range(6):
            words.append(fillers[w])
            w = (3 * w + 1 + int(rng.integers(2))) % 40
        lines.append(" ".join([*words, topics[topic]]))
    return "\n".join(lines)


def test_training_tunes_the_weight_below_both_parts():
    lm = train(
        _long_and_short_range_text(),
        ModelConfig(cell="gru", vocab_size=100, embed_size=24, hidden_size=24, ngram_order=3),
        TrainConfig(epochs=2, seed=1, log_every=10**6, optimizer="adam", learning_rate=0.01),
    )
    part = lm.ngram
    assert part is not None and part.source == "built-in" and part.model.order == 3
    assert 0.0 < part.neural_weight < 1.0
    valid = part.valid_perplexity
    assert valid["interpolated"] < min(valid["neural"], valid["ngram"])
    assert lm.heldout.sequences and lm.heldout.sequences[0][0] == START_ID


def test_scorers_tokens_and_orders(lm):
    neural, ngram, mixed = (lm.score(SENTENCES, scorer=s) for s in ("neural", "ngram", None))
    weight = lm.ngram.neural_weight
    for n, g, m in zip(neural, ngram, mixed):
        assert all(t.ngram_order == 0 for t in n.tokens)
        assert all(1 <= t.ngram_order <= 3 for t in g.tokens)
        want = [math.log(weight * math.exp(x.logprob) + (1 - weight) * math.exp(y.logprob))
                for x, y in zip(n.tokens, g.tokens)]  # fmt: skip
        assert [t.logprob for t in m.tokens] == pytest.approx(want, abs=1e-9)
    with pytest.raises(ValueError, match="neural_weight must be a number in"):
        lm.score(SENTENCES, neural_weight=1.01)
    with pytest.raises(ValueError, match="scorer must be one of"):
        lm.score(SENTENCES, scorer="kenlm")


def test_checkpoint_keeps_the_part_and_the_heldout_text(lm):
    again = LanguageModel.from_bytes(lm.to_bytes())
    assert again.ngram.neural_weight == lm.ngram.neural_weight
    assert again.ngram.valid_perplexity == lm.ngram.valid_perplexity
    assert [list(s) for s in again.heldout.sequences] == [list(s) for s in lm.heldout.sequences]
    assert again.heldout.extra_words == lm.heldout.extra_words
    want = [s.logprob for s in lm.score(SENTENCES)]
    assert [s.logprob for s in again.score(SENTENCES)] == pytest.approx(want, abs=1e-9)


def test_attaching_an_arpa_model_with_its_own_vocabulary(lm):
    buffer = io.StringIO()
    lm.ngram.model.to_arpa(buffer)
    arpa = NgramModel.from_arpa(buffer.getvalue().splitlines())
    copy = LanguageModel.from_bytes(lm.to_bytes())
    part = copy.attach_ngram(arpa, "arpa:own.arpa")
    assert not part.shares_vocab  # looked up by spelling: the same scores up to ARPA digits
    assert part.neural_weight == pytest.approx(lm.ngram.neural_weight, abs=1e-3)
    got = [s.logprob for s in copy.score(SENTENCES, scorer="ngram")]
    assert got == pytest.approx([s.logprob for s in lm.score(SENTENCES, scorer="ngram")], abs=1e-4)
    foreign = NgramModel.estimate([np.array([1, 3, 4, 2])], [*SPECIAL_TOKENS, "qqzx", "zzqy"], 2)
    with pytest.raises(ValueError, match="shares no word"):
        copy.attach_ngram(foreign, "arpa:foreign.arpa")


def test_a_model_without_ngram_part_scores_with_the_network(pydoc_text):
    plain = train(
        pydoc_text[:30_000],
        ModelConfig(cell="rnn", vocab_size=300, hidden_size=16, ngram_order=0),
        TrainConfig(epochs=1, log_every=10**6),
    )
    assert plain.ngram is None
    assert plain.scoring_setup() == ("neural", 1.0)
    with pytest.raises(NoNgramPart, match="needs an n-gram part"):
        plain.score(SENTENCES, scorer="interpolated")


def test_length_norms(lm):
    (score,) = lm.score(SENTENCES[:1])
    n = len(score.tokens)
    assert length_normalized(score) == score.logprob
    assert length_normalized(score, "average") == pytest.approx(score.logprob / n)
    gnmt = length_normalized(score, "gnmt", 1.0)
    assert gnmt == pytest.approx(score.logprob * 6 / (5 + n))
    with pytest.raises(ValueError, match="length_norm must be one of"):
        length_normalized(score, "sqrt")
    ranked = lm.rank(SENTENCES, length_norm="average")
    assert [i for i, _ in ranked] == [0, 1]
