"""Scoring: per-token log-probs, totals, unknown words, bos/eos, batch invariance."""

import math

import numpy as np
import pytest

from rnnlm.model import SENTENCE_END

SENTENCES = [
    "The function returns a new list.",
    "list new a returns function the.",
    "A zyzzyva quux frobnicates the object.",
    "If the value is not found, an exception is raised.",
    "x",
]


def test_scores_are_consistent(small_lm):
    scores = small_lm.score(SENTENCES)
    assert len(scores) == len(SENTENCES)
    for s in scores:
        per_token = [t.logprob for t in s.tokens]
        assert all(lp <= 0 for lp in per_token)
        assert s.logprob == pytest.approx(sum(per_token))
        assert s.log10prob == pytest.approx(s.logprob / math.log(10))
        assert s.perplexity == pytest.approx(math.exp(-s.logprob / len(s.tokens)))
        # bos + eos: every word is scored, then SENTENCE_END.
        assert [t.token for t in s.tokens] == [*s.words, SENTENCE_END]
    assert scores[0].words == ["the", "function", "returns", "a", "new", "list", "."]


def test_unknown_words_are_flagged(small_lm):
    (score,) = small_lm.score([SENTENCES[2]])
    assert score.unknown_words == ["zyzzyva", "quux", "frobnicates"]
    flagged = [t.token for t in score.tokens if t.unknown]
    assert flagged == ["zyzzyva", "quux", "frobnicates"]


def test_the_tokens_read_as_a_list(small_lm):
    """A score's tokens are kept as arrays (``TokenScores``); read by index, by slice or in
    a loop they are the same ``TokenScore`` values, with SENTENCE_END and the unknown flags
    where a list would have them."""
    for bos, eos in [(True, True), (False, True), (True, False)]:
        (score,) = small_lm.score([SENTENCES[2]], bos=bos, eos=eos)
        listed = list(score.tokens)
        n = len(listed)
        assert [score.tokens[i] for i in range(n)] == listed
        assert [score.tokens[i] for i in range(-n, 0)] == listed
        assert score.tokens[1:3] == listed[1:3] and score.tokens == listed
        with pytest.raises(IndexError, match="out of range"):
            score.tokens[n]
        with pytest.raises(IndexError, match="out of range"):
            score.tokens[-n - 1]
    assert score.tokens[-1].token == "." and listed[1].unknown


def test_pretokenised_input_is_not_retokenised(small_lm):
    raw, words = small_lm.score(
        [SENTENCES[0], ["The", "function", "returns", "a", "new", "list", "."]]
    )
    assert words.words == raw.words
    assert words.logprob == pytest.approx(raw.logprob, abs=1e-4)


def test_bos_and_eos_switches(small_lm):
    both, no_eos, no_bos = (
        small_lm.score([SENTENCES[0]], bos=b, eos=e)[0]
        for b, e in [(True, True), (True, False), (False, True)]
    )
    assert [t.token for t in no_eos.tokens] == no_eos.words
    assert no_eos.logprob == pytest.approx(both.logprob - both.tokens[-1].logprob, abs=1e-5)
    # Without bos the first word is context only.
    assert [t.token for t in no_bos.tokens] == [*no_bos.words[1:], SENTENCE_END]
    (empty,) = small_lm.score([["only"]], bos=False, eos=False)
    assert empty.tokens == [] and empty.logprob == 0.0 and math.isnan(empty.perplexity)


def test_score_does_not_depend_on_the_batch(small_lm):
    """Each sentence alone versus in a large mixed batch: max abs difference 1e-4."""
    rng = np.random.default_rng(0)
    words = small_lm.vocab.tokens[3:]
    batch = [" ".join(rng.choice(words, size=rng.integers(1, 40))) for _ in range(100)]
    batch += SENTENCES
    together = small_lm.score(batch, batch_size=64)
    for sentence, score in zip(batch, together):
        (alone,) = small_lm.score([sentence])
        diffs = [abs(a.logprob - b.logprob) for a, b in zip(alone.tokens, score.tokens)]
        assert max(diffs) < 1e-4


def test_rank_orders_candidates_best_first(small_lm):
    scores = small_lm.score(SENTENCES)
    ranked = small_lm.rank(SENTENCES)
    assert sorted(i for i, _ in ranked) == list(range(len(SENTENCES)))
    assert [s.logprob for _, s in ranked] == sorted((s.logprob for s in scores), reverse=True)
    assert all(scores[i].logprob == s.logprob for i, s in ranked)


@pytest.mark.parametrize("bad", [[3], [["a", 5]], [None]])
def test_bad_sentence_input(small_lm, bad):
    with pytest.raises(ValueError, match=r"sentences\[0\] must be a string or a list of word"):
        small_lm.score(bad)


def test_one_string_is_not_a_list_of_sentences(small_lm):
    with pytest.raises(ValueError, match="not one string"):
        small_lm.score("a sentence")


def test_long_sentences_come_in_token_capped_batches(small_lm, monkeypatch):
    """A batch's padded size (rows x longest) stays under BATCH_MAX_TOKENS, so the output
    layer's (rows, V) logits are bounded however long the sentences; scores do not change."""
    from rnnlm.model import scoring
    from rnnlm.model.batching import length_sorted_batches

    rng = np.random.default_rng(0)
    seqs = [np.array([1, *rng.integers(3, 20, n), 2]) for n in (5, 40, 41, 90, 7, 60)]
    batches = list(length_sorted_batches(seqs, 64, max_tokens=100))
    assert sorted(i for idx, _ in batches for i in idx) == list(range(6))
    for _, batch in batches:
        assert batch.inputs.size <= 100 or len(batch.inputs) == 1
    assert len(batches) > 1

    sentences = ["the function returns a new list . " * 30, *SENTENCES]
    want = [s.logprob for s in small_lm.score(sentences, scorer="neural")]
    monkeypatch.setattr(scoring, "BATCH_MAX_TOKENS", 50)
    got = [s.logprob for s in small_lm.score(sentences, scorer="neural")]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
