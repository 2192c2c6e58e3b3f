"""Every status of the table in DESIGN.md section 3, triggered through a real server, with
its code and message checked. Nothing a client sends ends in UNKNOWN or INTERNAL."""

from __future__ import annotations

import grpc
import pytest

from rnnlm.client import (
    Cancelled,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    LMClient,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from rnnlm.client.errors import from_rpc_error
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc
from tests.server.test_store import damage_chunk

from .conftest import SMALL_MODEL, train_small


@pytest.fixture
def trained(client, corpus_bytes):
    train_small(client, corpus_bytes, epochs=1)
    return client


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cell": "transformer"}, "cell must be one of 'gru', 'lstm', 'rnn'"),
        ({"hidden_size": 0}, "hidden_size must be an integer >= 1"),
        ({"dropout": 1.5}, "dropout must be"),
        ({"optimizer": "adagrad"}, "optimizer must be one of"),
        ({"valid_fraction": 0.9}, "valid_fraction must be"),
        ({"device": "tpu"}, "device"),
        ({"cell": "gru", "bptt_truncate": 4}, "bptt_truncate"),
    ],
)
def test_bad_training_options_are_invalid_argument(client, corpus_bytes, options, message):
    corpus = client.upload_corpus(corpus_bytes)
    with pytest.raises(InvalidArgument, match=message):
        client.train("m", corpus, **options)
    assert client.jobs() == []  # nothing was started


def test_invalid_arguments(trained, corpus_bytes):
    client = trained
    with pytest.raises(InvalidArgument, match="model_id 'bad/name' is not allowed"):
        client.score("bad/name", ["a"])
    with pytest.raises(InvalidArgument, match="sentences is empty"):
        client.score("small", [])
    with pytest.raises(InvalidArgument, match="corpus_id 'nope' is malformed"):
        client.train("m", "nope")
    with pytest.raises(InvalidArgument, match="min_tokens must be in"):
        client.generate("small", min_tokens=20, max_tokens=5)
    with pytest.raises(InvalidArgument, match="temperature must be"):
        client.generate("small", temperature=-1.0)
    with pytest.raises(InvalidArgument, match="top_p must be"):
        client.generate("small", top_p=1.5)
    with pytest.raises(InvalidArgument, match="corpus CSV has no column 'text'"):
        corpus = client.upload_corpus(b"a,b\n1,2\n", filename="x.csv")
        client.train("m", corpus, csv_column="text")
    job = client.jobs()[0]
    for bad_id in ("not-an-id", "99999999999999999999999-0", "9" * 30):
        with pytest.raises(InvalidArgument, match="after_event_id"):
            list(client.watch(job.job_id, after_event_id=bad_id))


def test_upload_checks(client):
    stub = rnnlm_pb2_grpc.LanguageModelServiceStub(grpc.insecure_channel(client.target))

    def upload(*messages):
        return stub.UploadCorpus(iter(messages), timeout=10)

    header = pb.UploadCorpusRequest(header=pb.CorpusHeader(filename="a.txt", size_bytes=5))
    cases = [
        ((pb.UploadCorpusRequest(chunk=b"abc"),), "first UploadCorpus message"),
        ((header,), "corpus is empty"),
        ((header, pb.UploadCorpusRequest(chunk=b"abc")), "said 5 bytes but 3 arrived"),
        ((header, header), "only the first UploadCorpus message"),
    ]
    for messages, text in cases:
        with pytest.raises(grpc.RpcError) as caught:
            upload(*messages)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert text in caught.value.details()
    sha = pb.UploadCorpusRequest(header=pb.CorpusHeader(sha256="0" * 64))
    with pytest.raises(grpc.RpcError, match="does not match the uploaded bytes"):
        upload(sha, pb.UploadCorpusRequest(chunk=b"abc"))


def test_not_found(trained):
    client = trained
    with pytest.raises(NotFound, match="model 'ghost' does not exist"):
        client.score("ghost", ["a"])
    with pytest.raises(NotFound, match="model 'ghost' does not exist"):
        client.model("ghost")
    with pytest.raises(NotFound, match="model 'ghost' does not exist"):
        client.delete_model("ghost")
    with pytest.raises(NotFound, match="training job 'j-0000' does not exist"):
        client.job("j-0000")
    with pytest.raises(NotFound, match=r"does not exist \(never uploaded, or deleted\)"):
        client.train("m", "c-" + "0" * 32)


def test_permission_denied_for_server_paths(start_server, tmp_path):
    allowed = tmp_path / "corpora"
    allowed.mkdir()
    (allowed / "ok.txt").write_text("Some text. More text here.\n")
    (tmp_path / "secret.txt").write_text("private")
    disabled = LMClient(start_server().address)  # no --corpus-dir
    with disabled, pytest.raises(PermissionDenied, match="server-side corpus paths are disabled"):
        disabled.train("m", server_path="ok.txt")
    with LMClient(start_server(corpus_dir=str(allowed)).address) as client:
        for path in ("../secret.txt", str(tmp_path / "secret.txt")):
            with pytest.raises(PermissionDenied, match="outside the corpus directory"):
                client.train("m", server_path=path)
        with pytest.raises(InvalidArgument, match="cannot be read: File name too long"):
            client.train("m", server_path="a" * 300)
        with pytest.raises(NotFound, match="'missing.txt' is not a file"):
            client.train("m", server_path="missing.txt")
        job = client.train("m", server_path="ok.txt", epochs=1, vocab_size=50)
        assert job.corpus_id == "server:ok.txt"


def test_resource_exhausted(start_server, corpus_bytes):
    server = start_server(
        max_sentences_per_request=3,
        max_tokens_per_sentence=6,
        max_generated_tokens=10,
        max_generated_sentences=2,
        max_corpus_bytes=50_000,
        max_message_bytes=100_000,
        max_concurrent_jobs=1,
        max_streams=1,
        workers=4,
    )
    with LMClient(server.address, retries=0) as client:
        train_small(client, corpus_bytes, epochs=1)
        with pytest.raises(ResourceExhausted, match="4 sentences in one request; the limit is 3"):
            client.score("small", ["a"] * 4)
        with pytest.raises(ResourceExhausted, match="has 7 words; the limit is 6"):
            client.score("small", ["one two three four five six seven"])
        with pytest.raises(ResourceExhausted, match="max_tokens 11 is over this server's limit"):
            client.generate("small", max_tokens=11)
        with pytest.raises(ResourceExhausted, match="num_sentences 3 is over"):
            client.generate("small", num_sentences=3)
        with pytest.raises(ResourceExhausted, match="corpus is 0.1 MiB or more"):
            client.upload_corpus(b"x" * 60_000)
        with pytest.raises(ResourceExhausted):  # one gRPC message over the server's limit
            client.score("small", ["word " * 30_000])
        corpus = client.upload_corpus(corpus_bytes)
        with pytest.raises(ResourceExhausted, match="about 128,032,000 parameters"):
            client.train("huge", corpus, vocab_size=8000, embed_size=4000, hidden_size=4000)
        job = client.train("slow", corpus, **SMALL_MODEL, epochs=50, log_every=1)
        with pytest.raises(ResourceExhausted, match="limit \\(--max-concurrent-jobs 1\\)"):
            client.train("other", corpus, **SMALL_MODEL)
        with pytest.raises(FailedPrecondition, match="being trained by job"):
            client.train("slow", corpus, **SMALL_MODEL)
        watch = client.watch(job.job_id)
        next(watch)  # holds the one stream this server allows
        with pytest.raises(ResourceExhausted, match="--max-streams"):
            next(client.generate_stream("small"))
        watch.close()
        client.cancel(job.job_id)


def test_unavailable_while_redis_is_down_and_health(start_server, backend, redis_server):
    if backend.name != "redis":
        pytest.skip("the local store has no server to lose")
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server = start_server()
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.address))
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service="")).status == serving
    with LMClient(server.address, retries=0) as client:
        redis_server.stop()
        try:
            with pytest.raises(Unavailable, match="store unavailable: redis"):
                client.models()
            server.check_store()
            status = health.Check(health_pb2.HealthCheckRequest(service="")).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            redis_server.start()
        server.check_store()
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == serving
        assert client.models() == []


def test_data_loss_and_the_previous_version_stays(start_server, corpus_bytes):
    server = start_server(cache_refresh_s=3600.0)
    with LMClient(server.address, retries=0) as client:
        train_small(client, corpus_bytes, epochs=1)
        assert client.score("small", ["a sentence ."]).model_version == 1  # v1 now cached
        train_small(client, corpus_bytes, epochs=1, seed=5)
        damage_chunk(server.store, "models/small/2/checkpoint", 0, b"not the checkpoint")
        server.cache.refresh_s = 0.0  # look for the new version now
        assert client.score("small", ["a sentence ."]).model_version == 1
    fresh = start_server()  # nothing cached: it falls back to the newest version that loads
    with LMClient(fresh.address, retries=0) as client:
        assert client.score("small", ["a sentence ."]).model_version == 1
    damage_chunk(server.store, "models/small/1/checkpoint", 0, b"broken too")
    third = LMClient(start_server().address, retries=0)
    with third, pytest.raises(DataLoss, match="model 'small' version 2: .*chunk 0"):
        third.score("small", ["a sentence ."])


def test_client_cancellation_is_cancelled(trained):
    stub = rnnlm_pb2_grpc.LanguageModelServiceStub(grpc.insecure_channel(trained.target))
    call = stub.Generate(pb.GenerateRequest(model_id="small", num_sentences=2, max_tokens=10))
    next(call)
    call.cancel()  # the server sees the call end and stops decoding at its next token
    with pytest.raises(grpc.RpcError) as caught:
        list(call)
    assert caught.value.code() == grpc.StatusCode.CANCELLED
    with pytest.raises(Cancelled):
        raise from_rpc_error(caught.value, "Generate")
