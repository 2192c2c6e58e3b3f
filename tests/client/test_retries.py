"""Retries against a real gRPC server on loopback that fails on purpose: gRPC's retry policy
(from the client's service config) repeats the calls that are safe to repeat, our own code
resumes a watch after its last event; both clients, the same tests."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from contextlib import closing

import grpc
import pytest

from rnnlm.client import FailedPrecondition, Internal, RnnlmError, Unavailable
from rnnlm.client._retry import MAX_ATTEMPTS, STREAMS_RETRIED, UNARY_RETRIED, RetryPolicy
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc

from .facade import CLIENTS

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class FlakyService(rnnlm_pb2_grpc.LanguageModelServiceServicer):
    """Each method fails its first ``failures`` calls with ``code``, then answers. The
    streams fail after ``sent_before_failing`` messages when told to."""

    def __init__(self) -> None:
        self.failures, self.code = 0, UNAVAILABLE
        self.sent_before_failing = 0
        self.calls: Counter[str] = Counter()
        self.watch_requests: list[str] = []
        self.uploaded: list[int] = []
        self._lock = threading.Lock()

    def _failing(self, method: str) -> bool:
        with self._lock:
            self.calls[method] += 1
            return self.calls[method] <= self.failures

    def _fail_now(self, method: str, context: grpc.ServicerContext) -> None:
        if self._failing(method):
            context.abort(self.code, f"{method} fails on purpose")

    def ListModels(self, request, context):
        self._fail_now("ListModels", context)
        return pb.ListModelsResponse(models=[pb.Model(model_id="m")])

    def DeleteModel(self, request, context):
        self._fail_now("DeleteModel", context)
        return pb.DeleteModelResponse(versions_deleted=1)

    def UploadCorpus(self, request_iterator, context):
        size = sum(len(r.chunk) for r in request_iterator)  # read it all, then fail
        self.uploaded.append(size)
        self._fail_now("UploadCorpus", context)
        return pb.Corpus(corpus_id="c-1", filename="x.txt", size_bytes=size)

    def Generate(self, request, context):
        failing = self._failing("Generate")
        for i in range(3):
            if failing and i == self.sent_before_failing:
                context.abort(self.code, "Generate fails on purpose")
            yield pb.GenerateResponse(sentence=0, token=f"w{i}", logprob=-1.0)

    def WatchTrainingJob(self, request, context):
        """Events e1..e4 after ``after_event_id``; a failing call cuts off after two."""
        self.watch_requests.append(request.after_event_id)
        failing = self._failing("WatchTrainingJob")
        start = int(request.after_event_id[1:] or 0)
        for n, number in enumerate(range(start + 1, 5)):
            if failing and n == self.sent_before_failing:
                context.abort(self.code, "the server went away")
            yield pb.TrainingEvent(event_id=f"e{number}", checkpoint_step=number)


@pytest.fixture(scope="module")
def flaky_server() -> Iterator[tuple[FlakyService, str]]:
    service = FlakyService()
    server = grpc.server(futures.ThreadPoolExecutor(8))
    rnnlm_pb2_grpc.add_LanguageModelServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield service, f"127.0.0.1:{port}"
    server.stop(grace=None)


@pytest.fixture
def flaky(flaky_server) -> FlakyService:
    service, _ = flaky_server
    service.__init__()  # a fresh script for each test
    return service


@pytest.fixture(params=sorted(CLIENTS))
def connect(request, flaky_server):
    """``connect(**kwargs)``: a client of the parametrised kind to the flaky server."""
    opened = []

    def connect(**kwargs):
        client = CLIENTS[request.param](flaky_server[1], backoff=0.01, timeout=10, **kwargs)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        client.close()


def test_unavailable_is_retried_by_grpc(flaky, connect):
    flaky.failures = 3
    assert [m.model_id for m in connect(retries=3).models()] == ["m"]
    assert flaky.calls["ListModels"] == 4


def test_a_unary_call_cut_off_by_a_stopping_server_is_retried(flaky, connect):
    # The client never cancels a unary call itself: CANCELLED came from the server's side.
    flaky.failures, flaky.code = 1, grpc.StatusCode.CANCELLED
    connect(retries=2).models()
    assert flaky.calls["ListModels"] == 2


def test_retries_give_up_after_the_budget(flaky, connect):
    flaky.failures = 10
    with pytest.raises(Unavailable, match="fails on purpose"):
        connect(retries=2).models()
    assert flaky.calls["ListModels"] == 3


def test_retries_zero_makes_one_attempt(flaky, connect):
    flaky.failures = 1
    with pytest.raises(Unavailable):
        connect(retries=0).models()
    assert flaky.calls["ListModels"] == 1


def test_non_idempotent_calls_and_other_codes_are_never_retried(flaky, connect):
    flaky.failures = 1
    with pytest.raises(Unavailable):
        connect(retries=5).delete_model("m")
    assert flaky.calls["DeleteModel"] == 1
    flaky.failures, flaky.code = 1, grpc.StatusCode.INTERNAL
    with pytest.raises(Internal):
        connect(retries=5).models()
    assert flaky.calls["ListModels"] == 1
    flaky.code = grpc.StatusCode.FAILED_PRECONDITION
    flaky.failures += 1
    with pytest.raises(FailedPrecondition):
        connect(retries=5).models()


def test_an_upload_is_sent_again_whole(flaky, connect):
    flaky.failures = 1
    data = bytes(range(256)) * 4096  # 1 MiB in 64 KiB chunks, beyond gRPC's default buffer
    corpus = connect(retries=2).upload_corpus(data, chunk_bytes=65536)
    assert corpus.size_bytes == len(data)
    assert flaky.uploaded == [len(data), len(data)]


def test_a_stream_failing_before_its_first_message_is_reopened(flaky, connect):
    flaky.failures = 2
    tokens = list(connect(retries=2).generate_stream("m"))
    assert [t.token for t in tokens] == ["w0", "w1", "w2"]
    assert flaky.calls["Generate"] == 3


def test_a_started_stream_that_cannot_resume_raises(flaky, connect):
    flaky.failures, flaky.sent_before_failing = 1, 1
    stream = connect(retries=3).generate_stream("m")
    assert next(stream).token == "w0"
    with pytest.raises(Unavailable):
        next(stream)
    assert flaky.calls["Generate"] == 1


def test_a_watch_resumes_after_the_last_event(flaky, connect):
    flaky.failures, flaky.sent_before_failing = 3, 1
    events = list(connect(retries=2).watch("j-1"))
    assert [e.event_id for e in events] == ["e1", "e2", "e3", "e4"]
    # Cut after each of e1, e2, e3: each reconnect asks for what follows, and progress
    # renews the budget (3 failures in all, 2 retries allowed).
    assert flaky.watch_requests == ["", "e1", "e2", "e3"]


def test_a_watch_that_keeps_failing_gives_up(flaky, connect):
    flaky.failures, flaky.sent_before_failing = 10, 0
    with pytest.raises(Unavailable, match="went away"):
        list(connect(retries=2).watch("j-1", after_event_id="e1"))
    assert flaky.watch_requests == ["e1", "e1", "e1"]


def test_closing_a_stream_early_cancels_the_call(flaky, connect):
    client = connect(retries=0)
    with closing(client.watch("j-1")) as stream:
        assert next(stream).event_id == "e1"
    assert [e.event_id for e in client.watch("j-1", after_event_id="e3")] == ["e4"]


def test_a_failed_export_leaves_no_file(flaky, connect, tmp_path):
    # ExportArpa is not implemented here: the error reaches the flow inside its `with`.
    target = tmp_path / "out.arpa"
    with pytest.raises(RnnlmError):
        connect(retries=2).export_arpa("m", target)
    assert list(tmp_path.iterdir()) == []


def test_the_service_config_names_the_methods_safe_to_repeat():
    config = RetryPolicy(retries=9, backoff=0.25).service_config()
    unary, streams = config["methodConfig"]
    assert [n["method"] for n in unary["name"]] == list(UNARY_RETRIED)
    assert [n["method"] for n in streams["name"]] == list(STREAMS_RETRIED)
    assert unary["retryPolicy"]["maxAttempts"] == MAX_ATTEMPTS  # gRPC's ceiling
    assert unary["retryPolicy"]["initialBackoff"] == "0.250s"
    assert unary["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE", "CANCELLED"]
    assert streams["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    never = {"WatchTrainingJob", "DeleteModel", "DeleteCorpus", "DeleteTrainingJob"}
    never |= {"ResumeTrainingJob", "AttachNgramModel"}
    assert never.isdisjoint(UNARY_RETRIED + STREAMS_RETRIED)
    round_robin = {"loadBalancingConfig": [{"round_robin": {}}]}
    assert config["loadBalancingConfig"] == round_robin["loadBalancingConfig"]
    assert RetryPolicy(retries=0).service_config() == {"methodConfig": [], **round_robin}
    options = dict(RetryPolicy(retries=2).channel_options())
    assert options["grpc.enable_retries"] == 1
    assert (
        json.loads(options["grpc.service_config"])["methodConfig"][0]["retryPolicy"]["maxAttempts"]
        == 3
    )
