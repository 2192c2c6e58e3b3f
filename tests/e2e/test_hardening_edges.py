"""Edges of a real server that hardening found: requests that do not decode, values too long
to quote back, ids with a final newline, what a server lets out (reads without a key, the
store's address, a corpus' first line), calls refused under overload in the metrics, and
the time of each training event."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time

import grpc
import pytest

from rnnlm.client import (
    FailedPrecondition,
    InvalidArgument,
    LMClient,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from rnnlm.server import RnnlmServer, ServerConfig
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc

from .conftest import FAST_TRAINING, SMALL_MODEL, Scrape, scrape_when, train_small, wait_until

SERVICE = "/rnnlm.v1.LanguageModelService/"
API_KEY = "hardening-key-0123456789"
# Field 1 of each request below is a string; these two bytes are not UTF-8.
BAD_UTF8 = b"\x0a\x02\xff\xfe"
CORRUPT = b"\xff\xff\xff"  # not protobuf wire format at all
LONG = "x" * 20_000
local_only = pytest.mark.parametrize("backend", ["local"], indirect=True)


def short_and_unechoed(error: Exception) -> str:
    """The error's message, checked to be short and free of the long value sent."""
    details = error.details() if isinstance(error, grpc.RpcError) else error.details
    assert len(details) < 400 and "x" * 100 not in details, details[:200]
    return details


# -- 1. requests that do not decode -------------------------------------------------------


@local_only
def test_a_request_that_does_not_decode_is_invalid_argument(start_server, caplog):
    caplog.set_level(logging.INFO)
    server = start_server(metrics_address="127.0.0.1:0")
    header = pb.UploadCorpusRequest(header=pb.CorpusHeader(filename="a.txt")).SerializeToString()
    chunk = pb.UploadCorpusRequest(chunk=b"some words .").SerializeToString()
    with grpc.insecure_channel(server.address) as channel:  # bytes in, bytes out
        for method, kind, request in (
            ("GetModel", "unary_unary", BAD_UTF8),
            ("Train", "unary_unary", CORRUPT),
            ("Generate", "unary_stream", BAD_UTF8),
            ("WatchTrainingJob", "unary_stream", BAD_UTF8),
        ):
            call = getattr(channel, kind)(SERVICE + method)
            with pytest.raises(grpc.RpcError) as caught:
                reply = call(request, timeout=10)
                if kind == "unary_stream":
                    list(reply)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert f"the {method} request could not be decoded" in caught.value.details()
        # In a client stream, the bad message may come first, or after good ones.
        upload = channel.stream_unary(SERVICE + "UploadCorpus")
        for messages in ([CORRUPT], [header, BAD_UTF8], [header, chunk, CORRUPT, chunk]):
            with pytest.raises(grpc.RpcError) as caught:
                upload(iter(messages), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "the UploadCorpus request could not be decoded" in caught.value.details()
    scrape = Scrape(server.metrics_port)
    for method, count in (("GetModel", 1), ("Generate", 1), ("UploadCorpus", 3)):
        assert scrape.value("rnnlm_requests_total", method=method, code="INVALID_ARGUMENT") == count
    assert [s for s in scrape.labelled("rnnlm_requests_total") if s["code"] == "INTERNAL"] == []
    assert "Exception deserializing" not in caplog.text and "Traceback" not in caplog.text
    with LMClient(server.address, retries=0) as client:
        assert client.health() == "SERVING" and client.models() == []


# -- 2. errors quote a short prefix of what was sent ------------------------------------


@local_only
def test_errors_quote_only_a_short_prefix_of_a_long_value(start_server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    allowed = tmp_path / "corpora"
    allowed.mkdir()
    server = start_server(corpus_dir=str(allowed))
    with LMClient(server.address, retries=0) as client:
        corpus = client.upload_corpus(b"a few words . and more words .", filename="x.txt")
        table = client.upload_corpus(b"id,text\n1,some words .\n", filename="t.csv")
        job = client.train("m", corpus, vocab_size=50, epochs=1)
        stub = rnnlm_pb2_grpc.LanguageModelServiceStub(grpc.insecure_channel(server.address))
        sha = pb.UploadCorpusRequest(header=pb.CorpusHeader(sha256=LONG))
        cases = {
            "GetModel": (lambda: client.model(LONG), "model_id 'xxx"),
            "ScoreSentence": (lambda: client.score(LONG, ["a"]), "model_id 'xxx"),
            "GetTrainingJob": (lambda: client.job(LONG), "job_id 'xxx"),
            "Train model_id": (lambda: client.train(LONG, corpus), "model_id 'xxx"),
            "Train corpus_id": (lambda: client.train("m2", LONG), "corpus_id 'xxx"),
            "Train request_id": (
                lambda: client.train("m2", corpus, request_id=LONG),
                "request_id 'xxx",
            ),
            "Train device": (lambda: client.train("m2", corpus, device=LONG), "device must be"),
            "Train csv_column": (
                lambda: client.train("m2", table, csv_column=LONG),
                "no column 'xxx",
            ),
            "Train server_path": (lambda: client.train("m2", server_path=LONG), "server_path"),
            "Watch after_event_id": (
                lambda: list(client.watch(job.job_id, after_event_id=LONG)),
                "after_event_id 'xxx",
            ),
            "UploadCorpus sha256": (
                lambda: stub.UploadCorpus(iter([sha, pb.UploadCorpusRequest(chunk=b"a")])),
                "header.sha256 'xxx",
            ),
        }
        for name, (call, expected) in cases.items():
            with pytest.raises((InvalidArgument, grpc.RpcError)) as caught:
                call()
            if isinstance(caught.value, grpc.RpcError):
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert expected in short_and_unechoed(caught.value), name
            if name != "Train device":  # the model's own, shorter quote
                assert "20,000 characters" in short_and_unechoed(caught.value), name
        with contextlib.suppress(FailedPrecondition):  # it may have ended
            client.cancel(job.job_id)
    assert "x" * 100 not in caplog.text  # nor the log


@local_only
def test_an_upload_file_name_is_bounded(client):
    """The name is stored and shown back (Corpus.filename, ListCorpora): not at any length."""
    with pytest.raises(InvalidArgument, match="header.filename 'xxx") as caught:
        client.upload_corpus(b"a few words .", filename=LONG)
    details = short_and_unechoed(caught.value)
    assert "20,000 characters" in details and "at most 255 characters" in details
    assert client.corpora() == []  # refused before anything was stored
    name = "n" * 251 + ".txt"  # 255: the longest a file system allows, accepted
    assert client.upload_corpus(b"a few words .", filename=name).filename == name


@local_only
def test_a_malformed_arpa_id_is_named_as_such(client):
    """Not as "corpus_id", which the caller may have set right."""
    corpus = client.upload_corpus(b"a few words .", filename="a.txt")
    stub = rnnlm_pb2_grpc.LanguageModelServiceStub(grpc.insecure_channel(client.target))
    source = pb.CorpusSource(corpus_id=corpus.corpus_id)
    for call in (
        lambda: stub.Train(pb.TrainRequest(model_id="m", corpus=source, arpa_id="bad")),
        lambda: stub.AttachNgramModel(pb.AttachNgramModelRequest(model_id="m", arpa_id="bad")),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("arpa_id 'bad' is malformed")


def test_every_status_message_is_capped(tmp_path):
    """The helpers every message goes through: ``quote`` for a value a client sent, and
    ``cap``, which the interceptor applies to every status message it sends."""
    from rnnlm.server.errors import MAX_MESSAGE_BYTES, cap, quote

    assert quote("ab") == "'ab'" and quote("é" * 50).endswith("... (50 characters)")
    assert quote(b"\xff" * 50).endswith("... (50 bytes)")
    message = cap("é" * 5000)
    assert len(message.encode()) <= MAX_MESSAGE_BYTES and message.endswith("(message cut)")


# -- 3. ids are matched whole -------------------------------------------------------------


def test_ids_with_a_final_newline_are_refused(start_server, backend, corpus_bytes):
    server = start_server()
    with LMClient(server.address, retries=0) as client:
        corpus = client.upload_corpus(corpus_bytes)
        with pytest.raises(InvalidArgument, match="model_id 'nl\\\\n' is not allowed"):
            client.train("nl\n", corpus, **SMALL_MODEL, **FAST_TRAINING)
        assert client.models() == [] and client.jobs() == []  # no record of that name
        with pytest.raises(InvalidArgument, match="model_id"):
            client.model("nl\n")
        with pytest.raises(InvalidArgument, match="job_id"):
            client.job("j-0\n")
        with pytest.raises(InvalidArgument, match="corpus_id"):
            client.train("m", corpus.corpus_id + "\n")
        with pytest.raises(InvalidArgument, match="request_id"):
            client.train("m", corpus, request_id="r\n")
        job = client.train("m", corpus, vocab_size=50, epochs=1)
        first = next(iter(client.watch(job.job_id)))
        with pytest.raises(InvalidArgument, match="after_event_id"):
            list(client.watch(job.job_id, after_event_id=first.event_id + "\n"))
        with contextlib.suppress(FailedPrecondition):  # it may have ended
            client.cancel(job.job_id)


def test_the_store_refuses_ids_with_a_final_newline(tmp_path):
    from rnnlm.server.store import LocalStore
    from rnnlm.server.store.base import check_blob_key, check_id

    for bad in ("nl\n", "a\nb"):
        with pytest.raises(ValueError, match="invalid model id"):
            check_id("model", bad)
        with pytest.raises(ValueError, match="invalid blob key"):
            check_blob_key(f"models/{bad}")
    store = LocalStore(tmp_path / "store")
    store.append_event("j-1", {"type": "checkpoint"})
    first = store.read_events("j-1")[0][0]
    with pytest.raises(ValueError, match="invalid event id"):
        store.read_events("j-1", first + "\n")
    with pytest.raises(ValueError, match="invalid event id"):
        store.read_events("j-1", "\u0661" * 20)  # Arabic-Indic digits are digits to \d


# -- 7. what a server lets out ------------------------------------------------------------


def test_require_key_for_reads_needs_a_key_and_guards_every_call(tmp_path):
    with pytest.raises(ValueError, match="require_key_for_reads needs an API key"):
        ServerConfig(require_key_for_reads=True)
    config = ServerConfig.from_args(["--require-key-for-reads", "true"], {"RNNLM_API_KEY": API_KEY})
    assert config.require_key_for_reads
    config = ServerConfig(
        address="127.0.0.1:0",
        store_dir=str(tmp_path / "store"),
        device="cpu",
        api_key=API_KEY,
        require_key_for_reads=True,
    )
    server = RnnlmServer(config)
    server.start()
    try:
        reads = {
            "ListModels": lambda c: c.models(),
            "GetModel": lambda c: c.model("m", include_vocabulary=True),
            "ListTrainingJobs": lambda c: c.jobs(),
            "GetTrainingJob": lambda c: c.job("j-nope"),
            "WatchTrainingJob": lambda c: list(c.watch("j-nope")),
            "ScoreSentence": lambda c: c.score("m", ["a sentence ."]),
            "Generate": lambda c: c.generate("m"),
            "ExportArpa": lambda c: c.export_arpa("m", tmp_path / "m.arpa"),
        }
        with LMClient(server.address, retries=0) as anonymous:
            for method, call in reads.items():
                with pytest.raises(Unauthenticated, match="requires an API key") as missing:
                    call(anonymous)
                assert method in missing.value.details, method
            assert anonymous.health() == "SERVING"  # load balancers need no key
        with LMClient(server.address, retries=0, api_key=API_KEY) as keyed:
            assert keyed.models() == [] and keyed.jobs() == []
            for method in ("GetModel", "GetTrainingJob", "ScoreSentence"):
                with pytest.raises(NotFound):
                    reads[method](keyed)
    finally:
        server.stop(grace=1.0)


def empty_call(channel: grpc.Channel, method) -> grpc.StatusCode:
    """Call ``method`` (a descriptor) with an empty request; the status it ends with."""
    kind = ("stream" if method.client_streaming else "unary") + "_"
    kind += "stream" if method.server_streaming else "unary"
    stub = getattr(channel, kind)(SERVICE + method.name)  # bytes in, bytes out
    request = iter([b""]) if method.client_streaming else b""
    try:
        reply = stub(request, timeout=10)
        if method.server_streaming:
            list(reply)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("reads_too", [False, True])
def test_every_call_but_the_reads_needs_the_key(tmp_path, reads_too):
    from rnnlm.server.security import READ_METHODS

    methods = pb.DESCRIPTOR.services_by_name["LanguageModelService"].methods
    assert READ_METHODS.issubset(m.name for m in methods)  # no stale name
    config = ServerConfig(
        address="127.0.0.1:0",
        store_dir=str(tmp_path / "store"),
        device="cpu",
        api_key=API_KEY,
        require_key_for_reads=reads_too,
    )
    server = RnnlmServer(config)
    server.start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            for method in methods:
                code = empty_call(channel, method)
                guarded = reads_too or method.name not in READ_METHODS
                assert (code == grpc.StatusCode.UNAUTHENTICATED) == guarded, method.name
    finally:
        server.stop(grace=1.0)


def test_store_errors_name_no_address_or_path(start_server, backend, request, caplog):
    caplog.set_level(logging.INFO)
    server = start_server()
    redis_server = request.getfixturevalue("redis_server") if backend.name == "redis" else None
    with LMClient(server.address, retries=0) as client:
        assert client.models() == []
        if redis_server is not None:
            hidden = f"127.0.0.1:{redis_server.port}"
            redis_server.stop()
        else:
            hidden = str(backend.store_dir)
            docs = backend.store_dir / "docs"
            shutil.rmtree(docs)
            docs.write_text("no longer a directory")
        try:
            with pytest.raises(Unavailable, match="store unavailable") as caught:
                client.model("m")
        finally:
            if redis_server is not None:
                redis_server.start()
        assert hidden not in caught.value.details and "/" not in caught.value.details
    assert hidden in caplog.text  # the operator still learns where


def test_a_missing_csv_column_does_not_show_the_header(tmp_path, start_server):
    allowed = tmp_path / "corpora"
    allowed.mkdir()
    (allowed / "notes.txt").write_text("PRIVATE first line, with a comma\nthe rest .\n")
    server = start_server(corpus_dir=str(allowed), api_key=API_KEY)
    with LMClient(server.address, retries=0, api_key=API_KEY) as client:
        with pytest.raises(InvalidArgument, match="no column 'body'") as caught:
            client.train("m", server_path="notes.txt", format="csv")
        assert "PRIVATE" not in caught.value.details and "2 column(s)" in caught.value.details
        uploaded = client.upload_corpus(b"secret,header\n1,2\n", filename="u.csv")
        with pytest.raises(InvalidArgument, match="no column 'text'") as caught:
            client.train("m", uploaded, csv_column="text")
        assert "secret" not in caught.value.details


# -- 8. overload in the metrics, event times ------------------------------------------------


@local_only
def test_calls_refused_over_the_concurrency_limit_are_counted(start_server):
    # 2 workers: gRPC admits 8 calls at once (app.py) and refuses the 9th itself.
    server = start_server(workers=2, max_streams=1, metrics_address="127.0.0.1:0")
    release = threading.Event()

    def held_open():
        release.wait(60)  # sends nothing: the handler waits for the header
        return
        yield

    channel = grpc.insecure_channel(server.address)
    stub = rnnlm_pb2_grpc.LanguageModelServiceStub(channel)
    uploads = [stub.UploadCorpus.future(held_open(), timeout=60) for _ in range(8)]
    try:
        scrape_when(
            server.metrics_port,
            lambda s: s.value("rnnlm_requests_in_flight", method="UploadCorpus") == 2,
        )
        refused = 0

        def probe():
            nonlocal refused
            try:
                stub.ListModels(pb.ListModelsRequest(), timeout=2)
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    refused += 1
                    return True
            return None

        wait_until(probe, timeout=30, what="a call refused over the limit")
    finally:
        release.set()
        for upload in uploads:
            with pytest.raises(grpc.RpcError):
                upload.result()
        channel.close()
    scrape = Scrape(server.metrics_port)
    assert scrape.value("rnnlm_requests_total", method="ListModels", code="RESOURCE_EXHAUSTED") == (
        refused
    )


@local_only
def test_every_training_event_has_its_time(client, corpus_bytes):
    started = time.time()
    job = train_small(client, corpus_bytes, epochs=1)
    ended = time.time()
    stub = rnnlm_pb2_grpc.LanguageModelServiceStub(grpc.insecure_channel(client.target))
    events = list(stub.WatchTrainingJob(pb.WatchTrainingJobRequest(job_id=job.job_id)))
    assert {"progress", "state"} <= {e.WhichOneof("event") for e in events}
    for event in events:
        assert started - 1 <= event.time.ToNanoseconds() / 1e9 <= ended + 1, event
