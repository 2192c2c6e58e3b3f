"""``top_alternatives``: the most probable tokens at each position come from the same
distribution as ``LanguageModel.score``'s values, for every scorer, framing and engine, and
for an attached ARPA model with a vocabulary of its own."""

from __future__ import annotations

import io

import numpy as np
import pytest

from rnnlm.model.alternatives import top_alternatives
from rnnlm.model.ngram import NgramModel
from rnnlm.model.vocab import SENTENCE_START, UNKNOWN_TOKEN

TEXT = "The value of the expression is returned as the result , zyzzyva ."
TOLERANCE = 1e-5  # float32 engines: a step at a time against batched scoring


def check_against_score(lm, scorer, bos, eos):
    words = lm.words(TEXT)
    (score,) = lm.score([words], bos=bos, eos=eos, scorer=scorer)
    everything = top_alternatives(lm, words, len(lm.vocab), bos=bos, eos=eos, scorer=scorer)
    assert len(everything) == len(score.tokens)
    for token, alternatives in zip(score.tokens, everything):
        table = dict(alternatives)
        key = UNKNOWN_TOKEN if token.unknown else token.token
        assert abs(table[key] - token.logprob) < TOLERANCE, (token, table[key])
        values = [v for _, v in alternatives]
        assert values == sorted(values, reverse=True) and SENTENCE_START not in table
        # A distribution: all but SENTENCE_START's share (never a target) adds up to 1.
        assert 0.9 < np.exp(np.logaddexp.reduce(values)) <= 1 + TOLERANCE


@pytest.mark.parametrize("scorer", ["neural", "ngram", "interpolated"])
@pytest.mark.parametrize(("bos", "eos"), [(True, False), (False, True), (True, True)])
def test_alternatives_are_the_scores_distribution(small_lm, scorer, bos, eos):
    check_against_score(small_lm, scorer, bos, eos)


def test_an_attached_arpa_model_with_its_own_vocabulary(small_models):
    lm = small_models["rnn"]
    arpa = io.StringIO()
    lm.ngram.model.to_arpa(arpa)
    lines = arpa.getvalue().splitlines()
    own = NgramModel.from_arpa(lines)
    saved = lm.ngram
    try:
        lm.attach_ngram(own, "arpa:own.arpa", neural_weight=0.4)
        assert not lm.ngram.shares_vocab
        for scorer in ("ngram", "interpolated"):
            check_against_score(lm, scorer, bos=True, eos=True)
    finally:
        lm.ngram = saved


def test_k_best_and_refusals(small_models):
    lm = small_models["rnn"]
    words = lm.words(TEXT)
    three = top_alternatives(lm, words, 3)
    assert all(len(a) == 3 for a in three) and len(three) == len(words)  # bos, no eos
    assert top_alternatives(lm, [], 2) == []  # nothing is scored
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_alternatives(lm, words, 0)
