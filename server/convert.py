"""Protobuf <-> domain conversions, kept out of the servicer so that it stays thin.

Proto ``optional`` fields that are unset take the engine's defaults; 0 means "disabled" for
the options the engine turns off with None (clip, bptt_truncate, patience).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from rnnlm.model import ModelConfig, SentenceScore, TrainConfig
from rnnlm.model.generation import FINISH_END, FINISH_LENGTH, GenerationEvent
from rnnlm.server.errors import ResourceExhausted
from rnnlm.v1 import rnnlm_pb2 as pb

ZERO_DISABLES = ("clip", "bptt_truncate", "patience")
JOB_STATES = {
    "queued": pb.JOB_STATE_QUEUED,
    "running": pb.JOB_STATE_RUNNING,
    "completed": pb.JOB_STATE_COMPLETED,
    "early_stopped": pb.JOB_STATE_EARLY_STOPPED,
    "cancelled": pb.JOB_STATE_CANCELLED,
    "failed": pb.JOB_STATE_FAILED,
    "interrupted": pb.JOB_STATE_INTERRUPTED,
}
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


def _fill(msg: Message, values: dict[str, Any]) -> Message:
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


def corpus_to_pb(record: dict[str, Any]) -> pb.Corpus:
    return pb.Corpus(
        corpus_id=record["corpus_id"],
        filename=record["filename"],
        size_bytes=record["size_bytes"],
        sha256=record["sha256"],
        created_at=timestamp(record["created_at"]),
    )


def progress_to_pb(progress: dict[str, Any]) -> pb.TrainingProgress:
    msg = pb.TrainingProgress(
        kind=progress["kind"],
        epoch=progress["epoch"],
        epochs=progress["epochs"],
        step=progress["step"],
        total_steps=progress["total_steps"],
        loss=progress["loss"],
        perplexity=progress["perplexity"],
        tokens_per_second=progress["tokens_per_sec"],
        learning_rate=progress["learning_rate"],
        grad_norm=progress["grad_norm"],
        elapsed_seconds=progress["elapsed_s"],
        eta_seconds=progress["eta_s"],
    )
    if progress.get("valid_loss") is not None:
        msg.valid_loss = progress["valid_loss"]
        msg.valid_perplexity = progress["valid_perplexity"]
    return msg


def job_to_pb(job: dict[str, Any]) -> pb.TrainingJob:
    msg = pb.TrainingJob(
        job_id=job["job_id"],
        model_id=job["model_id"],
        state=JOB_STATES[job["state"]],
        error=job["error"],
        request_id=job["request_id"],
        corpus_id=job["corpus_id"],
        model=model_config_to_pb(job["model_config"]),
        training=train_config_to_pb(job["train_config"]),
        created_at=timestamp(job["created_at"]),
        updated_at=timestamp(job["updated_at"]),
        checkpoint_step=job["checkpoint_step"],
        model_version=job["model_version"],
        server_id=job["server_id"],
        warnings=job.get("warnings", []),
        phase=job.get("phase", ""),
    )
    if job.get("progress"):
        msg.progress.CopyFrom(progress_to_pb(job["progress"]))
    return msg


def event_to_pb(event_id: str, event: dict[str, Any]) -> pb.TrainingEvent:
    msg = pb.TrainingEvent(event_id=event_id, time=timestamp(event.get("time")))
    if event["type"] == "progress":
        msg.progress.CopyFrom(progress_to_pb(event))
    elif event["type"] == "checkpoint":
        msg.checkpoint_step = event["step"]
    else:
        msg.state.CopyFrom(
            pb.JobStateChange(
                state=JOB_STATES[event["state"]],
                error=event.get("error", ""),
                model_version=event.get("model_version", 0),
            )
        )
    return msg


def score_options(request: pb.ScoreSentenceRequest) -> dict[str, Any]:
    """ScoreSentenceRequest fields as ``LanguageModel.score`` options (unset: defaults)."""
    if request.scorer not in (pb.SCORER_UNSPECIFIED, *SCORERS):
        raise ValueError(f"scorer {request.scorer} is not a known Scorer value")
    options: dict[str, Any] = {"scorer": SCORERS.get(request.scorer)}
    for name in ("neural_weight", "bos", "eos"):
        if request.HasField(name):
            options[name] = getattr(request, name)
    return options


def length_norm(request: pb.ScoreSentenceRequest) -> tuple[str, float | None]:
    """(length_norm, length_alpha) for ``scoring.length_normalized``."""
    if request.length_norm not in LENGTH_NORMS:
        raise ValueError(f"length_norm {request.length_norm} is not a known LengthNorm value")
    alpha = request.length_alpha if request.HasField("length_alpha") else None
    return LENGTH_NORMS[request.length_norm], alpha


def score_to_pb(
    index: int, score: SentenceScore, omit_tokens: bool, rank_score: float
) -> pb.SentenceScore:
    msg = pb.SentenceScore(
        index=index,
        words=score.words,
        logprob=score.logprob,
        log10prob=score.log10prob,
        perplexity=score.perplexity,
        unknown_words=score.unknown_words,
        rank_score=rank_score,
    )
    if not omit_tokens:
        msg.tokens.extend(
            pb.TokenScore(
                token=t.token, logprob=t.logprob, unknown=t.unknown, ngram_order=t.ngram_order
            )
            for t in score.tokens
        )
    return msg


def generation_to_pb(event: GenerationEvent, text: str, version: int) -> pb.GenerateResponse:
    return pb.GenerateResponse(
        sentence=event.sentence,
        token=event.token,
        logprob=event.logprob,
        finish_reason=FINISH_REASONS.get(event.finish_reason, pb.FINISH_REASON_UNSPECIFIED),
        text=text,
        model_version=version,
    )


def model_to_pb(record: dict[str, Any], vocabulary: list[str] | None = None) -> pb.Model:
    current = next(
        (v for v in record["versions"] if v["version"] == record["current_version"]), None
    )
    if current is not None:
        state = pb.MODEL_STATE_READY
    else:
        state = pb.MODEL_STATE_TRAINING if record.get("active_job_id") else pb.MODEL_STATE_EMPTY
    msg = pb.Model(
        model_id=record["model_id"],
        state=state,
        current_version=record["current_version"],
        active_job_id=record.get("active_job_id", ""),
        created_at=timestamp(record["created_at"]),
        updated_at=timestamp(record["updated_at"]),
        vocabulary=vocabulary or [],
    )
    for v in reversed(record["versions"]):
        version = pb.ModelVersion(
            version=v["version"],
            created_at=timestamp(v["created_at"]),
            job_id=v["job_id"],
            checkpoint_bytes=v["checkpoint_bytes"],
            sha256=v["sha256"],
            training_status=v["training_status"],
            epochs_trained=v["epochs_trained"],
            train_loss=v["train_loss"],
        )
        for name in ("valid_perplexity", "ngram_valid_perplexity", "interpolated_valid_perplexity"):
            if v.get(name) is not None:
                setattr(version, name, v[name])
        version.neural_weight = v.get("neural_weight", 1.0)
        version.ngram_order = v.get("ngram_order", 0)
        version.ngram_source = v.get("ngram_source", "")
        msg.versions.append(version)
    if current is not None:
        msg.config.CopyFrom(model_config_to_pb(current["model_config"]))
        msg.training.CopyFrom(train_config_to_pb(current["train_config"]))
        msg.vocabulary_size = current["vocabulary_size"]
    return msg


# NLTK tokenises at ~0.4 us a character, and a text's word count is known only afterwards:
# a sentence or prompt text longer than this many characters per allowed word is refused
# before it is tokenised, so that one request cannot buy seconds of tokenising only to be
# refused (a 15 MB sentence took 6.6 s). 64 is far above any language's mean word length.
MAX_CHARS_PER_WORD = 64


def check_sentence_size(sentence: str | list[str], where: str, max_words: int) -> None:
    """Refuse, before tokenising, a text that cannot be within ``max_words`` words (or a
    list of more words than that)."""
    if not isinstance(sentence, str):
        if len(sentence) > max_words:
            raise ResourceExhausted(too_many_words(where, len(sentence), max_words))
        return
    limit = max_words * MAX_CHARS_PER_WORD
    if len(sentence) > limit:
        raise ResourceExhausted(
            f"{where} is {len(sentence):,} characters; at most {limit:,} are accepted "
            f"({MAX_CHARS_PER_WORD} a word for the limit of {max_words} words, "
            "--max-tokens-per-sentence): split it"
        )


def too_many_words(where: str, count: int, max_words: int) -> str:
    return f"{where} has {count} words; the limit is {max_words} (--max-tokens-per-sentence)"


def default_max_tokens(server_max_tokens: int) -> int:
    """max_tokens when a Generate request leaves it 0."""
    return min(50, server_max_tokens)


def generation_options(request: pb.GenerateRequest, server_max_tokens: int) -> dict[str, Any]:
    """GenerateRequest fields as ``LanguageModel.stream`` options (0/unset: defaults)."""
    method = METHODS.get(request.method) or ("beam" if request.beam_width > 1 else "sample")
    options: dict[str, Any] = {
        "method": method,
        "num_sentences": request.num_sentences or 1,
        "max_length": request.max_tokens or default_max_tokens(server_max_tokens),
        "top_k": request.top_k,
        "beam_width": request.beam_width or 4,
    }
    if request.min_tokens:
        options["min_length"] = request.min_tokens
    for name in ("temperature", "top_p", "seed"):
        if request.HasField(name):
            options[name] = getattr(request, name)
    return options
