"""What both clients share for rescoring and the new scoring options: requests cut at the
limit with groups kept whole, answers put back in order, errors pointed at lines, the
typed results of the n-gram fields, and the CLI's checks; no server (calls are faked)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from rnnlm.client import InvalidArgument, ResourceExhausted
from rnnlm.client._common import ScoreOptions, attach_request, score_request
from rnnlm.client._rescore import RescorePlan, rescore_async, rescore_sync
from rnnlm.client.cli import main
from rnnlm.client.nbest import parse_nbest
from rnnlm.client.types import ModelVersion, ScoreResult, SentenceScore, TrainingJob
from rnnlm.v1 import rnnlm_pb2 as pb

from .test_options import _train


def _moses(group_sizes):
    lines = []
    for gid, size in enumerate(group_sizes):
        lines += [f"{gid} ||| w{gid} h{i} ||| LM0= -1 ||| {-i}\n" for i in range(size)]
    return "".join(lines)


class FakeScorer:
    """ScoreSentence as a function: a hypothesis scores minus its length in characters."""

    def __init__(self, delay: float = 0.0) -> None:
        self.requests: list[pb.ScoreSentenceRequest] = []
        self.delay, self.lock, self.active, self.peak = delay, threading.Lock(), 0, 0

    def response(self, request):
        self.requests.append(request)
        scores = [
            pb.SentenceScore(index=i, logprob=-len(s.text), log10prob=-len(s.text) / 2.3)
            for i, s in enumerate(request.sentences)
        ]
        return pb.ScoreSentenceResponse(model_id=request.model_id, scores=scores[::-1])

    def __call__(self, request):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        return self.response(request)


def test_groups_stay_whole_in_a_request_where_they_fit():
    plan = RescorePlan.create("m", batch_size=10)
    batches = list(plan.batches(_moses([4, 4, 4, 25, 3])))
    # The 25-line group is split; its last 5 lines share a request with the next group.
    assert [len(b) for b in batches] == [8, 4, 10, 10, 8]
    assert [len({e.group for e in b}) for b in batches] == [2, 1, 1, 1, 2]
    assert [e.line_no for b in batches for e in b] == list(range(1, 41))


def test_rescore_keeps_order_and_adds_the_value_of_each_line():
    text = _moses([3, 300, 2])
    fake = FakeScorer(delay=0.01)
    plan = RescorePlan.create("m", batch_size=64, max_in_flight=4)
    items = list(rescore_sync(plan, text, fake))
    assert [r.entry.line_no for r in items] == list(range(1, 306))
    assert all(r.value == -len(r.entry.hypothesis) for r in items)  # responses were reversed
    assert all(len(q.sentences) <= 64 and q.omit_tokens and not q.rank for q in fake.requests)
    assert 1 < fake.peak <= 4  # concurrent, within the window


def test_a_weight_reranks_each_group_even_across_requests():
    text = "".join(f"{g} ||| {'x' * n} ||| LM0= 0 ||| 0\n" for g, n in [(0, 3), (0, 1), (0, 2)])
    text += "1 ||| yy ||| LM0= 0 ||| 0\n1 ||| y ||| LM0= 0 ||| 0\n"
    plan = RescorePlan.create("m", batch_size=2, weight=1.0, log10=True)
    items = list(rescore_sync(plan, text, FakeScorer()))
    assert [r.entry.hypothesis for r in items] == ["x", "xx", "xxx", "y", "yy"]
    assert items[0].value == pytest.approx(-1 / 2.3)


def test_blank_lines_are_not_sent():
    fake = FakeScorer()
    text = "\n\n0 ||| a ||| LM0= 0 ||| 0\n"
    items = list(rescore_sync(RescorePlan.create("m", batch_size=2), text, fake))
    assert [r.value for r in items] == [None, None, -1]
    assert [len(q.sentences) for q in fake.requests] == [1]


def test_a_server_error_names_the_input_line():
    def failing(request):
        raise InvalidArgument("sentences[1] has 600 words; the limit is 512", method="Score")

    text = "".join(f"0 ||| h{i} ||| LM0= 0 ||| 0\n" for i in range(5))
    with pytest.raises(InvalidArgument, match=r"sentences\[1\] \(line 2\) has 600 words"):
        list(rescore_sync(RescorePlan.create("m"), parse_nbest(text), failing))


def test_a_request_over_the_server_limit_suggests_a_smaller_batch():
    def failing(request):
        raise ResourceExhausted("300 sentences in one request; the limit is 100", method="S")

    plan = RescorePlan.create("m", batch_size=300)
    with pytest.raises(ResourceExhausted, match="--batch-size\\) below 300"):
        list(rescore_sync(plan, "0 ||| a ||| LM0= 0 ||| 0\n", failing))


def test_async_rescore_equals_sync_and_overlaps_calls():
    text = _moses([5, 40, 7])
    fake = FakeScorer()
    active = {"now": 0, "peak": 0}

    async def call(request):
        active["now"] += 1
        active["peak"] = max(active["peak"], active["now"])
        await asyncio.sleep(0.01)
        active["now"] -= 1
        return fake.response(request)

    async def collect():
        plan = RescorePlan.create("m", batch_size=8, weight=0.5)
        return [r async for r in rescore_async(plan, text, call)]

    got = asyncio.run(collect())
    expected = list(rescore_sync(RescorePlan.create("m", batch_size=8, weight=0.5), text, fake))
    assert [r.line() for r in got] == [r.line() for r in expected]
    assert 1 < active["peak"] <= 4


def test_plan_arguments_are_checked_before_any_call():
    with pytest.raises(ValueError, match="feature name"):
        RescorePlan.create("m", feature="RNN LM")
    with pytest.raises(ValueError, match="batch_size"):
        RescorePlan.create("m", batch_size=0)


# -- requests and results of the n-gram fields -----------------------------------------------


def test_score_options_set_only_what_was_given():
    options = ScoreOptions(scorer="interpolated", neural_weight=0.25, bos=False, eos=None)
    request = score_request("m", ["a b"], False, True, options)
    assert request.scorer == pb.SCORER_INTERPOLATED and request.neural_weight == 0.25
    assert request.HasField("bos") and not request.bos and not request.HasField("eos")
    assert not request.HasField("length_alpha") and request.length_norm == pb.LENGTH_NORM_NONE
    gnmt = score_request("m", ["a"], True, False, ScoreOptions(length_norm="gnmt"))
    assert gnmt.length_norm == pb.LENGTH_NORM_GNMT
    with pytest.raises(ValueError, match="scorer must be one of neural, ngram, interpolated"):
        score_request("m", ["a"], False, False, ScoreOptions(scorer="kenlm"))


def test_attach_and_train_requests_carry_the_arpa():
    assert not attach_request("m", "c-1", None).HasField("neural_weight")
    assert attach_request("m", "c-1", 0.0).HasField("neural_weight")
    assert _train().arpa_id == ""


def test_results_of_the_new_fields():
    msg = pb.ScoreSentenceResponse(
        scorer=pb.SCORER_INTERPOLATED,
        neural_weight=0.7,
        scores=[
            pb.SentenceScore(logprob=-4.0, rank_score=-1.0, tokens=[pb.TokenScore(ngram_order=3)]),
            pb.SentenceScore(logprob=-6.0),  # a server that predates rank_score
        ],
    )
    result = ScoreResult.from_pb(msg)
    assert (result.scorer, result.neural_weight) == ("interpolated", 0.7)
    assert [s.rank_score for s in result.scores] == [-1.0, -6.0]
    assert result.scores[0].tokens[0].ngram_order == 3
    assert ScoreResult.from_pb(pb.ScoreSentenceResponse()).scorer is None
    assert SentenceScore.from_pb(pb.SentenceScore()).rank_score == 0.0
    assert ModelVersion.from_pb(pb.ModelVersion(version=1)).neural_weight == 1.0
    ngram = ModelVersion.from_pb(pb.ModelVersion(ngram_order=4, neural_weight=0.6))
    assert (ngram.ngram_order, ngram.neural_weight, ngram.ngram_valid_perplexity) == (4, 0.6, None)
    job = TrainingJob.from_pb(pb.TrainingJob(warnings=["a sentence of 9000 words"]))
    assert job.warnings == ("a sentence of 9000 words",)


# -- the command line, before any call --------------------------------------------------------


def test_rescore_malformed_line_is_exit_1_with_its_number(tmp_path, capsys):
    path = tmp_path / "nbest.txt"
    path.write_text("0 ||| a ||| LM0= -1 ||| -1\n0 ||| b ||| LM0= -1 ||| -1\n0 ||| c ||| -1\n")
    code = main(["--target", "127.0.0.1:1", "rescore", "m", str(path), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: line 3: expected 'id |||")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.part").exists()


def test_rescore_usage_errors_exit_1(tmp_path, capsys):
    assert main(["rescore", "m", "x.txt", "--update-total"]) == 1
    assert "--update-total needs --weight" in capsys.readouterr().err
    assert main(["rescore", "m", "x.txt", "--feature", "A|||B"]) == 1
    assert "feature name 'A|||B' is not allowed" in capsys.readouterr().err
