"""``rnnlm demo``: the whole service in one command, for a first look.

Starts a server in this process on a local store in a temporary directory (the server
half, ``rnnlm.server.demo``, which the CLI passes in), then, through the same client a
remote user would use: uploads a corpus (Python's own help text unless one is given),
trains a small GRU while showing its progress, ranks a fluent sentence against scrambled
versions of it, generates a few sentences and lists the models.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, closing
from typing import Any

from rnnlm.client._output import SentencePrinter, models_table, scores_table
from rnnlm.client._progress import follow_job
from rnnlm.client.sync import LMClient
from rnnlm.client.types import SUCCESS_JOB_STATES

# (store directory or None) -> a context that yields (target, store directory) of a server.
StartServer = Callable[[str | None], AbstractContextManager[tuple[str, str]]]

MODEL_ID = "demo"
# Small enough to train in well under a minute on a laptop CPU.
DEMO_MODEL = {"cell": "gru", "vocab_size": 2000, "embed_size": 64, "hidden_size": 64}
DEMO_TRAINING = {"batch_size": 32, "seed": 1}
# A fluent sentence in the corpus's register first, then scrambles of the same words: a
# language model that learned anything gives the first one the highest probability.
CANDIDATES = (
    "the function returns a new list of the items .",
    "function the returns list a new of items the .",
    "the returns function a the list items new of .",
    "items of list new the a returns the function .",
)


def demo_corpus(limit: int = 150_000) -> bytes:
    """Python's help topics (``pydoc_data.topics``): prose that every install carries."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))[:limit].encode("utf-8")


def section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def run_demo(
    start_server: StartServer,
    *,
    corpus: str | None = None,
    epochs: int = 3,
    keep_dir: str | None = None,
) -> int:
    """Run the tour against a server that ``start_server(keep_dir)`` starts; 0 when every
    step worked. The CLI passes ``rnnlm.server.demo.local_server``: this module never
    imports the server (DESIGN.md section 1), so it stays importable without it."""
    section("1. Starting a server in this process")
    with start_server(keep_dir) as (target, store_dir):
        print(f"listening on {target}; models are stored in {store_dir}")
        with LMClient(target) as client:
            return tour(client, corpus, epochs)


def tour(client: LMClient, corpus: str | None, epochs: int) -> int:
    """The client side of the demo, against any server."""
    section("2. Uploading a corpus")
    if corpus:
        uploaded = client.upload_corpus(corpus)
    else:
        print("no --corpus given: using Python's help topics (pydoc_data.topics)")
        uploaded = client.upload_corpus(demo_corpus(), filename="pydoc_topics.txt")
    print(f"{uploaded.filename}: {uploaded.size_bytes:,} bytes, corpus id {uploaded.corpus_id}")

    section(f"3. Training a small GRU for {epochs} epoch{'' if epochs == 1 else 's'}")
    settings: dict[str, Any] = {**DEMO_MODEL, **DEMO_TRAINING, "epochs": epochs}
    print(", ".join(f"{k}={v}" for k, v in settings.items()))
    job = client.train(MODEL_ID, uploaded, **settings)
    print(f"job {job.job_id} started; its progress events:", flush=True)
    job = follow_job(client, job.job_id, out=sys.stdout)
    if job.state not in SUCCESS_JOB_STATES:
        print(f"training ended {job.state}" + (f": {job.error}" if job.error else ""))
        return 1

    section("4. Ranking candidate sentences, most probable first")
    ranked = client.rank(MODEL_ID, CANDIDATES, omit_tokens=True)
    print(scores_table(ranked, CANDIDATES, ranked=True, tokens=False))
    if ranked and ranked[0].index == 0:
        print("OK: the fluent sentence (#0) ranks first, above its scrambles.")
    else:
        print("NOTE: the fluent sentence (#0) did not rank first; more --epochs usually help.")

    section("5. Generating 3 sentences (seed 1), printed as the tokens stream in")
    printer = SentencePrinter(sys.stdout)
    stream = client.generate_stream(MODEL_ID, num_sentences=3, seed=1, temperature=0.8)
    with closing(stream):
        for token in stream:
            printer.add(token)
    printer.close()

    section("6. Models in the store")
    print(models_table(client.models()))

    section("Done")
    print("Next: `rnnlm serve` starts a server of your own; then `rnnlm train MODEL FILE`,")
    print("`rnnlm rank MODEL SENTENCE...` and `rnnlm generate MODEL` talk to it.")
    return 0
