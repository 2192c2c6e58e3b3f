"""Generate packs the tokens it has ready into one message (max_tokens_per_message), against
a real server: the tokens are the same whatever the packing (sampled with a seed, greedy,
beam), no message carries more than asked, several streams at once get fewer messages than
tokens, a message never waits for tokens that do not exist yet, values out of range are
INVALID_ARGUMENT, and the client library yields the same tokens one by one either way."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from rnnlm.client import InvalidArgument, LMClient
from rnnlm.server import RnnlmServer
from rnnlm.server.serving import GenerateOptions
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc

from .conftest import Backend, train_small, wait_until

pytestmark = pytest.mark.parametrize("backend", ["local"], indirect=True)

MODEL_ID = "packed"
STREAMS = 8
# Each a request of its own decoding: sampled with a seed, greedy, beam search.
REQUESTS = {
    "sample": {"num_sentences": 3, "min_tokens": 20, "max_tokens": 20, "seed": 11},
    "greedy": {"method": pb.DECODING_METHOD_GREEDY, "max_tokens": 30},
    "beam": {"method": pb.DECODING_METHOD_BEAM, "num_sentences": 3, "max_tokens": 25},
}


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory, corpus_bytes) -> Path:
    """A local store holding one small trained model for the module's servers."""
    store = tmp_path_factory.mktemp("messages") / "store"
    server = RnnlmServer(Backend("local", store, None, "rnnlm").config())
    server.start()
    try:
        with LMClient(server.address, retries=0) as client:
            assert train_small(client, corpus_bytes, MODEL_ID, epochs=1).state == "completed"
    finally:
        server.stop(grace=1.0)
    return store


@pytest.fixture
def server(start_server, trained_store) -> RnnlmServer:
    """The model's server (also behind the ``client`` fixture), with a stream slot for each
    of the concurrent streams below."""
    return start_server(store_dir=str(trained_store), max_streams=STREAMS + 2)


@pytest.fixture
def stub(server: RnnlmServer) -> Iterator[rnnlm_pb2_grpc.LanguageModelServiceStub]:
    with grpc.insecure_channel(server.address) as channel:
        yield rnnlm_pb2_grpc.LanguageModelServiceStub(channel)


def messages(stub, per_message: int, **fields: Any) -> list[pb.GenerateResponse]:
    request = pb.GenerateRequest(model_id=MODEL_ID, max_tokens_per_message=per_message, **fields)
    return list(stub.Generate(request, timeout=60))


def tokens(received: list[pb.GenerateResponse]) -> list[tuple]:
    """Every token the messages carry, in order, as (version, sentence, token, logprob,
    finish_reason, text); the ``following`` ones take their message's version."""
    out = []
    for message in received:
        for token in [message, *message.following]:
            fields = (token.sentence, token.token, token.logprob, token.finish_reason, token.text)
            out.append((message.model_version, *fields))
    return out


def check_packing(received: list[pb.GenerateResponse], per_message: int) -> None:
    for message in received:
        assert message.token and message.model_version == 1
        assert 1 + len(message.following) <= per_message
        for token in message.following:  # the version and nesting are the outer message's
            assert token.token and token.model_version == 0 and not token.following


@pytest.mark.parametrize("decoding", sorted(REQUESTS))
def test_the_tokens_are_the_same_one_a_message_or_many(stub, decoding):
    fields = REQUESTS[decoding]
    one_each = messages(stub, 1, **fields)
    assert all(not m.following for m in one_each)
    assert tokens(messages(stub, 0, **fields)) == tokens(one_each)  # 0: the default, 1
    packed = messages(stub, 64, **fields)
    check_packing(packed, 64)
    assert tokens(packed) == tokens(one_each)
    finished = [t for t in tokens(one_each) if t[4]]
    assert len(finished) == fields.get("num_sentences", 1) and all(t[5] for t in finished)


def test_streams_at_once_get_fewer_messages_than_tokens(stub):
    """Streams decoded together: each message takes what its stream has ready, so the
    streams receive fewer messages than tokens (one a token when the server ignores the
    field), at most 4 tokens each here."""
    requests = [
        {**REQUESTS["sample"], "seed": 100 + i} if i % 2 else REQUESTS["beam"]
        for i in range(STREAMS)
    ]
    with ThreadPoolExecutor(STREAMS) as pool:
        received = list(pool.map(lambda fields: messages(stub, 4, **fields), requests))
    for got in received:
        check_packing(got, 4)
        assert len([t for t in tokens(got) if t[4]]) == 3  # every sentence finished
    assert sum(len(got) for got in received) < sum(len(tokens(got)) for got in received)


class Hooks:
    """A ``should_stop`` that never stops. The decoding loop calls it once a step, in its
    thread ("decoding"), the serving core before each list it hands over, in the caller's:
    each waits there until its condition holds. ``steps``: the loop's steps begun."""

    def __init__(self, loop: Callable[[], bool], caller: Callable[[], bool]) -> None:
        self.loop, self.caller, self.steps = loop, caller, 0

    def __call__(self) -> bool:
        condition = self.caller
        if threading.current_thread().name == "decoding":
            self.steps += 1
            condition = self.loop
        wait_until(lambda: True if condition() else None, what="a held step")
        return False


def test_a_message_never_waits_for_tokens_to_come(server):
    """The loop is held before its second step until the first token was handed over: a
    server that waited to fill a message would never hand it over (the loop gives up after
    30 s and the call fails)."""
    first: list[list] = []
    hooks = Hooks(loop=lambda: hooks.steps < 2 or bool(first), caller=lambda: True)
    options = GenerateOptions(min_tokens=10, max_tokens=10, seed=3, max_tokens_per_message=64)
    batches = server.serving.generate_batches(MODEL_ID, None, options, hooks)
    first.append(next(batches))
    rest = [token for batch in batches for token in batch]
    assert len(first[0]) == 1 and len(rest) == 9


def test_the_tokens_ready_go_together_up_to_the_limit(server):
    """The caller is held before it hands over its first list until the loop has begun its
    last step: by then the other tokens wait in its queue, and go out 4 a list."""
    hooks = Hooks(loop=lambda: True, caller=lambda: hooks.steps >= 12)
    options = GenerateOptions(min_tokens=12, max_tokens=12, seed=4, max_tokens_per_message=4)
    batches = list(server.serving.generate_batches(MODEL_ID, None, options, hooks))
    sizes = [len(batch) for batch in batches]
    assert sum(sizes) == 12 and max(sizes) == 4 and sizes[1] == 4
    assert len(batches) <= 4  # the first list, then 4 a list


@pytest.mark.parametrize("value", [-1, 257, 1000])
def test_values_out_of_range_are_invalid_argument(stub, value):
    with pytest.raises(grpc.RpcError) as caught:
        messages(stub, value)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details()
    assert "max_tokens_per_message must be in [0, 256]" in details and f"got {value}" in details


def test_the_client_unpacks_the_messages(client):
    """The library asks for packed messages by default and yields the same tokens, version
    included, as one token a message; ``generate`` assembles the same sentences."""
    fields = {"num_sentences": 3, "max_tokens": 15, "seed": 7}
    packed = list(client.generate_stream(MODEL_ID, "the", **fields))
    one_each = list(client.generate_stream(MODEL_ID, "the", max_tokens_per_message=1, **fields))
    assert packed == one_each and len(packed) > 3
    assert all(t.model_version == 1 for t in packed)
    beam = {"method": "beam", "num_sentences": 3, "max_tokens": 12}
    assert client.generate(MODEL_ID, **beam) == client.generate(
        MODEL_ID, max_tokens_per_message=1, **beam
    )
    with pytest.raises(InvalidArgument, match="max_tokens_per_message must be in"):
        list(client.generate_stream(MODEL_ID, max_tokens_per_message=300))
