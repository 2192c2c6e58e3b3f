"""The asyncio client, :class:`AsyncLMClient`: the methods of :class:`rnnlm.client.LMClient`
as coroutines, with streams as async iterators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import grpc

from rnnlm.client import _common as common
from rnnlm.client._rescore import RescorePlan, rescore_async
from rnnlm.client._retry import RetryPolicy, acall_with_retry, astream_with_retry
from rnnlm.client.errors import from_rpc_error
from rnnlm.client.nbest import Rescored
from rnnlm.client.types import (
    Corpus,
    GeneratedSentence,
    GeneratedToken,
    Listing,
    ModelInfo,
    ScoreResult,
    SentenceScore,
    TrainingEvent,
    TrainingJob,
)
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc


async def _in_thread(requests: Any) -> AsyncIterator[Any]:
    """A blocking iterator (a corpus file read in chunks) driven from a worker thread, so
    that reading the file does not stall the event loop."""
    done = object()
    while (item := await asyncio.to_thread(next, requests, done)) is not done:
        yield item


class AsyncLMClient:
    """A connection to an rnnlm server for asyncio code; arguments as for ``LMClient``.

    Create it inside a running event loop, and close it with ``await client.close()`` or
    ``async with``. Leaving a stream early: wrap it in ``contextlib.aclosing`` so that the
    call is cancelled at once rather than when the iterator is garbage-collected.
    """

    def __init__(
        self,
        target: str = common.DEFAULT_TARGET,
        *,
        timeout: float | None = 30.0,
        api_key: str | None = None,
        retries: int = 3,
        backoff: float = 0.2,
        max_message_bytes: int = 64 * common.MiB,
        tls: bool | common.TLS = False,
        credentials: grpc.ChannelCredentials | None = None,
        options: Iterable[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._policy = RetryPolicy(retries=retries, backoff=backoff)
        self._metadata = common.call_metadata(api_key)
        opts = common.channel_options(max_message_bytes, options)
        secure, opts = common.channel_security(tls, credentials, opts)
        if secure is not None:
            self._channel = grpc.aio.secure_channel(target, secure, opts)
        else:
            self._channel = grpc.aio.insecure_channel(target, opts)
        self._stub = rnnlm_pb2_grpc.LanguageModelServiceStub(self._channel)

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncLMClient({self.target!r})"

    # -- call mechanics (see LMClient._unary for why every RPC may be retried) -------------

    async def _unary(
        self,
        method: str,
        request: Any,
        *,
        timeout: Any = common.CLIENT_TIMEOUT,
        idempotent: bool = True,
    ) -> Any:
        rpc = getattr(self._stub, method)
        deadline = self.timeout if timeout is common.CLIENT_TIMEOUT else timeout

        def attempt() -> Any:
            body = request() if callable(request) else request
            return rpc(body, timeout=deadline, metadata=self._metadata)

        try:
            return await acall_with_retry(attempt, self._policy, idempotent=idempotent)
        except grpc.RpcError as err:
            raise from_rpc_error(err, method) from err

    async def _stream(
        self,
        method: str,
        make_request: Callable[[Any], Any],
        convert: Callable[[Any], Any],
        *,
        resumable: bool,
        timeout: float | None,
    ) -> AsyncIterator[Any]:
        rpc = getattr(self._stub, method)

        def open_stream(last: Any) -> Any:
            return rpc(make_request(last), timeout=timeout, metadata=self._metadata)

        stream = astream_with_retry(open_stream, self._policy, resumable=resumable)
        try:
            async for msg in stream:
                yield convert(msg)
        except grpc.RpcError as err:
            raise from_rpc_error(err, method) from err
        finally:
            await stream.aclose()

    # -- corpora and training -------------------------------------------------------------

    async def upload_corpus(
        self,
        source: str | Path | bytes,
        *,
        filename: str | None = None,
        chunk_bytes: int = common.MiB,
        timeout: float | None = None,
    ) -> Corpus:
        """Upload a corpus file or its bytes (see ``LMClient.upload_corpus``)."""
        plan = await asyncio.to_thread(common.plan_upload, source, filename, chunk_bytes)
        msg = await self._unary(
            "UploadCorpus", lambda: _in_thread(plan.requests()), timeout=timeout
        )
        return Corpus.from_pb(msg)

    async def corpora(self, limit: int = 0) -> Listing[Corpus]:
        """Uploaded corpora, newest first (see ``LMClient.corpora``)."""
        response = await self._unary("ListCorpora", pb.ListCorporaRequest(limit=limit))
        return Listing(map(Corpus.from_pb, response.corpora), response.unreadable_ids)

    async def delete_corpus(self, corpus_id: Corpus | str) -> int:
        """Delete an uploaded corpus; returns the bytes freed (see ``LMClient.delete_corpus``)."""
        cid = corpus_id.corpus_id if isinstance(corpus_id, Corpus) else corpus_id
        request = pb.DeleteCorpusRequest(corpus_id=cid)
        return (await self._unary("DeleteCorpus", request, idempotent=False)).size_bytes

    async def train(
        self,
        model_id: str,
        corpus: Corpus | str | None = None,
        *,
        server_path: str | None = None,
        format: str = "auto",
        csv_column: str | None = None,
        paragraphs: str = "blank-line",
        request_id: str | None = None,
        arpa: common.Arpa | None = None,
        **options: Any,
    ) -> TrainingJob:
        """Start a training job (see ``LMClient.train``)."""
        request = common.train_request(
            model_id,
            corpus,
            server_path=server_path,
            format=format,
            csv_column=csv_column,
            paragraphs=paragraphs,
            request_id=request_id,
            options=options,
            arpa_id=await self._arpa_id(arpa) if arpa is not None else "",
        )
        return TrainingJob.from_pb(await self._unary("Train", request))

    def watch(
        self, job_id: str, *, after_event_id: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[TrainingEvent]:
        """The job's events until it ends, resumed after the last one on reconnect."""
        return self._stream(
            "WatchTrainingJob",
            lambda last: common.watch_request(job_id, after_event_id, last),
            TrainingEvent.from_pb,
            resumable=True,
            timeout=timeout,
        )

    async def job(self, job_id: str) -> TrainingJob:
        """One training job."""
        request = pb.GetTrainingJobRequest(job_id=job_id)
        return TrainingJob.from_pb(await self._unary("GetTrainingJob", request))

    async def jobs(self, model_id: str | None = None, limit: int = 0) -> Listing[TrainingJob]:
        """Training jobs, newest first."""
        request = pb.ListTrainingJobsRequest(model_id=model_id or "", limit=limit)
        response = await self._unary("ListTrainingJobs", request)
        return Listing(map(TrainingJob.from_pb, response.jobs), response.unreadable_ids)

    async def delete_job(self, job_id: str) -> None:
        """Delete a job that has ended (see ``LMClient.delete_job``)."""
        request = pb.DeleteTrainingJobRequest(job_id=job_id)
        await self._unary("DeleteTrainingJob", request, idempotent=False)

    async def cancel(self, job_id: str) -> TrainingJob:
        """Ask a running job to stop."""
        request = pb.CancelTrainingJobRequest(job_id=job_id)
        return TrainingJob.from_pb(await self._unary("CancelTrainingJob", request))

    async def resume(self, job_id: str, epochs: int = 0) -> TrainingJob:
        """Continue a cancelled or interrupted job from its last checkpoint."""
        request = pb.ResumeTrainingJobRequest(job_id=job_id, epochs=epochs)
        return TrainingJob.from_pb(
            await self._unary("ResumeTrainingJob", request, idempotent=False)
        )

    # -- scoring and generation -----------------------------------------------------------

    async def score(
        self,
        model_id: str,
        sentences: Sequence[str | Sequence[str]],
        *,
        rank: bool = False,
        omit_tokens: bool = False,
        scorer: str | None = None,
        neural_weight: float | None = None,
        bos: bool | None = None,
        eos: bool | None = None,
        length_norm: str | None = None,
        length_alpha: float | None = None,
    ) -> ScoreResult:
        """Score sentences (see ``LMClient.score``)."""
        options = common.ScoreOptions(scorer, neural_weight, bos, eos, length_norm, length_alpha)
        request = common.score_request(model_id, sentences, rank, omit_tokens, options)
        return ScoreResult.from_pb(await self._unary("ScoreSentence", request))

    async def rank(
        self, model_id: str, candidates: Sequence[str | Sequence[str]], **options: Any
    ) -> list[SentenceScore]:
        """Candidates best first by ``rank_score``; ``options`` as for :meth:`score`."""
        result = await self.score(model_id, candidates, rank=True, **options)
        return list(result.scores)

    async def rescore(self, nbest: Any, model_id: str, **options: Any) -> list[Rescored]:
        """Add the model's score to each line of an n-best list (options as for
        ``LMClient.rescore``); up to ``max_in_flight`` requests run concurrently."""
        return [r async for r in self.rescore_stream(nbest, model_id, **options)]

    def rescore_stream(self, nbest: Any, model_id: str, **options: Any) -> AsyncIterator[Rescored]:
        """:meth:`rescore` as an async iterator (options as for it). ``nbest`` is read on the
        event loop: pass a file only where its reads are quick (a local disk)."""
        plan = RescorePlan.create(model_id, **options)
        return rescore_async(plan, nbest, partial(self._unary, "ScoreSentence"))

    async def generate(
        self, model_id: str, prompt: str | Sequence[str] | None = None, **options: Any
    ) -> list[GeneratedSentence]:
        """Generate whole sentences within the client's timeout (options as for
        :meth:`generate_stream`)."""
        collector = common.SentenceCollector()
        stream = self.generate_stream(model_id, prompt, timeout=self.timeout, **options)
        async for token in stream:
            collector.add(token)
        return collector.sentences()

    def generate_stream(
        self,
        model_id: str,
        prompt: str | Sequence[str] | None = None,
        *,
        num_sentences: int = 1,
        min_tokens: int = 0,
        max_tokens: int = 0,
        temperature: float | None = None,
        top_k: int = 0,
        top_p: float | None = None,
        seed: int | None = None,
        method: str | None = None,
        beam_width: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[GeneratedToken]:
        """Tokens as the server produces them (see ``LMClient.generate_stream``)."""
        request = common.generate_request(
            model_id,
            prompt,
            num_sentences=num_sentences,
            min_tokens=min_tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            method=method,
            beam_width=beam_width,
        )
        return self._stream(
            "Generate", lambda _: request, GeneratedToken.from_pb, resumable=False, timeout=timeout
        )

    # -- models ---------------------------------------------------------------------------

    async def models(self) -> Listing[ModelInfo]:
        """Every model in the store."""
        response = await self._unary("ListModels", pb.ListModelsRequest())
        return Listing(map(ModelInfo.from_pb, response.models), response.unreadable_ids)

    async def model(self, model_id: str, include_vocabulary: bool = False) -> ModelInfo:
        """One model; with ``include_vocabulary`` its words by id too."""
        request = pb.GetModelRequest(model_id=model_id, include_vocabulary=include_vocabulary)
        return ModelInfo.from_pb(await self._unary("GetModel", request))

    async def delete_model(self, model_id: str) -> int:
        """Delete a model, all its versions and its jobs; returns how many versions were
        removed."""
        request = pb.DeleteModelRequest(model_id=model_id)
        return (await self._unary("DeleteModel", request, idempotent=False)).versions_deleted

    # -- n-gram models ----------------------------------------------------------------------

    async def attach_ngram(
        self, model_id: str, arpa: common.Arpa, *, neural_weight=None, timeout=None
    ) -> ModelInfo:
        """Upload an ARPA file and make it the model's n-gram part in a new version (see
        ``LMClient.attach_ngram``)."""
        request = common.attach_request(model_id, await self._arpa_id(arpa), neural_weight)
        msg = await self._unary("AttachNgramModel", request, timeout=timeout, idempotent=False)
        return ModelInfo.from_pb(msg)

    async def export_arpa(
        self, model_id: str, out: str | Path | BinaryIO, *, version: int = 0, timeout=None
    ) -> int:
        """Write a version's n-gram part as an ARPA file (see ``LMClient.export_arpa``)."""
        request = pb.ExportArpaRequest(model_id=model_id, version=version)
        chunks = self._stream(
            "ExportArpa", lambda _: request, lambda m: m.data, resumable=False, timeout=timeout
        )
        with common.DownloadSink(out) as sink:
            async for data in chunks:
                await asyncio.to_thread(sink.write, data)
        return sink.size

    async def _arpa_id(self, arpa: common.Arpa) -> str:
        if isinstance(arpa, Corpus):
            return arpa.corpus_id
        return (await self.upload_corpus(arpa, filename=common.arpa_filename(arpa))).corpus_id

    # -- operations -------------------------------------------------------------------------

    async def health(self, service: str = "", timeout: float | None = None) -> str:
        """The standard gRPC health check, as :meth:`LMClient.health`."""
        from grpc_health.v1 import health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        deadline = self.timeout if timeout is None else timeout
        request = common.health_request(service)
        try:
            return common.health_status(await stub.Check(request, timeout=deadline))
        except grpc.RpcError as err:
            raise from_rpc_error(err, "Health.Check") from err
