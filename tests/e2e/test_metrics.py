"""The Prometheus endpoint, scraped over HTTP after real calls: every count must match the
calls made, and every metric the server exports is listed in the README."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import grpc
import pytest

from rnnlm.client import LMClient, NotFound
from rnnlm.server.metrics import Metrics
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc

from .conftest import SMALL_MODEL, Scrape, scrape_when, train_small

README = Path(__file__).resolve().parents[2] / "README.md"
SENTENCES = ["the function returns a value .", "a list of the items .", "it is a name ."]


@pytest.mark.parametrize("backend", ["local"], indirect=True)  # metrics do not depend on it
def test_metrics_count_real_calls(start_server, corpus_bytes):
    server = start_server(metrics_address="127.0.0.1:0", batch_max_wait_ms=20.0)
    assert server.metrics_port
    with LMClient(server.address, retries=0) as client:
        done = train_small(client, corpus_bytes, model_id="metered")
        after_training = Scrape(server.metrics_port)

        score_calls = 6
        threads = [
            threading.Thread(target=client.score, args=("metered", SENTENCES))
            for _ in range(score_calls)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        tokens = list(client.generate_stream("metered", num_sentences=2, max_tokens=8, seed=1))
        with pytest.raises(NotFound):
            client.model("absent")

        # A job in progress shows in the per-model gauges; they go when it ends.
        long_job = client.train("running", done.corpus_id, **SMALL_MODEL, epochs=50, log_every=1)
        next(e for e in client.watch(long_job.job_id) if e.kind == "progress")
        during = scrape_when(server.metrics_port, lambda s: s.value("rnnlm_training_step"))
        client.cancel(long_job.job_id)
        list(client.watch(long_job.job_id))
        end = scrape_when(
            server.metrics_port, lambda s: s.value("rnnlm_training_jobs_running") == 0
        )

    # Training: the steps this server took, the job's end state, no gauges left behind.
    assert after_training.value("rnnlm_training_steps_total") == done.progress.step
    assert after_training.value("rnnlm_training_jobs_finished_total", state="completed") == 1
    assert after_training.labelled("rnnlm_training_loss") == []
    assert during.value("rnnlm_training_jobs_running") == 1
    assert during.value("rnnlm_training_step", model_id="running") >= 1
    assert during.value("rnnlm_training_total_steps", model_id="running") > 1
    assert during.value("rnnlm_training_loss", model_id="running") > 0
    assert end.value("rnnlm_training_jobs_finished_total", state="cancelled") == 1
    assert end.labelled("rnnlm_training_step") == []

    # Requests by method and code, with latencies.
    assert end.value("rnnlm_requests_total", method="ScoreSentence", code="OK") == score_calls
    assert end.value("rnnlm_requests_total", method="GetModel", code="NOT_FOUND") == 1
    assert end.value("rnnlm_requests_total", method="Generate", code="OK") == 1
    assert end.value("rnnlm_request_duration_seconds_count", method="ScoreSentence") == score_calls
    assert end.value("rnnlm_request_duration_seconds_sum", method="ScoreSentence") > 0
    assert {s.value for s in end.samples if s.name == "rnnlm_requests_in_flight"} == {0}

    # Serving: sentences, batches (each sentence in exactly one), tokens, the cache.
    scored = score_calls * len(SENTENCES)
    assert end.value("rnnlm_scored_sentences_total") == scored
    assert end.value("rnnlm_batch_size_sum") == scored
    assert 1 <= end.value("rnnlm_batch_size_count") <= score_calls
    assert end.value("rnnlm_batch_queue_depth") == 0
    assert end.value("rnnlm_generated_tokens_total") == len(tokens)
    assert end.value("rnnlm_model_cache_loads_total", result="ok") == 1
    # The score calls and the Generate call each asked the cache once; the first one loaded.
    assert end.value("rnnlm_model_cache_hits_total") == score_calls + 1 - 1
    assert end.value("rnnlm_model_cache_models") == 1
    assert end.value("rnnlm_streams_open") == 0
    assert end.value("rnnlm_store_up") == 1


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_a_call_the_client_abandons_counts_as_cancelled_not_as_an_error(start_server):
    server = start_server(metrics_address="127.0.0.1:0")
    sent = threading.Event()

    def requests():
        yield pb.UploadCorpusRequest(header=pb.CorpusHeader(filename="a.txt"))
        yield pb.UploadCorpusRequest(chunk=b"some words .")
        sent.set()
        time.sleep(30)  # never finishes: the client cancels first

    with grpc.insecure_channel(server.address) as channel:
        call = rnnlm_pb2_grpc.LanguageModelServiceStub(channel).UploadCorpus.future(requests())
        sent.wait(10)
        scrape_when(
            server.metrics_port,
            lambda s: s.value("rnnlm_requests_in_flight", method="UploadCorpus") == 1,
        )
        call.cancel()
        scrape = scrape_when(
            server.metrics_port,
            lambda s: s.value("rnnlm_requests_in_flight", method="UploadCorpus") == 0,
        )
    assert scrape.value("rnnlm_requests_total", method="UploadCorpus", code="CANCELLED") == 1
    assert scrape.value("rnnlm_requests_total", method="UploadCorpus", code="INTERNAL") is None


def test_every_metric_is_listed_in_the_readme():
    listed = set(re.findall(r"^\| `(rnnlm_[a-z_]+)`", README.read_text(), re.MULTILINE))
    # Counters are exposed with a _total suffix; the README lists the names a query uses.
    exposed = {
        m.name + "_total" if m.type == "counter" else m.name for m in Metrics().registry.collect()
    }
    assert len(exposed) > 10 and listed == exposed
