"""``AsyncLMClient`` against a real server: the same calls as the sync client, as coroutines
and async iterators, with the same typed results and errors."""

from __future__ import annotations

import asyncio

import pytest

from rnnlm.client import AsyncLMClient, InvalidArgument, LMClient, NotFound

from .conftest import FAST_TRAINING, SMALL_MODEL


def test_async_client_round_trip(server, corpus_bytes):
    async def scenario():
        async with AsyncLMClient(server.address, timeout=30) as client:
            corpus = await client.upload_corpus(corpus_bytes, filename="pydoc.txt")
            job = await client.train("aio", corpus, **SMALL_MODEL, **FAST_TRAINING)
            events = [event async for event in client.watch(job.job_id)]
            assert events[-1].state == "completed"
            assert (await client.job(job.job_id)).model_version == 1
            sentences = ["the list of values .", ". values of list the"]
            scores, ranked = await asyncio.gather(
                client.score("aio", sentences), client.rank("aio", sentences)
            )
            tokens = [t async for t in client.generate_stream("aio", max_tokens=6, seed=2)]
            sentences_out = await client.generate("aio", max_tokens=6, seed=2)
            models = await client.models()
            with pytest.raises(NotFound, match="'ghost' does not exist"):
                await client.model("ghost")
            return scores, ranked, tokens, sentences_out, models

    scores, ranked, tokens, generated, models = asyncio.run(scenario())
    with LMClient(server.address) as sync:  # the two clients agree (up to float rounding)
        alone = sync.score("aio", ["the list of values ."]).scores[0]
    assert alone.words == scores.scores[0].words
    assert alone.logprob == pytest.approx(scores.scores[0].logprob, rel=1e-5)
    assert ranked[0].logprob == max(s.logprob for s in scores.scores)
    assert tokens[-1].finish_reason and generated[0].text == tokens[-1].text
    assert [m.model_id for m in models] == ["aio"]


def test_an_upload_refused_at_its_header_gets_the_servers_status(server):
    """The server refuses a bad file name before reading the chunks. grpc.aio reported the
    write that follows as INTERNAL ("Internal error from Core", grpc/grpc#36066) on about
    one run in twelve of this test's uploads on a busy machine; the asyncio client makes
    client-streaming calls on a blocking channel since. Both sizes, many tries."""

    async def scenario() -> list[str]:
        async with AsyncLMClient(server.address, timeout=30) as client:
            seen = []
            for body in [b"a few words .", b"a few words .\n" * 40_000] * 10:
                try:
                    await client.upload_corpus(body, filename="bad\x07name.txt", chunk_bytes=4096)
                except InvalidArgument as err:
                    seen.append(err.details)
            return seen

    seen = asyncio.run(scenario())
    assert len(seen) == 20 and all("control character" in d for d in seen)
