"""Every method of both clients, defined once (see ``_calls`` for how): the request built
from the arguments, the calls to make, the response converted."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, get_args, get_origin

import grpc

from rnnlm.client import _common as common
from rnnlm.client._calls import (
    CLIENT_TIMEOUT,
    Call,
    Drain,
    Flow,
    Mode,
    Rescoring,
    ServerStream,
    Shell,
    operation,
    streaming,
)
from rnnlm.client._files import DownloadSink, MiB, plan_upload
from rnnlm.client._rescore import RescorePlan
from rnnlm.client._retry import RetryPolicy
from rnnlm.client._targets import Target, balancing, channel_target, target_text
from rnnlm.client.nbest import Rescored
from rnnlm.client.types import (
    Corpus,
    GeneratedSentence,
    GeneratedToken,
    GradientFlow,
    Listing,
    ModelInfo,
    ScoreResult,
    SentenceScore,
    TrainingEvent,
    TrainingJob,
)
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc


class ClientCore(Shell[Mode]):
    """The methods of ``LMClient`` and ``AsyncLMClient``. A client supplies ``_channels``,
    ``_run(flow)`` (a flow's steps run: blocking, or as a coroutine), and for its streams
    (iterators, or async ones) ``_server_stream(source)`` and ``_rescore``."""

    #: Where the client's channel comes from: ``grpc``, or ``grpc.aio``.
    _channels: Any

    def __init__(
        self,
        target: Target = common.DEFAULT_TARGET,
        *,
        timeout: float | None = 30.0,
        api_key: str | None = None,
        retries: int = 3,
        backoff: float = 0.2,
        max_message_bytes: int = 64 * MiB,
        tls: bool | common.TLS = False,
        credentials: grpc.ChannelCredentials | None = None,
        options: Iterable[tuple[str, Any]] = (),
    ) -> None:
        self.target = target_text(target)
        # A list of servers becomes gRPC's address list, its host names resolved now, once.
        self._address = channel_target(self.target)
        self.timeout = timeout
        self._policy = RetryPolicy(retries=retries, backoff=backoff)
        self._metadata = ((common.API_KEY_HEADER, api_key),) if api_key else None
        # Size limits both ways (large score requests and vocabularies), the retry policy
        # and balancing (round robin over several servers, unless the caller names a policy),
        # then the caller's options: gRPC takes the last of a repeated key.
        options = list(options)
        lb_policy = dict(options).get("grpc.lb_policy_name", balancing(self.target))
        opts = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            *self._policy.channel_options(lb_policy),
            *options,
        ]
        self._security = common.channel_security(tls, credentials, opts)
        self._channel = self._open_channel(self._channels)
        self._stub = rnnlm_pb2_grpc.LanguageModelServiceStub(self._channel)

    def _open_channel(self, channels: Any) -> Any:
        """A channel to the target from ``channels`` (``grpc`` or ``grpc.aio``)."""
        secure, opts = self._security
        if secure is None:
            return channels.insecure_channel(self._address, opts)
        return channels.secure_channel(self._address, secure, opts)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give a client (a class deriving from ``ClientCore[mode]``) its methods."""
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            if get_origin(base) is ClientCore:
                (mode,) = get_args(base)
                for name, defined in vars(ClientCore).items():
                    if isinstance(defined, (operation, streaming)):
                        setattr(cls, name, defined.method(cls, mode))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"

    def _rpc(self, method: str) -> Any:
        """The stub's callable for ``method`` ("Train", or "Health.Check")."""
        if method == "Health.Check":  # imported when first used, as in health()
            from grpc_health.v1 import health_pb2_grpc

            return health_pb2_grpc.HealthStub(self._channel).Check
        return getattr(self._stub, method)

    def _invoke(self, call: Call, request: Any) -> Any:
        """Make a unary ``call``: its response, or (asyncio) an awaitable of it."""
        return self._rpc(call.method)(request, timeout=self._timeout(call), metadata=self._metadata)

    def _timeout(self, call: Call) -> float | None:
        return self.timeout if call.timeout is CLIENT_TIMEOUT else call.timeout

    # -- corpora and training -------------------------------------------------------------

    @operation
    def upload_corpus(
        self,
        source: str | Path | bytes,
        *,
        filename: str | None = None,
        chunk_bytes: int = MiB,
        timeout: float | None = None,
        on_progress: Callable[[int], object] | None = None,
    ) -> Flow[Corpus]:
        """Upload a corpus file (a path, read in chunks) or its bytes; the same bytes always
        give the same corpus id. ``filename`` (default: the file's name) picks the format
        when training says ``format="auto"``. No deadline unless ``timeout`` is given.
        ``on_progress(n)`` is called with each chunk's size in bytes as it is sent (from a
        worker thread in the asyncio client), e.g. a progress bar's ``update``."""

        # Hashing a file reads it whole: the asyncio client runs this in a worker thread.
        def requests() -> Iterator[pb.UploadCorpusRequest]:
            return plan_upload(source, filename, chunk_bytes, on_progress).requests()

        return Corpus.from_pb((yield Call("UploadCorpus", requests, timeout)))

    @operation
    def corpora(self, limit: int = 0) -> Flow[Listing[Corpus]]:
        """Uploaded corpora (and ARPA files), newest first (``limit`` 0: the server's 100)."""
        response = yield Call("ListCorpora", pb.ListCorporaRequest(limit=limit))
        return Listing(map(Corpus.from_pb, response.corpora), response.unreadable_ids)

    @operation
    def delete_corpus(self, corpus_id: Corpus | str) -> Flow[int]:
        """Delete an uploaded corpus (or its id); returns the bytes freed. Refused while a
        running job reads it; models trained on it stay."""
        cid = corpus_id.corpus_id if isinstance(corpus_id, Corpus) else corpus_id
        return int((yield Call("DeleteCorpus", pb.DeleteCorpusRequest(corpus_id=cid))).size_bytes)

    @operation
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
        validate_only: bool = False,
        **options: Any,
    ) -> Flow[TrainingJob]:
        """Start training ``model_id`` on an uploaded ``corpus`` (or its id) or on a file
        under the server's corpus directory (``server_path``); returns the job at once.
        ``validate_only``: the server checks the request (the options, its limits and
        devices, the corpus if given) and starts nothing; the answer has no ``job_id`` and
        the options as a job would run them. Check before uploading a large corpus.

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
            arpa_id=(yield from self._arpa_id(arpa, upload=not validate_only)),
            validate_only=validate_only,
        )
        return TrainingJob.from_pb((yield Call("Train", request)))

    @streaming
    def watch(
        self, job_id: str, *, after_event_id: str | None = None, timeout: float | None = None
    ) -> ServerStream[TrainingEvent]:
        """The job's events from the start (or after ``after_event_id``) until it ends. A
        dropped connection is resumed after the last event received."""

        def request(last: pb.TrainingEvent | None) -> pb.WatchTrainingJobRequest:
            """Reconnecting: ask for the events after the last one received."""
            after = last.event_id if last is not None else (after_event_id or "")
            return pb.WatchTrainingJobRequest(job_id=job_id, after_event_id=after)

        def convert(msg: pb.TrainingEvent) -> tuple[TrainingEvent]:
            return (TrainingEvent.from_pb(msg),)

        return ServerStream("WatchTrainingJob", request, convert, timeout, resumable=True)

    @operation
    def job(self, job_id: str) -> Flow[TrainingJob]:
        """One training job."""
        request = pb.GetTrainingJobRequest(job_id=job_id)
        return TrainingJob.from_pb((yield Call("GetTrainingJob", request)))

    @operation
    def jobs(self, model_id: str | None = None, limit: int = 0) -> Flow[Listing[TrainingJob]]:
        """Training jobs, newest first, of one model or all (``limit`` 0: the server's 100)."""
        request = pb.ListTrainingJobsRequest(model_id=model_id or "", limit=limit)
        response = yield Call("ListTrainingJobs", request)
        return Listing(map(TrainingJob.from_pb, response.jobs), response.unreadable_ids)

    @operation
    def delete_job(self, job_id: str) -> Flow[None]:
        """Delete a job that has ended, with its events and checkpoint (it can no longer be
        resumed); a running job is refused (``FailedPrecondition``): cancel it first."""
        yield Call("DeleteTrainingJob", pb.DeleteTrainingJobRequest(job_id=job_id))

    @operation
    def cancel(self, job_id: str) -> Flow[TrainingJob]:
        """Ask a running job to stop (within one step); it can be resumed later."""
        request = pb.CancelTrainingJobRequest(job_id=job_id)
        return TrainingJob.from_pb((yield Call("CancelTrainingJob", request)))

    @operation
    def resume(self, job_id: str, epochs: int = 0) -> Flow[TrainingJob]:
        """Continue a cancelled or interrupted job from its last checkpoint; ``epochs``
        raises its total (0: keep)."""
        request = pb.ResumeTrainingJobRequest(job_id=job_id, epochs=epochs)
        return TrainingJob.from_pb((yield Call("ResumeTrainingJob", request)))

    # -- scoring and generation -----------------------------------------------------------

    @operation
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
        allow_empty: bool | None = None,
        batch_size: int = common.SENTENCES_PER_REQUEST,
    ) -> Flow[ScoreResult]:
        """Score sentences: a str is raw text, a list of str is words already tokenised.
        ``scorer``, ``neural_weight``, ``bos``, ``eos``, ``length_norm`` and ``length_alpha``
        are described at :class:`ScoreOptions`; None leaves them to the server. A sentence
        without words is refused (InvalidArgument) unless ``allow_empty``. Any number
        of sentences: they are sent ``batch_size`` a request (256, the server's default
        limit) and come back as one result, ranked across all of them when ``rank``."""
        common.check_batch_size(batch_size)
        if isinstance(sentences, (str, bytes)):
            raise TypeError("sentences must be a list of sentences; for one, pass [sentence]")
        options = common.ScoreOptions(
            scorer, neural_weight, bos, eos, length_norm, length_alpha, allow_empty
        )
        if len(sentences) <= batch_size:  # one request: the server ranks
            request = common.score_request(model_id, sentences, rank, omit_tokens, options)
            return ScoreResult.from_pb((yield Call("ScoreSentence", request)))
        parts = []
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start : start + batch_size]
            request = common.score_request(model_id, chunk, False, omit_tokens, options)
            with common.shifted_indices(start):
                parts.append(ScoreResult.from_pb((yield Call("ScoreSentence", request))))
        return ScoreResult.joined(parts, rank=rank)

    @operation
    def rank(
        self, model_id: str, candidates: Sequence[str | Sequence[str]], **options: Any
    ) -> Flow[list[SentenceScore]]:
        """Candidates best first by ``rank_score`` (``index`` says which input each was);
        ``options`` as for :meth:`score`."""
        result = yield from ClientCore.score.build(self, model_id, candidates, rank=True, **options)
        return list(result.scores)

    @operation
    def rescore(self, nbest: Any, model_id: str, **options: Any) -> Flow[list[Rescored]]:
        """Add the model's score, ln p (``log10=True``: log10 p), as a feature (``feature``,
        default "RNNLM0") to each line of an n-best list: parsed entries
        (:mod:`rnnlm.client.nbest`), lines (str, or bytes from a binary file) or the whole
        text, in ``format`` "auto", "moses" or "plain". With ``weight`` each group (same id)
        is re-ranked by ``total + weight * value``. Any length: ``batch_size`` hypotheses a
        request (256), ``max_in_flight`` at a time (4). ``scorer``, ``neural_weight``,
        ``bos`` and ``eos`` as for :meth:`score`. ``Rescored.line()`` is the output line;
        the options are ``RescorePlan.create``'s."""
        rescored: list[Rescored] = []
        yield Drain(
            ClientCore.rescore_stream.build(self, nbest, model_id, **options), rescored.append
        )
        return rescored

    @streaming
    def rescore_stream(self, nbest: Any, model_id: str, **options: Any) -> Rescoring:
        """:meth:`rescore` as an iterator, for lists too long to hold: entries are read,
        sent and yielded as they go (a group is held until it is complete). The asyncio
        client reads ``nbest`` on the event loop: pass a file only where its reads are quick
        (a local disk)."""
        return Rescoring(RescorePlan.create(model_id, **options), nbest)

    @operation
    def generate(
        self, model_id: str, prompt: str | Sequence[str] | None = None, **options: Any
    ) -> Flow[list[GeneratedSentence]]:
        """Generate whole sentences (the stream collected, within the client's timeout);
        ``options`` as for :meth:`generate_stream`."""
        stream = ClientCore.generate_stream.build(
            self, model_id, prompt, timeout=self.timeout, **options
        )
        tokens: dict[int, list[GeneratedToken]] = defaultdict(list)  # sentences may interleave
        yield Drain(stream, lambda token: tokens[token.sentence].append(token))
        return [GeneratedSentence.from_tokens(i, tokens[i]) for i in sorted(tokens)]

    @streaming
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
        max_tokens_per_message: int = common.TOKENS_PER_MESSAGE,
        timeout: float | None = None,
    ) -> ServerStream[GeneratedToken]:
        """Tokens as the server produces them. ``prompt`` is text or a list of words;
        ``method`` is "sample", "greedy" or "beam" (default: sample, or beam when
        ``beam_width`` > 1); 0 and None mean the server's defaults. Closing the iterator
        early (``contextlib.closing``, or ``aclosing`` for the asyncio client) cancels the
        call, so the server stops generating. The server sends the tokens it has ready
        together, up to ``max_tokens_per_message`` (1-256; 1: a message each) a message:
        the first at once, a later one after at most 20 ms for more; they are yielded one
        by one all the same."""
        request = common.generate_request(
            model_id,
            prompt,
            method=method,
            num_sentences=num_sentences,
            min_tokens=min_tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            beam_width=beam_width,
            max_tokens_per_message=max_tokens_per_message,
        )
        # Not resumable: a restarted generation would repeat tokens already yielded.
        return ServerStream("Generate", lambda _: request, GeneratedToken.all_from_pb, timeout)

    @operation
    def gradient_flow(
        self, model_id: str, sentences: Sequence[str | Sequence[str]], max_distance: int = 20
    ) -> Flow[GradientFlow]:
        """The vanishing-gradient report on held-out ``sentences`` (text, or lists of
        words): the mean norm of dL_t/dh_{t-k} at each distance k = 0..``max_distance``
        (1 to 200), and the decay per step fitted to it. See :class:`GradientFlow`."""
        # The sentences as a ScoreSentenceRequest carries them (the same Sentence message).
        carried = common.score_request(model_id, sentences, False, True).sentences
        request = pb.GradientFlowRequest(
            model_id=model_id, sentences=carried, max_distance=max_distance
        )
        return GradientFlow.from_pb((yield Call("MeasureGradientFlow", request)))

    # -- models ---------------------------------------------------------------------------

    @operation
    def models(self) -> Flow[Listing[ModelInfo]]:
        """Every model in the store."""
        response = yield Call("ListModels", pb.ListModelsRequest())
        return Listing(map(ModelInfo.from_pb, response.models), response.unreadable_ids)

    @operation
    def model(self, model_id: str, include_vocabulary: bool = False) -> Flow[ModelInfo]:
        """One model; with ``include_vocabulary`` its words by id too."""
        request = pb.GetModelRequest(model_id=model_id, include_vocabulary=include_vocabulary)
        return ModelInfo.from_pb((yield Call("GetModel", request)))

    @operation
    def delete_model(self, model_id: str) -> Flow[int]:
        """Delete a model, all its versions and its jobs; returns how many versions were
        removed."""
        request = pb.DeleteModelRequest(model_id=model_id)
        return int((yield Call("DeleteModel", request)).versions_deleted)

    # -- n-gram models --------------------------------------------------------------------

    @operation
    def attach_ngram(
        self,
        model_id: str,
        arpa: common.Arpa,
        *,
        neural_weight: float | None = None,
        timeout: float | None = None,
    ) -> Flow[ModelInfo]:
        """Upload an ARPA file (path or bytes; or an uploaded Corpus) and publish a new
        version of the model with it as the n-gram part; ``neural_weight`` None: tuned on
        the model's held-out sentences. No deadline unless ``timeout`` is given."""
        arpa_id = yield from self._arpa_id(arpa)
        request = common.attach_request(model_id, arpa_id, neural_weight)
        # Not retried (see _retry): a lost reply after success would publish a second version.
        return ModelInfo.from_pb((yield Call("AttachNgramModel", request, timeout)))

    @operation
    def export_arpa(
        self,
        model_id: str,
        out: str | Path | IO[bytes],
        *,
        version: int = 0,
        timeout: float | None = None,
    ) -> Flow[int]:
        """Write a version's n-gram part (0: the current one) as an ARPA file to ``out``,
        a path (complete or absent, never half written) or a binary file; returns bytes."""
        request = pb.ExportArpaRequest(model_id=model_id, version=version)
        chunks = ServerStream("ExportArpa", lambda _: request, lambda m: (bytes(m.data),), timeout)
        with DownloadSink(out) as sink:
            yield Drain(chunks, sink.write, blocking_io=True)
        return sink.size

    def _arpa_id(self, arpa: common.Arpa | None, upload: bool = True) -> Flow[str]:
        """The id of ``arpa`` ("" for none), uploading a file or bytes (unless not to)."""
        if isinstance(arpa, Corpus):
            return arpa.corpus_id
        if arpa is None or not upload:
            return ""
        # The server records the name as the version's ngram_source ("arpa:<name>").
        name = Path(arpa).name if isinstance(arpa, (str, Path)) else "model.arpa"
        return (yield from ClientCore.upload_corpus.build(self, arpa, filename=name)).corpus_id

    # -- operations -----------------------------------------------------------------------

    @operation
    def health(self, service: str = "", timeout: float | None = None) -> Flow[str]:
        """The standard gRPC health check: ``"SERVING"``, or ``"NOT_SERVING"`` while the
        server cannot reach its store or is shutting down. ``service`` "" is the whole
        server. Not retried: an unreachable server raises ``Unavailable``."""
        from grpc_health.v1 import health_pb2  # imported when used, like the stub

        request = health_pb2.HealthCheckRequest(service=service)
        response = yield Call("Health.Check", request, self.timeout if timeout is None else timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))
