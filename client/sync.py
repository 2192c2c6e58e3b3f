"""The blocking client, :class:`LMClient`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import grpc

from rnnlm.client import _common as common
from rnnlm.client._rescore import RescorePlan, rescore_sync
from rnnlm.client._retry import RetryPolicy, call_with_retry, stream_with_retry
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


class LMClient:
    """A connection to an rnnlm server.

    Unary calls get a deadline of ``timeout`` seconds; streams (watching a job, streaming
    generation, uploading) have none unless one is passed, since training takes as long as
    it takes. Calls that are safe to repeat are retried ``retries`` times on UNAVAILABLE,
    with exponential backoff from ``backoff`` seconds. Failures raise
    :class:`rnnlm.client.errors.RnnlmError` subclasses. ``api_key`` is sent as the
    ``x-api-key`` metadata (servers that require one ask for it on the calls that change
    state). ``tls=True`` (system CAs) or ``tls=TLS(ca_file=...)`` selects TLS; ``credentials``
    (``grpc.ssl_channel_credentials(...)``) gives full control instead.
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
            self._channel = grpc.secure_channel(target, secure, opts)
        else:
            self._channel = grpc.insecure_channel(target, opts)
        self._stub = rnnlm_pb2_grpc.LanguageModelServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> LMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LMClient({self.target!r})"

    # -- call mechanics -------------------------------------------------------------------

    def _unary(
        self,
        method: str,
        request: Any,
        *,
        timeout: Any = common.CLIENT_TIMEOUT,
        idempotent: bool = True,
    ) -> Any:
        """One call with retries; ``request`` may be a factory (a fresh request stream for
        each attempt of a client-streaming call).

        Repeated after UNAVAILABLE unless ``idempotent`` is false: reads and cancel by
        nature, Train through its request_id, UploadCorpus because corpora are content
        addressed (the request stream is rebuilt for each attempt). Resume and the deletes
        are not: a retry after a lost reply would fail on the first attempt's effect.
        """
        rpc = getattr(self._stub, method)
        deadline = self.timeout if timeout is common.CLIENT_TIMEOUT else timeout

        def attempt() -> Any:
            body = request() if callable(request) else request
            return rpc(body, timeout=deadline, metadata=self._metadata)

        try:
            return call_with_retry(attempt, self._policy, idempotent=idempotent)
        except grpc.RpcError as err:
            raise from_rpc_error(err, method) from err

    def _stream(
        self,
        method: str,
        make_request: Callable[[Any], Any],
        convert: Callable[[Any], Any],
        *,
        resumable: bool,
        timeout: float | None,
    ) -> Iterator[Any]:
        rpc = getattr(self._stub, method)

        def open_stream(last: Any) -> Any:
            return rpc(make_request(last), timeout=timeout, metadata=self._metadata)

        stream = stream_with_retry(open_stream, self._policy, resumable=resumable)
        try:
            for msg in stream:
                yield convert(msg)
        except grpc.RpcError as err:
            raise from_rpc_error(err, method) from err
        finally:
            stream.close()  # closed early: cancels the call at once, not at garbage collection

    # -- corpora and training -------------------------------------------------------------

    def upload_corpus(
        self,
        source: str | Path | bytes,
        *,
        filename: str | None = None,
        chunk_bytes: int = common.MiB,
        timeout: float | None = None,
    ) -> Corpus:
        """Upload a corpus file (a path, read in chunks) or its bytes; the same bytes always
        give the same corpus id. ``filename`` (default: the file's name) picks the format
        when training says ``format="auto"``. No deadline unless ``timeout`` is given."""
        plan = common.plan_upload(source, filename, chunk_bytes)
        msg = self._unary("UploadCorpus", plan.requests, timeout=timeout)
        return Corpus.from_pb(msg)

    def corpora(self, limit: int = 0) -> Listing[Corpus]:
        """Uploaded corpora (and ARPA files), newest first (``limit`` 0: the server's 100)."""
        response = self._unary("ListCorpora", pb.ListCorporaRequest(limit=limit))
        return Listing(map(Corpus.from_pb, response.corpora), response.unreadable_ids)

    def delete_corpus(self, corpus_id: Corpus | str) -> int:
        """Delete an uploaded corpus (or its id); returns the bytes freed. Refused while a
        running job reads it; models trained on it stay."""
        cid = corpus_id.corpus_id if isinstance(corpus_id, Corpus) else corpus_id
        request = pb.DeleteCorpusRequest(corpus_id=cid)
        return self._unary("DeleteCorpus", request, idempotent=False).size_bytes

    def train(
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
        """Start training ``model_id`` on an uploaded ``corpus`` (or its id) or on a file
        under the server's corpus directory (``server_path``); returns the job at once.

        ``options`` are the fields of ModelConfig and TrainingOptions, e.g. ``cell="gru",
        hidden_size=256, epochs=5``; ``clip=None``/``patience=None`` disable them. The
        ``request_id`` (a fresh one by default) makes retrying safe: the server returns the
        job the first attempt started. ``arpa`` (an ARPA file's path or bytes, uploaded
        first, or an uploaded Corpus) is the n-gram part, instead of the built-in one.
        """
        request = common.train_request(
            model_id,
            corpus,
            server_path=server_path,
            format=format,
            csv_column=csv_column,
            paragraphs=paragraphs,
            request_id=request_id,
            options=options,
            arpa_id=self._arpa_id(arpa) if arpa is not None else "",
        )
        return TrainingJob.from_pb(self._unary("Train", request))

    def watch(
        self, job_id: str, *, after_event_id: str | None = None, timeout: float | None = None
    ) -> Iterator[TrainingEvent]:
        """The job's events from the start (or after ``after_event_id``) until it ends. A
        dropped connection is resumed after the last event received."""
        return self._stream(
            "WatchTrainingJob",
            lambda last: common.watch_request(job_id, after_event_id, last),
            TrainingEvent.from_pb,
            resumable=True,
            timeout=timeout,
        )

    def job(self, job_id: str) -> TrainingJob:
        """One training job."""
        request = pb.GetTrainingJobRequest(job_id=job_id)
        return TrainingJob.from_pb(self._unary("GetTrainingJob", request))

    def jobs(self, model_id: str | None = None, limit: int = 0) -> Listing[TrainingJob]:
        """Training jobs, newest first, of one model or all (``limit`` 0: the server's 100)."""
        request = pb.ListTrainingJobsRequest(model_id=model_id or "", limit=limit)
        response = self._unary("ListTrainingJobs", request)
        return Listing(map(TrainingJob.from_pb, response.jobs), response.unreadable_ids)

    def delete_job(self, job_id: str) -> None:
        """Delete a job that has ended, with its events and checkpoint (it can no longer be
        resumed); a running job is refused (``FailedPrecondition``): cancel it first."""
        request = pb.DeleteTrainingJobRequest(job_id=job_id)
        self._unary("DeleteTrainingJob", request, idempotent=False)

    def cancel(self, job_id: str) -> TrainingJob:
        """Ask a running job to stop (within one step); it can be resumed later."""
        request = pb.CancelTrainingJobRequest(job_id=job_id)
        return TrainingJob.from_pb(self._unary("CancelTrainingJob", request))

    def resume(self, job_id: str, epochs: int = 0) -> TrainingJob:
        """Continue a cancelled or interrupted job from its last checkpoint; ``epochs``
        raises its total (0: keep)."""
        request = pb.ResumeTrainingJobRequest(job_id=job_id, epochs=epochs)
        return TrainingJob.from_pb(self._unary("ResumeTrainingJob", request, idempotent=False))

    # -- scoring and generation -----------------------------------------------------------

    def score(
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
        """Score sentences: a str is raw text, a list of str is words already tokenised.
        ``scorer``, ``neural_weight``, ``bos``, ``eos``, ``length_norm`` and ``length_alpha``
        are described at :class:`ScoreOptions`; None leaves them to the server."""
        options = common.ScoreOptions(scorer, neural_weight, bos, eos, length_norm, length_alpha)
        request = common.score_request(model_id, sentences, rank, omit_tokens, options)
        return ScoreResult.from_pb(self._unary("ScoreSentence", request))

    def rank(
        self, model_id: str, candidates: Sequence[str | Sequence[str]], **options: Any
    ) -> list[SentenceScore]:
        """Candidates best first by ``rank_score`` (``index`` says which input each was);
        ``options`` as for :meth:`score`."""
        return list(self.score(model_id, candidates, rank=True, **options).scores)

    def rescore(self, nbest: Any, model_id: str, **options: Any) -> list[Rescored]:
        """Add the model's score, ln p (``log10=True``: log10 p), as a feature (``feature``,
        default "RNNLM0") to each line of an n-best list: parsed entries
        (:mod:`rnnlm.client.nbest`), lines (str, or bytes from a binary file) or the whole
        text, in ``format`` "auto", "moses" or "plain". With ``weight`` each group (same id)
        is re-ranked by ``total + weight * value``. Any length: ``batch_size`` hypotheses a
        request (256), ``max_in_flight`` at a time (4). ``scorer``, ``neural_weight``,
        ``bos`` and ``eos`` as for :meth:`score`. ``Rescored.line()`` is the output line;
        the options are ``RescorePlan.create``'s."""
        return list(self.rescore_stream(nbest, model_id, **options))

    def rescore_stream(self, nbest: Any, model_id: str, **options: Any) -> Iterator[Rescored]:
        """:meth:`rescore` as an iterator, for lists too long to hold: entries are read,
        sent and yielded as they go (a group is held until it is complete)."""
        plan = RescorePlan.create(model_id, **options)
        return rescore_sync(plan, nbest, partial(self._unary, "ScoreSentence"))

    def generate(
        self, model_id: str, prompt: str | Sequence[str] | None = None, **options: Any
    ) -> list[GeneratedSentence]:
        """Generate whole sentences (the stream collected, within the client's timeout);
        ``options`` as for :meth:`generate_stream`."""
        collector = common.SentenceCollector()
        stream = self.generate_stream(model_id, prompt, timeout=self.timeout, **options)
        for token in stream:
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
    ) -> Iterator[GeneratedToken]:
        """Tokens as the server produces them. ``prompt`` is text or a list of words;
        ``method`` is "sample", "greedy" or "beam" (default: sample, or beam when
        ``beam_width`` > 1); 0 and None mean the server's defaults. Closing the iterator
        early cancels the call, so the server stops generating."""
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
        # Not resumable: a restarted generation would repeat tokens already yielded.
        return self._stream(
            "Generate", lambda _: request, GeneratedToken.from_pb, resumable=False, timeout=timeout
        )

    # -- models ---------------------------------------------------------------------------

    def models(self) -> Listing[ModelInfo]:
        """Every model in the store."""
        response = self._unary("ListModels", pb.ListModelsRequest())
        return Listing(map(ModelInfo.from_pb, response.models), response.unreadable_ids)

    def model(self, model_id: str, include_vocabulary: bool = False) -> ModelInfo:
        """One model; with ``include_vocabulary`` its words by id too."""
        request = pb.GetModelRequest(model_id=model_id, include_vocabulary=include_vocabulary)
        return ModelInfo.from_pb(self._unary("GetModel", request))

    def delete_model(self, model_id: str) -> int:
        """Delete a model, all its versions and its jobs; returns how many versions were
        removed."""
        request = pb.DeleteModelRequest(model_id=model_id)
        return self._unary("DeleteModel", request, idempotent=False).versions_deleted

    # -- n-gram models ----------------------------------------------------------------------

    def attach_ngram(
        self, model_id: str, arpa: common.Arpa, *, neural_weight=None, timeout=None
    ) -> ModelInfo:
        """Upload an ARPA file (path or bytes; or an uploaded Corpus) and publish a new
        version of the model with it as the n-gram part; ``neural_weight`` None: tuned on
        the model's held-out sentences. No deadline unless ``timeout`` is given."""
        request = common.attach_request(model_id, self._arpa_id(arpa), neural_weight)
        # Not retried: a lost reply after success would publish a second version.
        msg = self._unary("AttachNgramModel", request, timeout=timeout, idempotent=False)
        return ModelInfo.from_pb(msg)

    def export_arpa(
        self, model_id: str, out: str | Path | BinaryIO, *, version: int = 0, timeout=None
    ) -> int:
        """Write a version's n-gram part (0: the current one) as an ARPA file to ``out``,
        a path (complete or absent, never half written) or a binary file; returns bytes."""
        request = pb.ExportArpaRequest(model_id=model_id, version=version)
        chunks = self._stream(
            "ExportArpa", lambda _: request, lambda m: m.data, resumable=False, timeout=timeout
        )
        with common.DownloadSink(out) as sink:
            for data in chunks:
                sink.write(data)
        return sink.size

    def _arpa_id(self, arpa: common.Arpa) -> str:
        if isinstance(arpa, Corpus):
            return arpa.corpus_id
        return self.upload_corpus(arpa, filename=common.arpa_filename(arpa)).corpus_id

    # -- operations -------------------------------------------------------------------------

    def health(self, service: str = "", timeout: float | None = None) -> str:
        """The standard gRPC health check: ``"SERVING"``, or ``"NOT_SERVING"`` while the
        server cannot reach its store or is shutting down. ``service`` "" is the whole
        server. Not retried: an unreachable server raises ``Unavailable``."""
        from grpc_health.v1 import health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self._channel)
        deadline = self.timeout if timeout is None else timeout
        request = common.health_request(service)
        try:
            return common.health_status(stub.Check(request, timeout=deadline))
        except grpc.RpcError as err:
            raise from_rpc_error(err, "Health.Check") from err
