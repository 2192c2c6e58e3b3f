"""Fuzzing every RPC of a real server with a small trained model: messages built from the
proto descriptors with random and awkward field values (long strings, unicode, negative
numbers, NaN, unknown enum values, repeated fields past the server's limits), the same
messages with their bytes mutated, and raw bytes that are no message at all.

Whatever arrives, the answer is a specific status, never UNKNOWN or INTERNAL (nor
UNAVAILABLE: the store is up), and the server still answers health afterwards. Hypothesis
runs derandomized (the same examples on every run, so CI is reproducible), about a minute
in all. Fuzzed Train/Resume calls that start a job have it cancelled at once; the server's
limits are small, so no example scores, generates or trains for long.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlm.client import LMClient
from rnnlm.model.config import ACTIVATIONS, CELLS, DTYPES, OPTIMIZERS, SENTENCE_MODES, WORD_MODES
from rnnlm.server import RnnlmServer, ServerConfig
from rnnlm.v1 import rnnlm_pb2 as pb

from .conftest import train_small

SERVICE = pb.DESCRIPTOR.services_by_name["LanguageModelService"]
PATH = "/" + SERVICE.full_name + "/"
# No answer may be one of these: each would mean the server did not know what happened.
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}
STREAM_MESSAGES = 3  # responses read from a server stream before it is cancelled
TIMEOUT_S = 20.0
SETTINGS = {
    "deadline": None,
    "derandomize": True,  # a fixed sequence of examples: reproducible in CI
    "database": None,
    "suppress_health_check": list(HealthCheck),
}
# Sane values of the string fields that take a choice (ModelConfig, TrainingOptions).
CHOICES = {
    "cell": CELLS,
    "activation": ACTIVATIONS,
    "optimizer": OPTIMIZERS,
    "dtype": DTYPES,
    "sentences": SENTENCE_MODES,
    "words": WORD_MODES,
    "device": ("cpu", "auto"),
    "csv_column": ("body", "text"),
}
SENTENCES = ["the function returns a list .", "a", "Return the value of the name ."]
FIELD_MIX = ("unset", "unset", "sane", "sane", "sane", "wild")
FEW_FIELDS = ("unset",) * 8 + ("sane", "wild")  # over a valid request: a few changes
# Calls (and every Delete*) that would change what the other examples use.
CHANGES = {"Train", "AttachNgramModel"}
INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}


class Fuzzer:
    """Hypothesis strategies for the messages of ``pb``, from their descriptors. Each field
    is left unset, or gets a sane value (ids that exist on the server, a choice the model
    accepts, a small number: examples must get past validation into the scoring,
    generation and training code), or a wild one, in the ratio 2:3:1."""

    def __init__(self, known: list[str], seeds: dict[str, Message]) -> None:
        self.seeds = seeds
        self.protected = set(known)
        awkward = [
            "",
            " ",
            "nl\n",
            "..",
            "../../etc/passwd",
            "/etc/passwd",
            "é" * 3,
            "\x00",
            "💥" * 50,
            "a" * 64,
            "a" * 65,
            "x" * 20_000,
            "j-" + "0" * 16,
            "c-" + "0" * 32,
            "0-0",
            "00000000000000000001",
            "99999999999999999999-0",
        ]
        self.known = st.sampled_from([*known, *SENTENCES])
        self.wild_strings = st.one_of(
            st.sampled_from(awkward), st.text(max_size=30), st.text(min_size=200)
        )

    def scalar(self, field: F, sane: bool) -> st.SearchStrategy:
        if field.type == F.TYPE_STRING:
            if sane:
                choices = CHOICES.get(field.name)
                return st.sampled_from(choices) if choices else self.known
            return self.wild_strings
        if field.type == F.TYPE_BYTES:
            return st.binary(max_size=300)
        if field.type == F.TYPE_BOOL:
            return st.booleans()
        if field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            if sane:
                return st.floats(0.0, 1.0)
            width = 64 if field.type == F.TYPE_DOUBLE else 32
            odd = [math.nan, math.inf, -math.inf, -0.0, 1.0, -1.0, 1e-300, 1e300, 1e30]
            return st.one_of(st.sampled_from(odd), st.floats(width=width))
        if field.type == F.TYPE_ENUM:
            values = st.sampled_from([v.number for v in field.enum_type.values])
            return values if sane else st.one_of(values, st.integers(-3, 50))  # open enums
        low, high = INT_RANGES[field.type]
        if sane:
            return st.integers(max(low, 0), 8)
        edges = [v for v in (-1, 100, 10**6, low, high) if low <= v <= high]
        return st.one_of(st.sampled_from(edges), st.integers(low, high), st.integers(-5, 300))

    def value(self, field: F, depth: int, sane: bool) -> st.SearchStrategy:
        if field.type == F.TYPE_MESSAGE:
            one = self.message(field.message_type, depth + 1)
        else:
            one = self.scalar(field, sane)
        if not field.is_repeated:
            return one
        if sane:
            return st.lists(one, min_size=1, max_size=3)
        # Empty, or past the server's per-request limits (8 sentences, 4 sentences).
        return st.one_of(st.lists(one, max_size=4), st.lists(one, min_size=9, max_size=20))

    def field(self, field: F, depth: int, mix: tuple[str, ...]) -> st.SearchStrategy:
        kinds = {
            "unset": st.none(),
            "sane": self.value(field, depth, sane=True),
            "wild": self.value(field, depth, sane=False),
        }
        return st.sampled_from(mix).flatmap(kinds.__getitem__)

    def message(
        self, descriptor: Any, depth: int = 0, mix: tuple[str, ...] = FIELD_MIX
    ) -> st.SearchStrategy[Message]:
        cls = pb_class(descriptor)
        if depth > 3:
            return st.just(cls())
        fields = {f.name: self.field(f, depth, mix) for f in descriptor.fields}
        return st.fixed_dictionaries(fields).map(lambda values: build(cls, values))

    def requests(self, method: Any) -> st.SearchStrategy:
        """A request of ``method`` (a list of them for a client stream): fuzzed from
        scratch, or a valid request (``SEEDS``) with a few fields fuzzed over it, which is
        what reaches the model, the decoder and the job manager."""
        wild = self.message(method.input_type)
        if method.client_streaming:
            header = self.message(pb.CorpusHeader.DESCRIPTOR, mix=FEW_FIELDS)
            chunks = st.lists(st.binary(min_size=1, max_size=200), max_size=3)
            seeded = st.builds(upload_messages, header, chunks)
            return st.one_of(st.lists(wild, min_size=1, max_size=4), seeded)
        seed = self.seeds.get(method.name)
        if seed is None:
            return wild
        over = self.message(method.input_type, mix=FEW_FIELDS)
        return st.one_of(wild, over.map(lambda fuzzed: merged(seed, fuzzed)))

    def spare(self, method: Any, message: Message) -> Message:
        """``message``, with the ids the other examples need replaced where ``method``
        would delete or retrain what they name."""
        if method.name in CHANGES or method.name.startswith("Delete"):
            for field in message.DESCRIPTOR.fields:
                single_string = field.type == F.TYPE_STRING and not field.is_repeated
                if single_string and getattr(message, field.name) in self.protected:
                    setattr(message, field.name, "fuzzed")
        return message


def merged(seed: Message, fuzzed: Message) -> Message:
    msg = type(seed)()
    msg.CopyFrom(seed)
    msg.MergeFrom(fuzzed)  # set fields replace the seed's; repeated ones add to them
    return msg


def upload_messages(header: Message, chunks: list[bytes]) -> list[Message]:
    return [
        pb.UploadCorpusRequest(header=header),
        *(pb.UploadCorpusRequest(chunk=c) for c in chunks),
    ]


def pb_class(descriptor: Any) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


def build(cls: type[Message], values: dict[str, Any]) -> Message:
    """A message with the drawn fields set (of a oneof, the last one set wins)."""
    msg = cls()
    for name, value in values.items():
        if value is None:
            continue
        field = cls.DESCRIPTOR.fields_by_name[name]
        target = getattr(msg, name) if field.type == F.TYPE_MESSAGE else None
        if field.is_repeated:
            if field.type == F.TYPE_MESSAGE:
                for item in value:
                    getattr(msg, name).add().CopyFrom(item)
            else:
                getattr(msg, name).extend(value)
        elif target is not None:
            target.CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """``data`` with bytes flipped, cut or inserted at drawn positions."""
    buffer = bytearray(data)
    for kind, position, byte in edits:
        at = position % (len(buffer) + 1)
        if kind == 0 and at < len(buffer):
            buffer[at] ^= byte or 0xFF
        elif kind == 1:
            del buffer[at:]
        else:
            buffer[at:at] = bytes([byte])
    return bytes(buffer)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, corpus_bytes) -> Iterator[tuple[RnnlmServer, Fuzzer]]:
    config = ServerConfig(
        address="127.0.0.1:0",
        store_dir=str(tmp_path_factory.mktemp("fuzz") / "store"),
        device="cpu",
        cache_refresh_s=0.0,
        workers=16,
        max_streams=12,  # a cancelled watch holds its slot up to a second
        max_concurrent_jobs=1,
        max_sentences_per_request=8,
        max_tokens_per_sentence=32,
        max_generated_tokens=16,
        max_generated_sentences=4,
        max_model_params=300_000,
        max_corpus_bytes=100_000,
    )
    server = RnnlmServer(config)
    server.start()
    try:
        with LMClient(server.address, timeout=60.0, retries=0) as client:
            job = train_small(client, corpus_bytes, epochs=1)
        assert job.state == "completed"
        yield server, Fuzzer(["small", job.corpus_id, job.job_id], seeds(job))
    finally:
        server.stop(grace=1.0)


def call(channel: grpc.Channel, method: Any, request: Any, raw: bool) -> None:
    """One call of ``method`` (``request``: a message or bytes; a list of them for the
    client stream); a failure must carry a specific status. Jobs it started are cancelled."""
    kind = ("stream" if method.client_streaming else "unary") + "_"
    kind += "stream" if method.server_streaming else "unary"
    serialize = None if raw else pb_class(method.input_type).SerializeToString
    stub = getattr(channel, kind)(
        PATH + method.name,
        request_serializer=serialize,  # None: the bytes go as they are
        response_deserializer=pb_class(method.output_type).FromString,
    )
    try:
        if method.client_streaming:
            reply = stub(iter(request), timeout=TIMEOUT_S)
        elif method.server_streaming:
            stream = stub(request, timeout=TIMEOUT_S)
            for count, _ in enumerate(stream, 1):
                if count >= STREAM_MESSAGES:
                    stream.cancel()
                    break
            return
        else:
            reply = stub(request, timeout=TIMEOUT_S)
    except grpc.RpcError as err:
        code = err.code()
        if code == grpc.StatusCode.CANCELLED and method.server_streaming:
            return  # ours
        assert code not in FORBIDDEN, f"{method.name}: {code.name}: {err.details()}"
        assert code != grpc.StatusCode.DEADLINE_EXCEEDED or method.name == "WatchTrainingJob"
        return
    if method.name in ("Train", "ResumeTrainingJob"):
        cancel = channel.unary_unary(
            PATH + "CancelTrainingJob",
            request_serializer=pb.CancelTrainingJobRequest.SerializeToString,
            response_deserializer=pb.TrainingJob.FromString,
        )
        with contextlib.suppress(grpc.RpcError):  # it may have failed or ended already
            cancel(pb.CancelTrainingJobRequest(job_id=reply.job_id), timeout=TIMEOUT_S)


def check_health(server: RnnlmServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


METHODS = list(SERVICE.methods)
IDS = [m.name for m in METHODS]


def seeds(job: Any) -> dict[str, Message]:
    """A valid request of each RPC that reads or trains, on the fixture's model and job."""
    small, sentences = "small", [pb.Sentence(text=SENTENCES[0]), pb.Sentence(text="a")]
    training = pb.TrainingOptions(epochs=1, batch_size=8, device="cpu")
    tiny = pb.ModelConfig(cell="gru", vocab_size=50, embed_size=8, hidden_size=8)
    return {
        "ScoreSentence": pb.ScoreSentenceRequest(model_id=small, sentences=sentences),
        "Generate": pb.GenerateRequest(model_id=small, max_tokens=5, prompt_text="the"),
        "GetModel": pb.GetModelRequest(model_id=small, include_vocabulary=True),
        "ExportArpa": pb.ExportArpaRequest(model_id=small),
        "WatchTrainingJob": pb.WatchTrainingJobRequest(job_id=job.job_id),
        "GetTrainingJob": pb.GetTrainingJobRequest(job_id=job.job_id),
        "ResumeTrainingJob": pb.ResumeTrainingJobRequest(job_id=job.job_id),
        "ListTrainingJobs": pb.ListTrainingJobsRequest(model_id=small),
        "Train": pb.TrainRequest(
            model_id="fuzzed",
            corpus=pb.CorpusSource(corpus_id=job.corpus_id),
            model=tiny,
            training=training,
        ),
    }


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_fuzzed_messages(fuzzed, method):
    server, fuzzer = fuzzed
    channel = grpc.insecure_channel(server.address)

    @settings(max_examples=80, **SETTINGS)
    @given(data=st.data())
    def one(data):
        request = data.draw(fuzzer.requests(method))
        if isinstance(request, list):
            request = [fuzzer.spare(method, m) for m in request]
        else:
            request = fuzzer.spare(method, request)
        call(channel, method, request, raw=False)

    try:
        one()
    finally:
        channel.close()
    check_health(server)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_mutated_and_raw_bytes(fuzzed, method):
    server, fuzzer = fuzzed
    channel = grpc.insecure_channel(server.address)
    edits = st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    )

    def mutated(request: Message | list[Message], changes: list) -> bytes | list[bytes]:
        if isinstance(request, list):
            return [mutate(fuzzer.spare(method, m).SerializeToString(), changes) for m in request]
        return mutate(fuzzer.spare(method, request).SerializeToString(), changes)

    @settings(max_examples=50, **SETTINGS)
    @given(data=st.data())
    def one(data):
        if data.draw(st.booleans()):  # raw bytes: mostly no valid message at all
            raw = st.binary(max_size=64)
            streamed = st.lists(raw, min_size=1, max_size=3)
            request = data.draw(streamed if method.client_streaming else raw)
        else:  # a message (often a valid one), mutated
            request = data.draw(st.builds(mutated, fuzzer.requests(method), edits))
        call(channel, method, request, raw=True)

    try:
        one()
    finally:
        channel.close()
    check_health(server)
