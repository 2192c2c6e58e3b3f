"""Protobuf <-> domain conversions, kept out of the servicer so that it stays thin.

Proto ``optional`` fields that are unset take the engine's defaults; 0 means "disabled" for
the options the engine turns off with None (clip, bptt_truncate, patience).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any, TypeVar

from google.protobuf.descriptor import Descriptor, EnumDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from rnnlm.model import ModelConfig, RankedScore, TrainConfig
from rnnlm.model.scoring import SentenceInput, TokenScores
from rnnlm.server.errors import InvalidArgument
from rnnlm.server.job_states import JobState
from rnnlm.server.records import Corpus, Model, TrainingEvent, TrainingJob, TrainingProgress
from rnnlm.server.serving import (
    GeneratedToken,
    GenerateOptions,
    MeasuredFlow,
    Scored,
    ScoreOptions,
)
from rnnlm.v1 import rnnlm_pb2 as pb

ZERO_DISABLES = ("clip", "bptt_truncate", "patience")
_M = TypeVar("_M", bound=Message)
_O = TypeVar("_O", ScoreOptions, GenerateOptions)


def _prefix(enum_name: str) -> str:
    """The prefix of an API enum's value names: JobState -> "JOB_STATE_"."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum_name).upper() + "_"


def _words(enum: EnumDescriptor) -> dict[int, str]:
    """An API enum's values -> the engine's words for them: PARAGRAPH_MODE_BLANK_LINE ->
    "blank-line" (``..._UNSPECIFIED`` has none)."""
    prefix = _prefix(enum.name)
    return {
        value.number: value.name.removeprefix(prefix).lower().replace("_", "-")
        for value in enum.values
        if not value.name.endswith("_UNSPECIFIED")
    }


FORMATS = _words(pb.CorpusFormat.DESCRIPTOR)
PARAGRAPHS = _words(pb.ParagraphMode.DESCRIPTOR)
SCORERS = _words(pb.Scorer.DESCRIPTOR)
SCORER_VALUES = {word: pb.Scorer.ValueType(value) for value, word in SCORERS.items()}
LENGTH_NORMS = _words(pb.LengthNorm.DESCRIPTOR)
METHODS = _words(pb.DecodingMethod.DESCRIPTOR)
FINISH_REASONS = {
    word: pb.FinishReason.ValueType(value)
    for value, word in _words(pb.FinishReason.DESCRIPTOR).items()
}


def timestamp(seconds: float | None) -> Timestamp:
    ts = Timestamp()
    if seconds:
        ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _sent(msg: Message, names: Iterable[str]) -> dict[str, Any]:
    """The named fields of ``msg``, but for the ``optional`` ones left unset."""
    fields = msg.DESCRIPTOR.fields_by_name
    return {n: getattr(msg, n) for n in names if not fields[n].has_presence or msg.HasField(n)}


def _options(cls: type[_O], request: Message, **given: Any) -> _O:
    """``cls`` (options named as the request's fields) of the ``given`` values and the
    request's fields of the other names; an unset ``optional`` one leaves the default."""
    names = _field_names(cls) - given.keys()
    return cls(**_sent(request, names), **given)


_FIELD_NAMES: dict[type, frozenset[str]] = {}


def _field_names(cls: type) -> frozenset[str]:
    """A dataclass' field names, read once (``_options`` runs on every scoring call)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return names


def model_config_from_pb(msg: pb.ModelConfig) -> ModelConfig:
    fields = _sent(msg, msg.DESCRIPTOR.fields_by_name)  # each one optional
    fields["adaptive_cutoffs"] = list(msg.adaptive_cutoffs)  # repeated: empty is "none"
    return ModelConfig(**fields)


def train_config_from_pb(msg: pb.TrainingOptions, default_device: str) -> TrainConfig:
    fields = _sent(msg, msg.DESCRIPTOR.fields_by_name)  # each one optional
    for name in ZERO_DISABLES:
        if fields.get(name) == 0:
            fields[name] = None
    fields.setdefault("device", default_device)
    return TrainConfig(**fields)


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


# Records (records.py) carry the wire's field names: ``_to_pb`` copies them. (Scores and
# generated tokens, which come by the thousand, are converted field by field below.)


def _to_pb(cls: type[_M], record: object, **given: Any) -> _M:
    """A ``cls`` message of the fields ``given`` and, for each other field, ``record``'s
    attribute of the same name."""
    return cls(**_fields(cls.DESCRIPTOR, record, given))


def _fields(message: Any, record: object, given: dict[str, Any]) -> dict[str, Any]:
    """``_to_pb``'s fields, as a message constructor takes them. None leaves a field unset;
    a time becomes a Timestamp, an Enum member (or a word) the wire value of its name, a
    record (or a configuration dict) the fields of a message."""
    values = {}
    for f in message.fields:
        value = given[f.name] if f.name in given else getattr(record, f.name)
        if value is None:
            continue
        if f.message_type is Timestamp.DESCRIPTOR:
            value = timestamp(value)
        elif dataclasses.is_dataclass(value):  # a record in the record
            value = _fields(f.message_type, value, {})
        elif isinstance(value, dict):  # a stored configuration
            value = _config(f.message_type, value)
        elif f.enum_type is not None:  # an Enum member, or the engine's word ("ngram")
            name = value.name if isinstance(value, Enum) else value.upper().replace("-", "_")
            value = f.enum_type.values_by_name[_prefix(f.enum_type.name) + name].number
        values[f.name] = value
    return values


def _config(message: Descriptor, config: dict[str, Any]) -> dict[str, Any]:
    """A stored configuration as the fields of a ModelConfig or TrainingOptions."""
    values = {f.name: config.get(f.name) for f in message.fields}
    for name in ZERO_DISABLES:
        if name in values and values[name] is None:
            values[name] = 0  # None: disabled
    return values


def job_state_to_pb(state: JobState) -> pb.JobState.ValueType:
    return pb.JobState.Value(f"JOB_STATE_{state.name}")


def corpus_to_pb(record: Corpus) -> pb.Corpus:
    return _to_pb(pb.Corpus, record)


def progress_to_pb(progress: TrainingProgress) -> pb.TrainingProgress:
    return _to_pb(pb.TrainingProgress, progress)


def job_to_pb(job: TrainingJob) -> pb.TrainingJob:
    return _to_pb(pb.TrainingJob, job)


def validated_to_pb(model_id: str, model: ModelConfig, training: TrainConfig) -> pb.TrainingJob:
    """Train's answer to ``validate_only``: no job (no id, no state), the options as a job
    would run them."""
    return pb.TrainingJob(
        model_id=model_id,
        model=pb.ModelConfig(**_config(pb.ModelConfig.DESCRIPTOR, model.to_dict())),
        training=pb.TrainingOptions(**_config(pb.TrainingOptions.DESCRIPTOR, training.to_dict())),
    )


def event_to_pb(event_id: str, event: TrainingEvent) -> pb.TrainingEvent:
    return _to_pb(pb.TrainingEvent, event, event_id=event_id)  # the one of the oneof set


def model_to_pb(record: Model, vocabulary: list[str] | None = None) -> pb.Model:
    """Newest version first; the configuration and vocabulary size are the current
    version's."""
    current = record.current
    return _to_pb(
        pb.Model,
        record,
        versions=[_to_pb(pb.ModelVersion, v) for v in reversed(record.versions)],
        config=current.model_config if current else None,
        training=current.train_config if current else None,
        vocabulary_size=current.vocabulary_size if current else 0,
        vocabulary=vocabulary,
    )


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
    scorer, length_norm = SCORERS.get(request.scorer), LENGTH_NORMS[request.length_norm]
    return _options(ScoreOptions, request, scorer=scorer, length_norm=length_norm)


def scored_to_pb(scored: Scored, omit_tokens: bool) -> pb.ScoreSentenceResponse:
    # Field by field on the scoring path: the generic copier costs ~11 us more a reply.
    return pb.ScoreSentenceResponse(
        model_id=scored.model_id,
        model_version=scored.model_version,
        scores=[score_to_pb(ranked, omit_tokens) for ranked in scored.scores],
        scorer=SCORER_VALUES[scored.scorer],
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
    if omit_tokens:
        return msg
    # Straight from the score's arrays (``TokenScores``), no TokenScore objects in between:
    # ``add`` with the values is half the cost of building each message and extending.
    tokens = score.tokens
    columns: Iterable[tuple[str, float, bool, int]]
    if isinstance(tokens, TokenScores):
        columns = zip(*tokens.columns())
    else:
        columns = ((t.token, t.logprob, t.unknown, t.ngram_order) for t in tokens)
    add = msg.tokens.add
    for token, logprob, unknown, order in columns:
        add(token=token, logprob=logprob, unknown=unknown, ngram_order=order)
    return msg


def prompt_from_pb(request: pb.GenerateRequest) -> SentenceInput | None:
    """The prompt's text or words; None when neither is set."""
    which = request.WhichOneof("prompt")
    if which is None:
        return None
    return request.prompt_text if which == "prompt_text" else list(request.prompt_words.words)


def generate_options_from_pb(request: pb.GenerateRequest) -> GenerateOptions:
    """GenerateRequest's options: 0, unset or an unknown method leave the model's default."""
    return _options(GenerateOptions, request, method=METHODS.get(request.method))


def generation_to_pb(tokens: Sequence[GeneratedToken]) -> pb.GenerateResponse:
    """One message of ``tokens`` (``Serving.generate_batches``' lists): the first in its
    own fields and with the model version, the others in ``following``."""
    first, *rest = tokens
    message = pb.GenerateResponse(model_version=first.model_version, **_token_fields(first))
    for token in rest:
        message.following.add(**_token_fields(token))
    return message


def _token_fields(token: GeneratedToken) -> dict[str, Any]:
    event = token.event
    finish = FINISH_REASONS[event.finish_reason] if event.finish_reason else None
    return {
        "sentence": event.sentence,
        "token": event.token,
        "logprob": event.logprob,
        "finish_reason": finish or pb.FINISH_REASON_UNSPECIFIED,
        "text": event.text,
    }


def gradient_flow_request_from_pb(
    request: pb.GradientFlowRequest,
) -> tuple[list[SentenceInput], int | None]:
    """The sentences, and max_distance (None when unset: the default)."""
    distance = request.max_distance if request.HasField("max_distance") else None
    return sentences_from_pb(request.sentences), distance


def gradient_flow_to_pb(measured: MeasuredFlow) -> pb.GradientFlowResponse:
    """The report's fields by name; a decay_per_step of None leaves it unset."""
    return _to_pb(
        pb.GradientFlowResponse,
        measured.flow,
        model_id=measured.model_id,
        model_version=measured.model_version,
    )
