"""Work for a call stops when the call does: the client's deadline passed or it cancelled.

gRPC marks such a call inactive but leaves its handler running, so the servicer hands a
"client still waiting?" check down to the batcher and to model/. Against a real server:
a large ScoreSentence past its deadline stops part-way, a cancelled beam search stops, and
requests queued behind a long batch whose callers left are dropped, never computed; the
metrics count each (``rnnlm_work_abandoned_total``). Below them, the model-level checks
with a plain callable. The model is large enough for scoring to take seconds here; no test
asserts a time, only what was (not) computed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from rnnlm.client import LMClient, ResourceExhausted
from rnnlm.model import ModelConfig
from rnnlm.model.decoding import beam_search, sample_events
from rnnlm.model.engines import create_engine, torch_available
from rnnlm.model.generation import GenerationConfig
from rnnlm.model.scoring import neural_token_log_probs
from rnnlm.model.stopping import Stopped
from rnnlm.model.vocab import Vocabulary
from rnnlm.server import RnnlmServer
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc

from .conftest import Backend, Scrape, scrape_when, train_small, wait_until

# hidden 256, full softmax: 1,024 sentences of 512 words take well over 2.5 s to score.
# The full softmax (output_classes 0): the default word classes score several times faster,
# too fast for the deadlines below to fall inside the scoring.
MODEL = {"embed_size": 256, "hidden_size": 256, "epochs": 1, "output_classes": 0}
WORDS_PER_SENTENCE = 512


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory, corpus_bytes) -> Path:
    """A local store holding model "big", trained once for the module's servers."""
    store = tmp_path_factory.mktemp("deadlines") / "store"
    backend = Backend("local", store, None, "rnnlm")
    server = RnnlmServer(backend.config())
    server.start()
    try:
        with LMClient(server.address, retries=0) as client:
            assert train_small(client, corpus_bytes[:10_000], "big", **MODEL).state == "completed"
    finally:
        server.stop(grace=1.0)
    return store


@pytest.fixture
def start(start_server, trained_store):
    def start_with_model(**overrides) -> RnnlmServer:
        return start_server(
            store_dir=str(trained_store), metrics_address="127.0.0.1:0", **overrides
        )

    return start_with_model


def long_sentences(corpus_bytes: bytes, count: int) -> list[pb.Sentence]:
    """``count`` different word lists of WORDS_PER_SENTENCE words (no tokenising needed)."""
    words = corpus_bytes.decode().split()
    span = len(words) - WORDS_PER_SENTENCE
    return [
        pb.Sentence(words=pb.Words(words=words[(i * 37) % span :][:WORDS_PER_SENTENCE]))
        for i in range(count)
    ]


def stub(channel: grpc.Channel) -> rnnlm_pb2_grpc.LanguageModelServiceStub:
    return rnnlm_pb2_grpc.LanguageModelServiceStub(channel)


def in_flight(server: RnnlmServer, method: str, count: int) -> Scrape:
    return scrape_when(
        server.metrics_port, lambda s: s.value("rnnlm_requests_in_flight", method=method) == count
    )


def abandoned(scrape: Scrape, method: str, reason: str) -> float | None:
    return scrape.value("rnnlm_work_abandoned_total", method=method, reason=reason)


def ended(server: RnnlmServer, method: str, calls: int) -> Scrape:
    """The scrape once ``calls`` calls of ``method`` were stopped and none is in flight."""

    def done(s: Scrape) -> bool:
        total = sum(abandoned(s, method, r) or 0 for r in ("deadline", "cancelled"))
        return total >= calls and s.value("rnnlm_requests_in_flight", method=method) == 0

    return scrape_when(server.metrics_port, done)


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_a_large_score_past_its_deadline_stops_part_way(start, corpus_bytes):
    server = start(max_sentences_per_request=1024, batch_max_size=16)
    request = pb.ScoreSentenceRequest(
        model_id="big", sentences=long_sentences(corpus_bytes, 1024), omit_tokens=True
    )
    with LMClient(server.address, retries=0) as client:
        client.score("big", ["the value ."])  # loads the model: the deadline is all scoring
    with grpc.insecure_channel(
        server.address, options=[("grpc.max_send_message_length", 64 << 20)]
    ) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            # Past the checks and into the batch well before (~0.5 s here), and well before
            # the end of the scoring (several seconds with the full softmax).
            stub(channel).ScoreSentence(request, timeout=2.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        scrape = ended(server, "ScoreSentence", calls=1)

    assert abandoned(scrape, "ScoreSentence", "deadline") == 1
    # Only the warm-up sentence was scored, and only its forward pass finished: the big
    # request's batch (64 sub-batches of 16) was stopped between its sub-batches.
    assert scrape.value("rnnlm_scored_sentences_total") == 1
    assert scrape.value("rnnlm_batch_size_count") == 1
    batcher = server.cache.get("big").batcher
    assert (batcher.stopped, batcher.dropped, batcher.items) == (1, 0, 1)


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_queued_requests_whose_callers_left_are_dropped(start, corpus_bytes):
    server = start(max_sentences_per_request=512)
    big = pb.ScoreSentenceRequest(
        model_id="big", sentences=long_sentences(corpus_bytes, 512), omit_tokens=True
    )
    small = pb.ScoreSentenceRequest(model_id="big", sentences=long_sentences(corpus_bytes, 2))
    with LMClient(server.address, retries=0) as client:
        client.score("big", ["the value ."])  # loads the model
    with grpc.insecure_channel(server.address) as channel:
        holder = stub(channel).ScoreSentence.future(big, timeout=120)  # seconds of scoring
        batcher = server.cache.get("big").batcher
        wait_until(lambda: True if batcher.computing == 512 else None, what="the big batch")
        codes = []

        def queue_one() -> None:
            try:
                stub(channel).ScoreSentence(small, timeout=0.3)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as err:
                codes.append(err.code())

        threads = [threading.Thread(target=queue_one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(holder.result().scores) == 512
        scrape = ended(server, "ScoreSentence", calls=4)

    assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 4
    assert abandoned(scrape, "ScoreSentence", "deadline") == 4
    # Forward passes: the warm-up and the big request, nothing of the four left behind.
    assert scrape.value("rnnlm_batch_size_count") == 2
    assert scrape.value("rnnlm_batch_size_sum") == 1 + 512
    assert scrape.value("rnnlm_scored_sentences_total") == 1 + 512
    scrape_when(server.metrics_port, lambda s: s.value("rnnlm_batch_queue_depth") == 0)
    assert batcher.dropped == 4 and batcher.items == 1 + 512


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_a_cancelled_beam_search_stops(start):
    server = start(max_generated_tokens=2000)
    request = pb.GenerateRequest(
        model_id="big",
        method=pb.DECODING_METHOD_BEAM,
        beam_width=64,
        min_tokens=2000,  # no hypothesis may end early: 2,000 steps, a minute or more
        max_tokens=2000,
    )
    with grpc.insecure_channel(server.address) as channel:
        call = stub(channel).Generate(request, timeout=300)
        in_flight(server, "Generate", 1)
        time.sleep(0.5)  # well into the search
        call.cancel()
        scrape = ended(server, "Generate", calls=1)

    assert abandoned(scrape, "Generate", "cancelled") == 1
    assert scrape.value("rnnlm_requests_total", method="Generate", code="CANCELLED") == 1
    assert not scrape.value("rnnlm_generated_tokens_total")  # the search never finished
    assert scrape.value("rnnlm_streams_open") == 0


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_a_text_too_long_for_the_word_limit_is_refused_before_tokenising(start):
    server = start(max_tokens_per_sentence=6)
    with LMClient(server.address, retries=0) as client:
        # One word of 1,000 characters: within 6 words, but more text than 6 words can be
        # (64 characters a word); refused without running the tokenizer on it.
        with pytest.raises(ResourceExhausted, match="is 1,000 characters; at most 384"):
            client.score("big", ["x" * 1000])
        with pytest.raises(ResourceExhausted, match="is 1,000 characters; at most 384"):
            client.generate("big", "y" * 1000)
        with pytest.raises(ResourceExhausted, match="has 7 words; the limit is 6"):
            client.score("big", [["w"] * 7])
        assert client.score("big", ["x" * 300]).scores[0].words == ("x" * 300,)


# -- model level: a plain callable, checked between the steps ------------------------------


class Asked:
    """A should_stop that says "stop" from its ``at``-th call on, and counts its calls."""

    def __init__(self, at: int) -> None:
        self.at, self.calls = at, 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls >= self.at


CELLS = ["rnn", *(["gru"] if torch_available() else [])]


def engine_for(cell: str, vocab_size: int = 50):
    config = ModelConfig(cell=cell, vocab_size=vocab_size, embed_size=8, hidden_size=8)
    return create_engine(config, vocab_size, seed=1, device="cpu")


@pytest.mark.parametrize("cell", CELLS)
def test_scoring_stops_between_sub_batches(cell):
    rng = np.random.default_rng(0)
    # Long and unshared: scored in ordinary batches, 5 of 2 sequences.
    sequences = [np.concatenate([[1], rng.integers(4, 50, 40)]) for _ in range(10)]
    engine = engine_for(cell)
    assert len(neural_token_log_probs(engine, sequences, 2, Asked(at=10**9))) == 10
    stop = Asked(at=3)  # asked before the call's first chunk, then before every batch
    with pytest.raises(Stopped):
        neural_token_log_probs(engine, sequences, 2, stop)
    assert stop.calls == 3  # one batch scored, four left undone


@pytest.mark.parametrize("cell", CELLS)
def test_prefix_tree_scoring_stops_between_output_chunks(cell):
    rng = np.random.default_rng(1)
    # An n-best list: a shared start, then 2,000+ distinct nodes, so several output chunks.
    start = rng.integers(4, 50, 10)
    sequences = [np.concatenate([[1], start, rng.integers(4, 50, 50)]) for _ in range(50)]
    engine = engine_for(cell)
    stop = Asked(at=3)  # asked before the tree, then before each chunk of output rows
    with pytest.raises(Stopped):
        neural_token_log_probs(engine, sequences, 64, stop)
    assert stop.calls == 3


@pytest.mark.parametrize("cell", CELLS)
def test_beam_search_and_sampling_stop_between_steps(cell):
    vocab = Vocabulary.build([[f"w{i}" for i in range(40)]], 50)
    engine = engine_for(cell, len(vocab))
    prompt = np.zeros(0, np.int64)
    beam = GenerationConfig(method="beam", beam_width=4, min_length=30, max_length=30)
    stop = Asked(at=5)
    with pytest.raises(Stopped):
        beam_search(engine, vocab, prompt, beam, stop)
    assert stop.calls == 5  # four steps of thirty taken
    sample = GenerationConfig(min_length=30, max_length=30, seed=0)
    stop = Asked(at=5)
    with pytest.raises(Stopped):
        list(sample_events(engine, vocab, prompt, sample, stop))
    assert stop.calls == 5
