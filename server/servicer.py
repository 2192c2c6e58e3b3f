"""The gRPC servicer: each method validates, converts and delegates (DESIGN.md 3 and 7).

Errors are raised, never turned into statuses here: ``interceptors.ServiceInterceptor`` maps
them in one place (and checks the API key, and refuses calls while the server drains).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from rnnlm.model.interpolation import check_neural_weight
from rnnlm.server import convert
from rnnlm.server.cache import ModelCache
from rnnlm.server.config import ServerConfig
from rnnlm.server.corpora import CorpusRegistry
from rnnlm.server.deadlines import CallWatch, abandoning
from rnnlm.server.errors import Cancelled, FailedPrecondition, InvalidArgument, Unavailable
from rnnlm.server.ids import check_model_id
from rnnlm.server.jobs import JobManager
from rnnlm.server.metrics import Metrics
from rnnlm.server.models import ModelRegistry
from rnnlm.server.serving import Serving
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc

ARPA_CHUNK_BYTES = 1 << 20


@dataclass(eq=False)
class LanguageModelServicer(rnnlm_pb2_grpc.LanguageModelServiceServicer):
    config: ServerConfig
    models: ModelRegistry
    corpora: CorpusRegistry
    jobs: JobManager
    cache: ModelCache
    metrics: Metrics
    draining: Callable[[], bool] = lambda: False
    # Scoring and generation: the core that any other front end shares.
    serving: Serving = field(init=False)

    def __post_init__(self) -> None:
        self.serving = Serving(self.config, self.cache, self.metrics)

    # -- corpora and training ------------------------------------------------------------

    def UploadCorpus(self, request_iterator, context) -> pb.Corpus:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("the first UploadCorpus message must carry the header")
        header = first.header
        record = self.corpora.upload(
            header.filename, header.size_bytes, header.sha256, _chunks(request_iterator, context)
        )
        return convert.corpus_to_pb(record)

    def ListCorpora(self, request, context) -> pb.ListCorporaResponse:
        corpora = self.corpora.list(request.limit)
        return pb.ListCorporaResponse(
            corpora=[convert.corpus_to_pb(r) for r in corpora],
            unreadable_ids=sorted(corpora.unreadable),
        )

    def DeleteCorpus(self, request, context) -> pb.DeleteCorpusResponse:
        record = self.corpora.delete(request.corpus_id)
        return pb.DeleteCorpusResponse(
            corpus_id=record["corpus_id"],
            size_bytes=record["size_bytes"],
            damaged_record_removed="damaged" in record,
        )

    def Train(self, request: pb.TrainRequest, context) -> pb.TrainingJob:
        corpus = convert.corpus_source_from_pb(request.corpus)
        model = convert.model_config_from_pb(request.model)
        training = convert.train_config_from_pb(request.training, self.config.device)
        if request.validate_only:
            training = self.jobs.validate(
                request.model_id, corpus, model, training, request.arpa_id
            )
            return convert.validated_to_pb(request.model_id, model, training)
        job = self.jobs.submit(
            request.model_id, corpus, model, training, request.request_id, request.arpa_id
        )
        return convert.job_to_pb(job)

    def WatchTrainingJob(self, request, context) -> Iterator[pb.TrainingEvent]:
        with self.serving.stream_slot():
            events = self.jobs.watch(
                request.job_id,
                request.after_event_id or None,
                lambda: context.is_active() and not self.draining(),
            )
            for event_id, event in events:
                yield convert.event_to_pb(event_id, event)
            if self.draining() and context.is_active():
                # A watch may last as long as training: end it now rather than hold the
                # shutdown. The client resumes after its last event on another replica.
                raise Unavailable("this server is shutting down; watch the job on another one")

    def GetTrainingJob(self, request, context) -> pb.TrainingJob:
        return convert.job_to_pb(self.jobs.get(request.job_id))

    def ListTrainingJobs(self, request, context) -> pb.ListTrainingJobsResponse:
        jobs = self.jobs.list(request.model_id, request.limit)
        return pb.ListTrainingJobsResponse(
            jobs=[convert.job_to_pb(j) for j in jobs], unreadable_ids=sorted(jobs.unreadable)
        )

    def CancelTrainingJob(self, request, context) -> pb.TrainingJob:
        return convert.job_to_pb(self.jobs.cancel(request.job_id))

    def DeleteTrainingJob(self, request, context) -> pb.DeleteTrainingJobResponse:
        job = self.jobs.delete(request.job_id)
        return pb.DeleteTrainingJobResponse(
            job_id=job["job_id"], damaged_record_removed="damaged" in job
        )

    def ResumeTrainingJob(self, request, context) -> pb.TrainingJob:
        return convert.job_to_pb(self.jobs.resume(request.job_id, request.epochs))

    # -- serving -------------------------------------------------------------------------

    def ScoreSentence(self, request: pb.ScoreSentenceRequest, context) -> pb.ScoreSentenceResponse:
        sentences = convert.sentences_from_pb(request.sentences)
        options = convert.score_options_from_pb(request)
        watch = CallWatch(context)  # work stops once the client's deadline passed or it left
        with abandoning(self.metrics, "ScoreSentence", watch):
            scored = self.serving.score(request.model_id, sentences, options, watch)
        return convert.scored_to_pb(scored, request.omit_tokens)

    def MeasureGradientFlow(
        self, request: pb.GradientFlowRequest, context
    ) -> pb.GradientFlowResponse:
        sentences, max_distance = convert.gradient_flow_request_from_pb(request)
        watch = CallWatch(context)  # checked between backward passes
        with abandoning(self.metrics, "MeasureGradientFlow", watch):
            measured = self.serving.gradient_flow(request.model_id, sentences, max_distance, watch)
        return convert.gradient_flow_to_pb(measured)

    def Generate(self, request: pb.GenerateRequest, context) -> Iterator[pb.GenerateResponse]:
        prompt = convert.prompt_from_pb(request)
        options = convert.generate_options_from_pb(request)
        watch = CallWatch(context)  # checked before every decoding step, beam search's too
        # Lists of the tokens ready, one message each (max_tokens_per_message at most).
        batches = self.serving.generate_batches(request.model_id, prompt, options, watch)
        # Closed on the way out, so that a call gRPC ends at a yield frees its stream slot.
        with contextlib.closing(batches), abandoning(self.metrics, "Generate", watch):
            for tokens in batches:
                yield convert.generation_to_pb(tokens)

    # -- models --------------------------------------------------------------------------

    def ListModels(self, request, context) -> pb.ListModelsResponse:
        models = self.models.list()
        return pb.ListModelsResponse(
            models=[convert.model_to_pb(r) for r in models],
            unreadable_ids=sorted(models.unreadable),
        )

    def GetModel(self, request: pb.GetModelRequest, context) -> pb.Model:
        record = self.models.get(request.model_id)
        vocabulary = None
        if request.include_vocabulary and record.current_version:
            vocabulary = self.models.vocabulary(record.model_id, record.current_version)
        return convert.model_to_pb(record, vocabulary)

    def AttachNgramModel(self, request: pb.AttachNgramModelRequest, context) -> pb.Model:
        check_model_id(request.model_id)
        if not request.arpa_id:
            raise InvalidArgument("arpa_id is required: upload the ARPA file with UploadCorpus")
        weight = None
        if request.HasField("neural_weight"):  # refused before any work is done
            weight = check_neural_weight(request.neural_weight)
        ngram, source = self.corpora.load_arpa(request.arpa_id)
        record = self.models.attach_ngram(request.model_id, ngram, source, weight)
        return convert.model_to_pb(record)

    def ExportArpa(self, request: pb.ExportArpaRequest, context) -> Iterator[pb.ArpaChunk]:
        if request.version < 0:
            raise InvalidArgument(f"version must be >= 0 (0: current), got {request.version}")
        lm = self.models.load(request.model_id, request.version)  # checks the id
        if lm.ngram is None:
            raise FailedPrecondition(
                f"model {request.model_id!r} has no n-gram part (trained with ngram_order 0); "
                "train it with ngram_order 1-6 or attach an ARPA model"
            )
        buffer = io.StringIO()
        lm.ngram.model.to_arpa(buffer)
        data = buffer.getvalue().encode("utf-8")
        for start in range(0, max(len(data), 1), ARPA_CHUNK_BYTES):
            if not context.is_active():
                return
            yield pb.ArpaChunk(data=data[start : start + ARPA_CHUNK_BYTES])

    def DeleteModel(self, request, context) -> pb.DeleteModelResponse:
        try:
            deleted, damaged = self.jobs.delete_model(request.model_id)  # its jobs go too
        finally:  # also when only its jobs failed to go: the model itself may be gone
            self.cache.evict(request.model_id)
        return pb.DeleteModelResponse(
            model_id=request.model_id, versions_deleted=deleted, damaged_record_removed=damaged
        )


def _chunks(request_iterator, context) -> Iterator[bytes]:
    for message in request_iterator:
        if message.WhichOneof("part") != "chunk":
            raise InvalidArgument("only the first UploadCorpus message may carry a header")
        yield message.chunk
    if not context.is_active():
        # A cancelled upload can look like a finished one (the stream just ends): without a
        # size in the header, its first part would be stored as a corpus.
        raise Cancelled("the upload was cancelled before its last chunk; nothing was stored")
