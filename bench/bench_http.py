"""The OpenAI-compatible HTTP API against gRPC, on one server in this process: requests per
second scoring one sentence (echo, max_tokens 0) by HTTP with and without alternatives,
by gRPC ScoreSentence, and short completions, with 1 to 16 client threads.

    python bench/bench_http.py               # a small GRU trained on Python's help text
    python bench/bench_http.py --quick       # fewer requests: a smoke run

Client and server share the machine's cores, so the figures are the service's on that
machine with its clients beside it. Never part of the tests; thread counts are printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pydoc_data.topics import topics

import httpx

from rnnlm.client import LMClient
from rnnlm.server import RnnlmServer, ServerConfig

MODEL = "bench-http"
SENTENCE = "The value of the expression is returned as the result of the call ."
SMALL = {"cell": "gru", "vocab_size": 2000, "embed_size": 64, "hidden_size": 64}


def rate(call: Callable[[], object], threads: int, requests: int) -> float:
    """Calls per second with ``threads`` threads making ``requests`` calls in all."""
    each = max(1, requests // threads)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(each):
                call()
        except BaseException as err:  # reported after the run
            errors.append(err)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return each * threads / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    requests = 60 if args.quick else 300
    with tempfile.TemporaryDirectory() as store:
        config = ServerConfig(
            address="127.0.0.1:0", store_dir=store, http_address="127.0.0.1:0", device="cpu"
        )
        server = RnnlmServer(config)
        server.start()
        try:
            run(server, requests, args.quick)
        finally:
            server.stop(grace=1.0)


def run(server: RnnlmServer, requests: int, quick: bool) -> None:
    text = "\n\n".join(topics[k] for k in sorted(topics))[: 60_000 if quick else 300_000]
    with LMClient(server.address, timeout=600) as grpc_client:
        corpus = grpc_client.upload_corpus(text.encode(), filename="pydoc.txt")
        job = grpc_client.train(MODEL, corpus, **SMALL, epochs=1, batch_size=32, seed=1)
        for _ in grpc_client.watch(job.job_id):
            pass
        url = f"http://127.0.0.1:{server.http_port}/v1/completions"
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        with httpx.Client(timeout=60, limits=limits) as http:
            echo = {"model": MODEL, "prompt": SENTENCE, "max_tokens": 0, "echo": True}
            cases = {
                "HTTP echo, logprobs 0": lambda: http.post(url, json={**echo, "logprobs": 0}),
                "HTTP echo, logprobs 5": lambda: http.post(url, json={**echo, "logprobs": 5}),
                "gRPC ScoreSentence": lambda: grpc_client.score(MODEL, [SENTENCE], eos=False),
                "HTTP 8 words, seed": lambda: http.post(
                    url, json={"model": MODEL, "prompt": "The", "max_tokens": 8, "seed": 1}
                ),
            }
            for call in cases.values():  # warm up: load the model, open connections
                call()
            threads = (1, 4, 16)
            print(
                f"cores: {os.cpu_count()}, server workers: {server.config.workers}, "
                f"torch threads: {server.config.torch_threads or 'default'}"
            )
            print(f"{'requests/s':24}" + "".join(f"{t:>10} thr" for t in threads))
            for name, call in cases.items():
                figures = [rate(call, t, requests) for t in threads]
                print(f"{name:24}" + "".join(f"{f:>14.0f}" for f in figures))


if __name__ == "__main__":
    main()
