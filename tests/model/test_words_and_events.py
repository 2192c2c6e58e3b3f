"""The model owns language once: ``LanguageModel.words`` (text or words -> the words it
scores), ``rank_scores`` (the one ranking) and ``with_text`` (the one sentence assembly)."""

from __future__ import annotations

import pytest

from rnnlm.model import SENTENCE_END, GeneratedSentence, Words
from rnnlm.model.scoring import length_normalized, rank_scores

SENTENCES = ["The cat sat on the mat .", "Mat the on sat cat the .", "Return the value ."]


def test_words_are_made_once_and_then_taken_as_they_are(small_lm, monkeypatch):
    words = small_lm.words(SENTENCES[0])
    assert isinstance(words, Words) and words[0] == "the"
    assert small_lm.words(words) is words
    assert small_lm.words(["The", "Cat"]) == ("the", "cat")  # a word list: only folded
    want = small_lm.score([SENTENCES[0]])[0]

    def refuse(*args):
        raise AssertionError("Words were tokenised or folded again")

    monkeypatch.setattr(small_lm.tokenizer, "words", refuse)
    monkeypatch.setattr(small_lm.tokenizer, "normalize", refuse)
    (got,) = small_lm.score([words])
    assert got.words == want.words and got.logprob == pytest.approx(want.logprob, abs=1e-9)


def test_words_name_what_is_wrong(small_lm):
    with pytest.raises(ValueError, match=r"prompt must be a string or a list of word"):
        small_lm.generate(prompt=5)
    with pytest.raises(ValueError, match=r"sentences\[3\] must be a string"):
        small_lm.words(None, "sentences[3]")


def test_rank_scores_is_the_one_ranking(small_lm):
    scores = small_lm.score(SENTENCES)
    ranked = rank_scores(scores, "average")
    keys = [length_normalized(s, "average") for s in scores]
    assert [r.index for r in ranked] == sorted(range(3), key=lambda i: -keys[i])
    assert [r.rank_score for r in ranked] == sorted(keys, reverse=True)
    in_order = rank_scores(scores, "average", sort=False)
    assert [r.index for r in in_order] == [0, 1, 2]
    assert [r.score for r in in_order] == scores
    pairs = small_lm.rank(SENTENCES, length_norm="average")
    assert [i for i, _ in pairs] == [r.index for r in ranked]


@pytest.mark.parametrize("method", ["sample", "beam"])
def test_stream_events_carry_the_finished_sentence_text(small_lm, method):
    options = {"method": method, "num_sentences": 2, "beam_width": 2, "seed": 4}
    events = list(small_lm.stream("The function", max_length=8, **options))
    sentences = small_lm.generate("The function", max_length=8, **options)
    finals = [e for e in events if e.finish_reason is not None]
    assert [e.text for e in finals] == [s.text for s in sentences]
    assert all(e.text == "" for e in events if e.finish_reason is None)
    for s in sentences:
        assert s.prompt == ["the", "function"] and s.text.startswith("the function")


def test_a_sentence_from_its_events(small_lm):
    events = []
    for event in small_lm.stream(seed=1, max_length=30):
        events.append(event)
    sentence = GeneratedSentence.from_events([], events)
    assert sentence.tokens == [e.token for e in events if e.token != SENTENCE_END]
    assert sentence.logprobs == [e.logprob for e in events]
    assert (sentence.finish_reason, sentence.text) == (events[-1].finish_reason, events[-1].text)
    assert small_lm.generate(seed=1, max_length=30) == [sentence]
