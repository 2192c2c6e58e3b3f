"""The whole service through a real server and the client library, on both stores:
upload, train, watch, score, rank, generate, list, delete; idempotent Train; cancel and
resume; scores that do not depend on batching."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rnnlm.client import FailedPrecondition, InvalidArgument, NotFound

from .conftest import FAST_TRAINING, SMALL_MODEL, train_small

FLUENT = "the function returns a new list of the items ."
SCRAMBLED = ". items list the function of new returns a the"


def test_train_watch_score_generate_list_delete(client, corpus_bytes):
    corpus = client.upload_corpus(corpus_bytes, filename="pydoc.txt", chunk_bytes=4096)
    assert corpus.size_bytes == len(corpus_bytes)
    assert client.upload_corpus(corpus_bytes).corpus_id == corpus.corpus_id  # content address

    job = client.train("docs", corpus, **SMALL_MODEL, **FAST_TRAINING)
    assert job.state in ("queued", "running")
    events = list(client.watch(job.job_id))
    kinds = [e.kind for e in events]
    assert kinds[0] == "state" and events[0].state == "running"
    assert "checkpoint" in kinds and kinds[-1] == "state"
    progress = [e.progress for e in events if e.kind == "progress"]
    assert [p.step for p in progress] == sorted(p.step for p in progress)
    epoch_ends = [p for p in progress if p.kind == "epoch"]
    assert len(epoch_ends) == 2 and epoch_ends[-1].valid_perplexity is not None
    assert all(p.loss > 0 and p.tokens_per_second > 0 and p.eta_seconds >= 0 for p in progress)
    assert events[-1].state == "completed" and events[-1].model_version == 1

    done = client.job(job.job_id)
    assert done.state == "completed" and done.model_version == 1 and done.checkpoint_step > 0
    assert done.model_config["cell"] == "gru" and done.training["epochs"] == 2

    result = client.score("docs", [FLUENT, SCRAMBLED, ["The", "Zzyzx", "function"]])
    assert result.model_version == 1
    fluent, scrambled, with_unknown = result.scores
    assert fluent.logprob > scrambled.logprob
    assert math.isclose(fluent.log10prob, fluent.logprob / math.log(10))
    assert math.isclose(sum(t.logprob for t in fluent.tokens), fluent.logprob, rel_tol=1e-9)
    assert fluent.tokens[-1].token == "SENTENCE_END"
    assert with_unknown.words == ("the", "zzyzx", "function")
    assert with_unknown.unknown_words == ("zzyzx",)
    assert [t.unknown for t in with_unknown.tokens] == [False, True, False, False]

    ranked = client.rank("docs", [SCRAMBLED, FLUENT])
    assert [s.index for s in ranked] == [1, 0]

    tokens = list(client.generate_stream("docs", "the", num_sentences=2, max_tokens=8, seed=3))
    assert {t.sentence for t in tokens} == {0, 1}
    last = [t for t in tokens if t.finish_reason]
    assert len(last) == 2 and all(t.text.startswith("the") for t in last)
    assert all(t.token not in ("UNKNOWN_TOKEN", "SENTENCE_START") for t in tokens)
    again = client.generate("docs", "the", num_sentences=2, max_tokens=8, seed=3)
    assert [s.text for s in again] == [t.text for t in last]  # the seed makes it repeatable
    beams = client.generate("docs", method="beam", num_sentences=3, max_tokens=10)
    assert len(beams) == 3 and beams[0].logprob >= beams[-1].logprob

    (info,) = client.models()
    assert info.model_id == "docs" and info.state == "ready" and info.current_version == 1
    detail = client.model("docs", include_vocabulary=True)
    assert detail.vocabulary_size == len(detail.vocabulary) <= 600
    assert detail.vocabulary[:3] == ("UNKNOWN_TOKEN", "SENTENCE_START", "SENTENCE_END")
    assert detail.versions[0].valid_perplexity is not None
    assert [j.job_id for j in client.jobs("docs")] == [job.job_id]

    assert client.delete_model("docs") == 1
    assert client.models() == []
    with pytest.raises(NotFound, match="'docs' does not exist"):
        client.score("docs", [FLUENT])


def test_train_again_publishes_a_new_version_that_serving_picks_up(client, corpus_bytes):
    train_small(client, corpus_bytes, epochs=1)
    assert client.score("small", [FLUENT]).model_version == 1
    job = train_small(client, corpus_bytes, epochs=1, seed=7)
    assert job.model_version == 2
    assert client.score("small", [FLUENT]).model_version == 2
    assert [v.version for v in client.model("small").versions] == [2, 1]


def test_same_request_id_never_starts_a_second_job(client, corpus_bytes):
    corpus = client.upload_corpus(corpus_bytes)
    first = client.train("idem", corpus, request_id="req-42", **SMALL_MODEL, epochs=1)
    second = client.train("idem", corpus, request_id="req-42", **SMALL_MODEL, epochs=1)
    assert second.job_id == first.job_id
    assert len(client.jobs("idem")) == 1
    list(client.watch(first.job_id))
    third = client.train("idem", corpus, request_id="req-42", **SMALL_MODEL, epochs=1)
    assert third.job_id == first.job_id and third.state == "completed"

    # Concurrent twins (a client retry racing its first attempt) get the one job too.
    with ThreadPoolExecutor(4) as pool:
        twins = list(
            pool.map(
                lambda _: client.train("twin", corpus, request_id="req-7", **SMALL_MODEL).job_id,
                range(4),
            )
        )
    assert len(set(twins)) == 1 and len(client.jobs("twin")) == 1
    client.cancel(twins[0])


def test_cancel_stops_the_job_and_resume_finishes_it(client, corpus_bytes):
    corpus = client.upload_corpus(corpus_bytes)
    job = client.train("long", corpus, **SMALL_MODEL, epochs=50, log_every=1, checkpoint_every=5)
    with pytest.raises(FailedPrecondition, match="no version ready yet"):
        client.score("long", [FLUENT])
    with pytest.raises(FailedPrecondition, match="being trained by job"):
        client.delete_model("long")
    for event in client.watch(job.job_id):
        if event.kind == "checkpoint":
            break
    cancelled_at = client.cancel(job.job_id)
    events = list(client.watch(job.job_id, after_event_id=None))
    assert events[-1].state == "cancelled"
    ended = client.job(job.job_id)
    assert ended.state == "cancelled"
    # Stopped within one step of the request: no more than one step after the last report.
    assert ended.checkpoint_step <= cancelled_at.progress.step + 2
    with pytest.raises(FailedPrecondition, match="already ended"):
        client.cancel(job.job_id)

    resumed = client.resume(job.job_id, epochs=0)
    assert resumed.state in ("queued", "running")
    client.cancel(job.job_id)  # stop again, then finish with fewer steps to go
    list(client.watch(job.job_id))
    stopped = client.job(job.job_id)
    with pytest.raises(InvalidArgument, match="epochs must be >="):
        client.resume(job.job_id, epochs=1)
    # Concurrent resumes (two users, two replicas): exactly one runs the job.
    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda _: _try_resume(client, job.job_id), range(3)))
    assert outcomes.count("resumed") == 1 and outcomes.count("refused") == 2
    final = client.job(job.job_id)
    steps = [e.progress.step for e in client.watch(final.job_id) if e.kind == "progress"]
    assert client.job(job.job_id).state in ("completed", "early_stopped")
    # The resumed run continued from its checkpoint instead of starting over.
    later = [s for s in steps if s > stopped.checkpoint_step]
    assert later and min(later) > stopped.checkpoint_step


def _try_resume(client, job_id: str) -> str:
    try:
        client.resume(job_id, epochs=50)
    except FailedPrecondition:
        return "refused"
    return "resumed"


def test_concurrent_scores_equal_scores_alone(start_server, corpus_bytes):
    from rnnlm.client import LMClient

    server = start_server(batch_max_wait_ms=20.0)
    with LMClient(server.address) as client:
        train_small(client, corpus_bytes, epochs=1)
        sentences = [s.strip() + " ." for s in corpus_bytes.decode().split(".")[:48] if s.strip()]
        alone = {s: client.score("small", [s]).scores[0] for s in sentences}
        together: dict[str, object] = {}
        barrier = threading.Barrier(len(sentences))

        def score(sentence: str) -> None:
            barrier.wait()
            together[sentence] = client.score("small", [sentence]).scores[0]

        threads = [threading.Thread(target=score, args=(s,)) for s in sentences]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    batcher = server.cache.get("small").batcher
    assert batcher.batches < batcher.items  # some calls did share a forward pass
    for sentence in sentences:
        a, b = alone[sentence], together[sentence]
        assert a.words == b.words
        # Identical up to float32 rounding of a different batch shape.
        assert b.logprob == pytest.approx(a.logprob, rel=1e-5, abs=1e-5)
        for ta, tb in zip(a.tokens, b.tokens):
            assert tb.logprob == pytest.approx(ta.logprob, rel=1e-5, abs=1e-5)
