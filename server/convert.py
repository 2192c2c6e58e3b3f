"""Protobuf <-> domain conversions, kept out of the servicer so that it stays thin.

Proto ``optional`` fields that are unset take the engine's defaults; 0 means "disabled" for
the options the engine turns off with None (clip, bptt_truncate, patience).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from rnnlm.model import ModelConfig, RankedScore, TrainConfig
from rnnlm.model.generation import FINISH_END, FINISH_LENGTH
from rnnlm.model.scoring import SentenceInput
from rnnlm.server.errors import InvalidArgument
from rnnlm.server.job_states import JobState
from rnnlm.server.records import (
    Corpus,
    Model,
    ModelVersion,
    TrainingEvent,
    TrainingJob,
    TrainingProgress,
)
from rnnlm.server.serving import GeneratedToken, GenerateOptions, Scored, ScoreOptions
from rnnlm.v1 import rnnlm_pb2 as pb

ZERO_DISABLES = ("clip", "bptt_truncate", "patience")
FINISH_REASONS = {FINISH_END: pb.FINISH_REASON_END, FINISH_LENGTH: pb.FINISH_REASON_LENGTH}
FORMATS = {
    pb.CORPUS_FORMAT_AUTO: "auto",
    pb.CORPUS_FORMAT_TEXT: "text",
    pb.CORPUS_FORMAT_CSV: "csv",
}
PARAGRAPHS = {pb.PARAGRAPH_MODE_BLANK_LINE: "blank-line", pb.PARAGRAPH_MODE_LINE: "line"}
SCORERS = {
    pb.SCORER_NEURAL: "neural",
    pb.SCORER_NGRAM: "ngram",
    pb.SCORER_INTERPOLATED: "interpolated",
}
SCORERS_TO_PB = {name: value for value, name in SCORERS.items()}
LENGTH_NORMS = {
    pb.LENGTH_NORM_NONE: "none",
    pb.LENGTH_NORM_AVERAGE: "average",
    pb.LENGTH_NORM_GNMT: "gnmt",
}
METHODS = {
    pb.DECODING_METHOD_SAMPLE: "sample",
    pb.DECODING_METHOD_GREEDY: "greedy",
    pb.DECODING_METHOD_BEAM: "beam",
}


def timestamp(seconds: float | None) -> Timestamp:
    ts = Timestamp()
    if seconds:
        ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _set_fields(msg: Message) -> dict[str, Any]:
    return {f.name: getattr(msg, f.name) for f in msg.DESCRIPTOR.fields if msg.HasField(f.name)}


def model_config_from_pb(msg: pb.ModelConfig) -> ModelConfig:
    return ModelConfig(**_set_fields(msg))


def train_config_from_pb(msg: pb.TrainingOptions, default_device: str) -> TrainConfig:
    fields = _set_fields(msg)
    for name in ZERO_DISABLES:
        if fields.get(name) == 0:
            fields[name] = None
    fields.setdefault("device", default_device)
    return TrainConfig(**fields)


_M = TypeVar("_M", bound=Message)


def _fill(msg: _M, values: dict[str, Any]) -> _M:
    for f in msg.DESCRIPTOR.fields:
        value = values.get(f.name)
        if value is None and f.name in ZERO_DISABLES:
            value = 0
        if value is not None:
            setattr(msg, f.name, value)
    return msg


def model_config_to_pb(config: dict[str, Any]) -> pb.ModelConfig:
    return _fill(pb.ModelConfig(), config)


def train_config_to_pb(config: dict[str, Any]) -> pb.TrainingOptions:
    return _fill(pb.TrainingOptions(), config)


def corpus_source_from_pb(msg: pb.CorpusSource) -> dict[str, Any]:
    source: dict[str, Any] = {
        "format": FORMATS.get(msg.format, "auto"),
        "csv_column": msg.csv_column or "body",
        "paragraphs": PARAGRAPHS.get(msg.paragraphs, "blank-line"),
    }
    which = msg.WhichOneof("source")
    if which:
        source[which] = getattr(msg, which)
    return source


# Records (records.py) carry the wire's field names: these copy them field by field.


def job_state_to_pb(state: JobState) -> pb.JobState.ValueType:
    return pb.JobState.Value(f"JOB_STATE_{state.name}")


def corpus_to_pb(record: Corpus) -> pb.Corpus:
    return pb.Corpus(
        corpus_id=record.corpus_id,
        filename=record.filename,
        size_bytes=record.size_bytes,
        sha256=record.sha256,
        created_at=timestamp(record.created_at),
    )


def progress_to_pb(progress: TrainingProgress) -> pb.TrainingProgress:
    return pb.TrainingProgress(**dataclasses.asdict(progress))  # the same names, all scalars


def job_to_pb(job: TrainingJob) -> pb.TrainingJob:
    return pb.TrainingJob(
        job_id=job.job_id,
        model_id=job.model_id,
        state=job_state_to_pb(job.state),
        error=job.error,
        request_id=job.request_id,
        corpus_id=job.corpus_id,
        model=model_config_to_pb(job.model),
        training=train_config_to_pb(job.training),
        created_at=timestamp(job.created_at),
        updated_at=timestamp(job.updated_at),
        progress=progress_to_pb(job.progress) if job.progress else None,
        checkpoint_step=job.checkpoint_step,
        model_version=job.model_version,
        server_id=job.server_id,
        warnings=job.warnings,
        phase=job.phase,
    )


def event_to_pb(event_id: str, event: TrainingEvent) -> pb.TrainingEvent:
    msg = pb.TrainingEvent(event_id=event_id, time=timestamp(event.time))
    if event.progress is not None:
        msg.progress.CopyFrom(progress_to_pb(event.progress))
    elif event.checkpoint_step is not None:
        msg.checkpoint_step = event.checkpoint_step
    elif event.state is not None:
        change = event.state
        msg.state.CopyFrom(
            pb.JobStateChange(
                state=job_state_to_pb(change.state),
                error=change.error,
                model_version=change.model_version,
            )
        )
    return msg


def sentences_from_pb(sentences: Iterable[pb.Sentence]) -> list[SentenceInput]:
    """Each Sentence as its text or its list of words (which of the two must be set)."""
    out: list[SentenceInput] = []
    for i, sentence in enumerate(sentences):
        which = sentence.WhichOneof("input")
        if which is None:
            raise InvalidArgument(f"sentences[{i}] is empty: set text or words")
        out.append(sentence.text if which == "text" else list(sentence.words.words))
    return out


def score_options_from_pb(request: pb.ScoreSentenceRequest) -> ScoreOptions:
    """ScoreSentenceRequest's options (unset: None, the model's default)."""
    if request.scorer not in (pb.SCORER_UNSPECIFIED, *SCORERS):
        raise ValueError(f"scorer {request.scorer} is not a known Scorer value")
    if request.length_norm not in LENGTH_NORMS:
        raise ValueError(f"length_norm {request.length_norm} is not a known LengthNorm value")
    given = {
        name: getattr(request, name)
        for name in ("neural_weight", "bos", "eos", "length_alpha")
        if request.HasField(name)
    }
    return ScoreOptions(
        scorer=SCORERS.get(request.scorer),
        length_norm=LENGTH_NORMS[request.length_norm],
        rank=request.rank,
        **given,
    )


def scored_to_pb(scored: Scored, omit_tokens: bool) -> pb.ScoreSentenceResponse:
    return pb.ScoreSentenceResponse(
        model_id=scored.model_id,
        model_version=scored.model_version,
        scores=[score_to_pb(ranked, omit_tokens) for ranked in scored.scores],
        scorer=SCORERS_TO_PB[scored.scorer],
        neural_weight=scored.neural_weight,
    )


def score_to_pb(ranked: RankedScore, omit_tokens: bool) -> pb.SentenceScore:
    score = ranked.score
    msg = pb.SentenceScore(
        index=ranked.index,
        words=score.words,
        logprob=score.logprob,
        log10prob=score.log10prob,
        perplexity=score.perplexity,
        unknown_words=score.unknown_words,
        rank_score=ranked.rank_score,
    )
    if not omit_tokens:
        msg.tokens.extend(
            pb.TokenScore(
                token=t.token, logprob=t.logprob, unknown=t.unknown, ngram_order=t.ngram_order
            )
            for t in score.tokens
        )
    return msg


def prompt_from_pb(request: pb.GenerateRequest) -> SentenceInput | None:
    """The prompt's text or words; None when neither is set."""
    which = request.WhichOneof("prompt")
    if which is None:
        return None
    return request.prompt_text if which == "prompt_text" else list(request.prompt_words.words)


def generate_options_from_pb(request: pb.GenerateRequest) -> GenerateOptions:
    """GenerateRequest's options: 0, unset or an unknown method leave the model's default."""
    given = {
        name: getattr(request, name)
        for name in ("temperature", "top_p", "seed")
        if request.HasField(name)
    }
    return GenerateOptions(
        num_sentences=request.num_sentences,
        min_tokens=request.min_tokens,
        max_tokens=request.max_tokens,
        top_k=request.top_k,
        method=METHODS.get(request.method),
        beam_width=request.beam_width,
        **given,
    )


def generation_to_pb(token: GeneratedToken) -> pb.GenerateResponse:
    event = token.event
    finish = FINISH_REASONS[event.finish_reason] if event.finish_reason else None
    return pb.GenerateResponse(
        sentence=event.sentence,
        token=event.token,
        logprob=event.logprob,
        finish_reason=finish or pb.FINISH_REASON_UNSPECIFIED,
        text=event.text,
        model_version=token.model_version,
    )


def model_version_to_pb(v: ModelVersion) -> pb.ModelVersion:
    return pb.ModelVersion(
        version=v.version,
        created_at=timestamp(v.created_at),
        job_id=v.job_id,
        checkpoint_bytes=v.checkpoint_bytes,
        sha256=v.sha256,
        training_status=v.training_status,
        epochs_trained=v.epochs_trained,
        train_loss=v.train_loss,
        valid_perplexity=v.valid_perplexity,
        ngram_valid_perplexity=v.ngram_valid_perplexity,
        interpolated_valid_perplexity=v.interpolated_valid_perplexity,
        neural_weight=v.neural_weight,
        ngram_order=v.ngram_order,
        ngram_source=v.ngram_source,
    )


def model_to_pb(record: Model, vocabulary: list[str] | None = None) -> pb.Model:
    """Newest version first; the configuration and vocabulary size are the current
    version's."""
    current = record.current
    return pb.Model(
        model_id=record.model_id,
        state=pb.ModelState.Value(f"MODEL_STATE_{record.state.name}"),
        current_version=record.current_version,
        versions=[model_version_to_pb(v) for v in reversed(record.versions)],
        config=model_config_to_pb(current.model_config) if current else None,
        training=train_config_to_pb(current.train_config) if current else None,
        vocabulary_size=current.vocabulary_size if current else 0,
        active_job_id=record.active_job_id,
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
        vocabulary=vocabulary or [],
    )
