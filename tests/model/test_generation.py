"""Generation: sampling, greedy, beam search, lengths, seeds and UNKNOWN_TOKEN."""

import pytest

from rnnlm.model import SENTENCE_END, UNKNOWN_TOKEN, Corpus, ModelConfig, TrainConfig, train


def test_same_seed_same_samples(small_lm):
    a = small_lm.generate(num_sentences=3, seed=7, max_length=20)
    b = small_lm.generate(num_sentences=3, seed=7, max_length=20)
    c = small_lm.generate(num_sentences=3, seed=8, max_length=20)
    assert [s.tokens for s in a] == [s.tokens for s in b]
    assert [s.tokens for s in a] != [s.tokens for s in c]


@pytest.mark.parametrize("method", ["sample", "greedy", "beam"])
def test_num_sentences_is_what_comes_back_for_every_method(small_lm, method):
    n = 1 if method == "greedy" else 3
    sentences = small_lm.generate(method=method, num_sentences=n, seed=2, max_length=10)
    assert len(sentences) == n
    if method == "beam":  # the n best, distinct, best first
        assert len({tuple(s.tokens) for s in sentences}) == n
        assert [s.logprob for s in sentences] == sorted(s.logprob for s in sentences)[::-1]


def test_greedy_refuses_more_than_one_sentence_and_a_beam_narrower_than_n(small_lm):
    with pytest.raises(ValueError, match="greedy decoding gives one sentence"):
        small_lm.generate(method="greedy", num_sentences=2)
    with pytest.raises(ValueError, match="beam_width 2 keeps fewer hypotheses than the 3"):
        small_lm.generate(method="beam", num_sentences=3, beam_width=2)


def test_top_k_one_and_beam_width_one_equal_greedy(small_lm):
    greedy = small_lm.generate(method="greedy", max_length=15)[0]
    top1 = small_lm.generate(top_k=1, seed=5, max_length=15)[0]
    beam1 = small_lm.generate(method="beam", beam_width=1, max_length=15)[0]
    assert greedy.tokens == top1.tokens == beam1.tokens
    assert greedy.logprob == pytest.approx(beam1.logprob)


def test_beam_returns_k_best_first_and_beats_greedy(small_lm):
    beams = small_lm.generate(method="beam", num_sentences=4, max_length=12)
    greedy = small_lm.generate(method="greedy", max_length=12)[0]
    assert len(beams) == 4
    assert [b.logprob for b in beams] == sorted((b.logprob for b in beams), reverse=True)
    assert beams[0].logprob >= greedy.logprob - 1e-4  # float32 rows differ by batch size
    assert len({tuple(b.tokens) for b in beams}) == 4


@pytest.mark.parametrize("method", ["sample", "greedy", "beam"])
def test_min_and_max_length_are_respected(small_lm, method):
    n = 1 if method == "greedy" else 5
    for sentence in small_lm.generate(
        method=method, num_sentences=n, seed=1, min_length=4, max_length=9
    ):
        assert 4 <= len(sentence.tokens) <= 9
        assert sentence.finish_reason == ("length" if len(sentence.tokens) == 9 else "end")
        assert UNKNOWN_TOKEN not in sentence.tokens


def test_generated_logprobs_match_the_scorer(small_lm):
    (sentence,) = small_lm.generate(seed=3, max_length=30, temperature=0.8, top_p=0.9)
    # Generation samples from the network alone (the n-gram part only rescores).
    (score,) = small_lm.score(
        [sentence.tokens], eos=sentence.finish_reason == "end", scorer="neural"
    )
    assert sentence.logprob == pytest.approx(score.logprob, abs=1e-4)


def test_prompt_prefix_and_stream_events(small_lm):
    events = list(small_lm.stream("The function", seed=2, max_length=8, num_sentences=2))
    assert {e.sentence for e in events} == {0, 1}
    finals = [e for e in events if e.finish_reason]
    assert len(finals) == 2
    for e in finals:
        assert (e.token == SENTENCE_END) == (e.finish_reason == "end")
    (sentence,) = small_lm.generate("The function", seed=2, max_length=8)
    assert sentence.prompt == ["the", "function"]
    assert sentence.text.startswith("the function")


def test_unknown_token_is_never_generated(pydoc_corpus):
    """A vocabulary of 5 words makes UNKNOWN_TOKEN by far the most likely token, yet it is
    never produced, by any method."""
    lm = train(
        pydoc_corpus,
        ModelConfig(cell="rnn", vocab_size=8, hidden_size=8),
        TrainConfig(epochs=1, valid_fraction=0.0),
    )
    probs = lm.score(["a b c d e f g"])[0]
    assert probs.tokens[0].unknown
    for method in ("sample", "greedy", "beam"):
        n = 1 if method == "greedy" else 20
        for s in lm.generate(method=method, num_sentences=n, seed=0, max_length=10):
            assert UNKNOWN_TOKEN not in s.tokens


def test_tiny_corpus_generates(tmp_path):
    lm = train(
        Corpus.from_text("a b. b a. a a b."),
        ModelConfig(cell="rnn", hidden_size=4),
        TrainConfig(epochs=2, valid_fraction=0.0),
    )
    assert lm.generate(seed=0, max_length=5)
