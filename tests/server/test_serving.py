"""The service core without a transport: what any front end (gRPC today, HTTP later) gets
from ``Serving`` with plain-Python arguments. The wire side is tests/e2e's."""

from __future__ import annotations

import pytest

from rnnlm.model import LanguageModel
from rnnlm.model.scoring import rank_scores
from rnnlm.model.stopping import Stopped
from rnnlm.server.cache import LoadedModel
from rnnlm.server.config import ServerConfig
from rnnlm.server.errors import InvalidArgument, NotFound, ResourceExhausted
from rnnlm.server.metrics import Metrics
from rnnlm.server.serving import GenerateOptions, ScoreOptions, Serving

SENTENCES = ["The cat sat on the mat .", "Mat the on sat cat the .", "Return the value ."]


class OneModel:
    """A cache holding one model, version 7 (loading from a store is ModelCache's part)."""

    def __init__(self, lm: LanguageModel) -> None:
        self.entry = LoadedModel("m", 7, "sha", lm)

    def get(self, model_id: str) -> LoadedModel:
        if model_id != "m":
            raise NotFound(f"model {model_id!r} does not exist")
        return self.entry


@pytest.fixture
def lm(small_models) -> LanguageModel:
    return small_models["rnn"]


def serving(lm: LanguageModel, **limits: int) -> Serving:
    cache = OneModel(lm)  # stands in for a ModelCache: only get() is used
    return Serving(ServerConfig(**limits), cache, Metrics())  # type: ignore[arg-type]


def test_score_ranks_with_the_model(lm):
    options = ScoreOptions(length_norm="average", rank=True, bos=True)
    scored = serving(lm).score("m", SENTENCES, options)
    assert (scored.model_id, scored.model_version) == ("m", 7)
    assert (scored.scorer, scored.neural_weight) == lm.scoring_setup()
    want = rank_scores(lm.score(SENTENCES), "average")
    assert [r.index for r in scored.scores] == [r.index for r in want]
    for got, expected in zip(scored.scores, want):
        assert got.rank_score == pytest.approx(expected.rank_score, abs=1e-6)
    in_order = serving(lm).score("m", [["The", "CAT"]], ScoreOptions())
    assert in_order.scores[0].score.words == ["the", "cat"]


def test_score_limits(lm):
    core = serving(lm, max_sentences_per_request=2, max_tokens_per_sentence=3)
    with pytest.raises(InvalidArgument, match="sentences is empty"):
        core.score("m", [])
    with pytest.raises(ResourceExhausted, match="3 sentences in one request; the limit is 2"):
        core.score("m", ["a", "b", "c"])
    with pytest.raises(ResourceExhausted, match=r"sentences\[1\] has 4 words; the limit is 3"):
        core.score("m", ["a b", "a b c d"])
    with pytest.raises(ResourceExhausted, match="is 193 characters; at most 192"):
        core.score("m", ["x" * 193])
    with pytest.raises(InvalidArgument, match="model_id 'a/b' is not allowed"):
        core.score("a/b", ["a"])
    with pytest.raises(Stopped):
        core.score("m", ["a"], should_stop=lambda: True)


def test_generate_defaults_come_from_the_model_capped_by_the_server(lm):
    core = serving(lm, max_generated_tokens=4)
    tokens = list(core.generate("m", "The", GenerateOptions(num_sentences=3, seed=2)))
    assert {t.model_version for t in tokens} == {7}
    finals = [t.event for t in tokens if t.event.finish_reason is not None]
    assert len(finals) == 3
    assert all(sum(t.event.sentence == s for t in tokens) <= 4 for s in range(3))
    want = lm.generate("The", num_sentences=3, seed=2, max_length=4)
    assert [e.text for e in finals] == [s.text for s in want]
    options = GenerateOptions(beam_width=3, num_sentences=3)  # no method: beam
    beams = list(core.generate("m", None, options))
    assert {t.event.sentence for t in beams} == {0, 1, 2}


def test_generate_limits_and_the_stream_slot(lm):
    core = serving(
        lm,
        max_generated_tokens=4,
        max_generated_sentences=2,
        max_streams=1,
        max_tokens_per_sentence=4,
    )
    for options, error, message in [
        (GenerateOptions(max_tokens=5), ResourceExhausted, "max_tokens 5 is over"),
        (GenerateOptions(num_sentences=3), ResourceExhausted, "num_sentences 3 is over"),
        (GenerateOptions(beam_width=-1), InvalidArgument, "beam_width must be >= 0"),
        (GenerateOptions(min_tokens=5), InvalidArgument, r"min_tokens must be in \[0, max_"),
        (GenerateOptions(top_k=-1), InvalidArgument, "top_k must be >= 0"),
        (GenerateOptions(temperature=0.0), ValueError, "temperature must be"),
    ]:
        with pytest.raises(error, match=message):
            next(core.generate("m", None, options))
    first = core.generate("m", None, GenerateOptions(seed=1))
    next(first)  # holds the one slot
    with pytest.raises(ResourceExhausted, match="--max-streams"):
        next(core.generate("m", None, GenerateOptions()))
    first.close()  # a closed stream gives its slot back
    assert list(core.generate("m", None, GenerateOptions(seed=1)))
    with pytest.raises(ResourceExhausted, match="prompt_words has 5 words"):
        next(core.generate("m", ["a"] * 5, GenerateOptions()))
