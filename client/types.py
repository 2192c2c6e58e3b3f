"""Typed, immutable results of the client's calls, built from the protobuf responses.

Each class has ``from_pb(msg)``; enums become lowercase strings ("running", "ready", "end"),
unset timestamps become ``None``, and the optional config messages become plain dicts that
hold only the fields the server set.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from functools import partial
from typing import Any, TypeVar

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from rnnlm.client.errors import Aborted
from rnnlm.v1 import rnnlm_pb2 as pb

#: Job states after which a job never changes again (unless resumed).
FINAL_JOB_STATES = frozenset({"completed", "early_stopped", "cancelled", "failed", "interrupted"})
#: Final states in which the job published a model version.
SUCCESS_JOB_STATES = frozenset({"completed", "early_stopped"})
#: The token that ends a sentence (GenerateResponse sends it as a sentence's last token).
SENTENCE_END = "SENTENCE_END"


def enum_prefix(enum: Any) -> str:
    """The proto-style prefix of the value names of an EnumDescriptor (``pb.JobState.DESCRIPTOR``
    or a field's ``enum_type``): JobState -> "JOB_STATE_"."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def enum_name(enum: Any, number: int) -> str:
    """An enum value as a lowercase word without its prefix: JOB_STATE_RUNNING -> "running"."""
    value = enum.values_by_number.get(number)
    if value is None:  # a value from a newer server that these stubs do not know
        return str(number)
    return value.name.removeprefix(enum_prefix(enum)).lower()


def _time(ts: Timestamp) -> datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=timezone.utc)


def _set_fields(msg: Message) -> dict[str, Any]:
    """Only the fields the sender set (every field of ModelConfig/TrainingOptions is optional)."""
    return {fd.name: tuple(value) if fd.is_repeated else value for fd, value in msg.ListFields()}


def _value(msg: Message, name: str) -> Any:
    """A field as Python: a repeated field as a tuple, an enum as its word, an unset
    ``optional`` scalar as None, a message as ``_MESSAGES`` converts it."""
    fd = msg.DESCRIPTOR.fields_by_name[name]
    value = getattr(msg, name)
    if fd.is_repeated:
        return tuple(map(_python, value))
    if fd.enum_type is not None:
        return enum_name(fd.enum_type, value)
    if fd.has_presence and fd.message_type is None and not msg.HasField(name):
        return None
    return _python(value)


def _python(value: Any) -> Any:
    convert = _MESSAGES.get(type(value))
    return value if convert is None else convert(value)


def _same_names(cls: Any, msg: Message, **given: Any) -> Any:
    """An instance of dataclass ``cls``: the fields ``given``, the others read from the
    message field of the same name."""
    return cls(
        **{f.name: given[f.name] if f.name in given else _value(msg, f.name) for f in fields(cls)}
    )


@dataclass(frozen=True)
class Corpus:
    """An uploaded corpus; ``corpus_id`` is its content address."""

    corpus_id: str
    filename: str
    size_bytes: int
    sha256: str
    created_at: datetime | None

    @classmethod
    def from_pb(cls, msg: pb.Corpus) -> Corpus:
        return _same_names(cls, msg)


@dataclass(frozen=True)
class TrainingProgress:
    """A snapshot of training: ``kind`` is "step" (every log_every steps, or about every
    2 s when log_every is unset) or "epoch"."""

    kind: str
    epoch: int
    epochs: int
    step: int
    total_steps: int
    loss: float
    perplexity: float
    tokens_per_second: float
    learning_rate: float
    grad_norm: float
    elapsed_seconds: float
    eta_seconds: float
    valid_loss: float | None = None
    valid_perplexity: float | None = None

    @classmethod
    def from_pb(cls, msg: pb.TrainingProgress) -> TrainingProgress | None:
        """``None`` for an empty message (a job before its first step)."""
        return None if msg.ByteSize() == 0 else _same_names(cls, msg)


@dataclass(frozen=True)
class TrainingEvent:
    """One event of a job: ``kind`` is "progress", "checkpoint" or "state", and the matching
    fields are set (``progress``; ``checkpoint_step``; ``state``/``error``/``model_version``)."""

    event_id: str
    time: datetime | None
    kind: str
    progress: TrainingProgress | None = None
    checkpoint_step: int | None = None
    state: str | None = None
    error: str = ""
    model_version: int | None = None

    @property
    def final(self) -> bool:
        """The job ended with this event; the stream closes after it."""
        return self.kind == "state" and self.state in FINAL_JOB_STATES

    @classmethod
    def from_pb(cls, msg: pb.TrainingEvent) -> TrainingEvent:
        event = partial(cls, msg.event_id, _time(msg.time))
        which = msg.WhichOneof("event")
        if which == "progress":
            return event("progress", progress=TrainingProgress.from_pb(msg.progress))
        if which == "checkpoint_step":
            return event("checkpoint", checkpoint_step=msg.checkpoint_step)
        if which == "state":
            change = msg.state
            return event(
                "state",
                state=_value(change, "state"),
                error=change.error,
                model_version=change.model_version or None,
            )
        return event(which or "")  # an event kind newer than these stubs


@dataclass(frozen=True)
class TrainingJob:
    """A training job. ``model_config``/``training`` are the settings in effect."""

    job_id: str
    model_id: str
    state: str
    error: str
    request_id: str
    corpus_id: str
    model_config: dict[str, Any]
    training: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None
    progress: TrainingProgress | None
    checkpoint_step: int
    model_version: int
    server_id: str
    warnings: tuple[str, ...] = ()  # things about the corpus worth knowing
    phase: str = ""  # what it does now when the state does not say, e.g. waiting to publish

    @property
    def done(self) -> bool:
        """The job has ended: completed, early_stopped, cancelled, failed or interrupted."""
        return self.state in FINAL_JOB_STATES

    @classmethod
    def from_pb(cls, msg: pb.TrainingJob) -> TrainingJob:
        return _same_names(cls, msg, model_config=_set_fields(msg.model))


@dataclass(frozen=True)
class TokenScore:
    """ln p(token | preceding tokens); ``unknown``: scored as UNKNOWN_TOKEN;
    ``ngram_order``: the longest n-gram that matched (0 for the neural scorer)."""

    token: str
    logprob: float
    unknown: bool
    ngram_order: int = 0

    @classmethod
    def from_pb(cls, msg: pb.TokenScore) -> TokenScore:
        return _same_names(cls, msg)


@dataclass(frozen=True)
class SentenceScore:
    """One sentence's score; ``index`` is its position in the request; ``rank_score`` is
    what rank sorts by: ``logprob``, normalised for length as the request asked."""

    index: int
    words: tuple[str, ...]
    logprob: float
    log10prob: float
    perplexity: float
    tokens: tuple[TokenScore, ...]
    unknown_words: tuple[str, ...]
    rank_score: float = 0.0

    @classmethod
    def from_pb(cls, msg: pb.SentenceScore) -> SentenceScore:
        # A normalised score is 0 only when logprob is; so 0 means a server that predates
        # rank_score, which ranked by logprob.
        rank_score = msg.rank_score if msg.rank_score != 0.0 else msg.logprob
        return _same_names(cls, msg, rank_score=rank_score)


@dataclass(frozen=True)
class ScoreResult:
    """The scores of one request, in input order or best first (``rank=True``). ``scorer``
    is "neural", "ngram" or "interpolated" (None from a server that does not say), and
    ``neural_weight`` the network's weight when it was "interpolated"."""

    model_id: str
    model_version: int
    scores: tuple[SentenceScore, ...]
    scorer: str | None = None
    neural_weight: float | None = None

    @classmethod
    def from_pb(cls, msg: pb.ScoreSentenceResponse) -> ScoreResult:
        scorer = _value(msg, "scorer") if msg.scorer else None
        weight = msg.neural_weight if scorer == "interpolated" else None
        return _same_names(cls, msg, scorer=scorer, neural_weight=weight)

    @classmethod
    def joined(cls, parts: Sequence[ScoreResult], *, rank: bool) -> ScoreResult:
        """The results of consecutive requests (each in input order) as one: indices count
        across all of them, and ``rank`` sorts the whole as the server sorts one request
        (by ``rank_score``, ties in input order)."""
        versions = sorted({p.model_version for p in parts})
        if len(versions) > 1:
            raise Aborted(
                f"model {parts[0].model_id!r} changed version while the sentences were "
                f"scored (versions {', '.join(map(str, versions))}); score them again",
                method="ScoreSentence",
            )
        scores, offset = [], 0
        for part in parts:
            scores += [replace(s, index=s.index + offset) for s in part.scores]
            offset += len(part.scores)
        if rank:
            scores.sort(key=lambda s: -s.rank_score)
        return replace(parts[0], scores=tuple(scores))


@dataclass(frozen=True)
class GradientFlow:
    """The vanishing-gradient report of one model: ``mean_norms[i]`` is the mean L2 norm of
    dL_t/dh_{t-k} (the loss at a word, with respect to the top layer's state ``k =
    distances[i]`` steps earlier; an LSTM's h) over ``counts[i]`` position pairs of the
    held-out sentences. ``decay_per_step`` is the factor fitted per step back (below 1: the
    gradient vanishes; None where it cannot be fitted)."""

    model_id: str
    model_version: int
    cell: str
    distances: tuple[int, ...]
    mean_norms: tuple[float, ...]
    counts: tuple[int, ...]
    decay_per_step: float | None

    @property
    def curve(self) -> list[tuple[int, float]]:
        """(k, mean norm) pairs, as ``plots.plot_gradient_flow`` takes them."""
        return list(zip(self.distances, self.mean_norms))

    @classmethod
    def from_pb(cls, msg: pb.GradientFlowResponse) -> GradientFlow:
        return _same_names(cls, msg)


@dataclass(frozen=True)
class GeneratedToken:
    """One streamed token. ``finish_reason`` ("end" or "length") and ``text`` (prompt and
    words, detokenised) are set on a sentence's last token only."""

    sentence: int
    token: str
    logprob: float
    finish_reason: str | None
    text: str
    model_version: int

    @classmethod
    def from_pb(cls, msg: pb.GenerateResponse, model_version: int | None = None) -> GeneratedToken:
        """One token; ``model_version`` stands in for a ``following`` token's, left unset."""
        # 0 (unspecified): not the sentence's last token
        reason = _value(msg, "finish_reason") if msg.finish_reason else None
        version = msg.model_version if model_version is None else model_version
        return _same_names(cls, msg, finish_reason=reason, model_version=version)

    @classmethod
    def all_from_pb(cls, msg: pb.GenerateResponse) -> list[GeneratedToken]:
        """The tokens one message carries, in order: its own, then its ``following``."""
        first = cls.from_pb(msg)
        return [first, *(cls.from_pb(m, first.model_version) for m in msg.following)]


@dataclass(frozen=True)
class GeneratedSentence:
    """A generated sentence: its tokens (SENTENCE_END last when the model chose it) and their
    log-probabilities, so ``logprob`` matches what scoring the sentence gives."""

    index: int
    tokens: tuple[str, ...]
    logprobs: tuple[float, ...]
    finish_reason: str | None
    text: str

    @property
    def logprob(self) -> float:
        """ln p(sentence | prompt): the sum of the tokens' log-probabilities."""
        return sum(self.logprobs)

    @property
    def words(self) -> tuple[str, ...]:
        """The generated words, without SENTENCE_END."""
        return tuple(t for t in self.tokens if t != SENTENCE_END)

    @classmethod
    def from_tokens(cls, index: int, tokens: Sequence[GeneratedToken]) -> GeneratedSentence:
        """Assemble a sentence from its streamed tokens (the last one carries the finish)."""
        last = tokens[-1] if tokens else None
        return cls(
            index=index,
            tokens=tuple(t.token for t in tokens),
            logprobs=tuple(t.logprob for t in tokens),
            finish_reason=last.finish_reason if last else None,
            text=last.text if last else "",
        )


@dataclass(frozen=True)
class ModelVersion:
    """A published version of a model and how its training ended."""

    version: int
    created_at: datetime | None
    job_id: str
    checkpoint_bytes: int
    sha256: str
    training_status: str
    epochs_trained: int
    train_loss: float
    valid_perplexity: float | None
    # The n-gram part: its order (0: none), where it came from ("built-in", "arpa:<file>"),
    # the network's interpolation weight and the validation perplexities.
    ngram_order: int = 0
    ngram_source: str = ""
    neural_weight: float = 1.0
    ngram_valid_perplexity: float | None = None
    interpolated_valid_perplexity: float | None = None

    @classmethod
    def from_pb(cls, msg: pb.ModelVersion) -> ModelVersion:
        # Without an n-gram part the network is the whole model (older servers send 0).
        return _same_names(cls, msg, neural_weight=msg.neural_weight if msg.ngram_order else 1.0)


@dataclass(frozen=True)
class ModelInfo:
    """A model: ``state`` is "training", "ready" or "empty"; ``versions`` newest first;
    ``vocabulary`` is empty unless asked for (``model(..., include_vocabulary=True)``)."""

    model_id: str
    state: str
    current_version: int
    versions: tuple[ModelVersion, ...]
    config: dict[str, Any]
    training: dict[str, Any]
    vocabulary_size: int
    active_job_id: str
    created_at: datetime | None
    updated_at: datetime | None
    vocabulary: tuple[str, ...] = field(default=(), repr=False)

    @property
    def current(self) -> ModelVersion | None:
        """The version that scores and generates, if any."""
        return next((v for v in self.versions if v.version == self.current_version), None)

    @classmethod
    def from_pb(cls, msg: pb.Model) -> ModelInfo:
        return _same_names(cls, msg)


#: How ``_value`` converts a message field, by the message's class.
_MESSAGES: dict[type, Callable[[Any], Any]] = {
    Timestamp: _time,
    pb.ModelConfig: _set_fields,
    pb.TrainingOptions: _set_fields,
    pb.TrainingProgress: TrainingProgress.from_pb,
    pb.ModelVersion: ModelVersion.from_pb,
    pb.TokenScore: TokenScore.from_pb,
    pb.SentenceScore: SentenceScore.from_pb,
}

T = TypeVar("T")


class Listing(list[T]):
    """A list call's results (a plain list), and ``unreadable_ids``: records the server
    found damaged in its store and left out (its log says why); empty normally."""

    def __init__(self, items: Iterable[T] = (), unreadable_ids: Iterable[str] = ()) -> None:
        super().__init__(items)
        self.unreadable_ids: tuple[str, ...] = tuple(unreadable_ids)

    def __repr__(self) -> str:
        extra = f", unreadable_ids={self.unreadable_ids!r}" if self.unreadable_ids else ""
        return f"Listing({list.__repr__(self)}{extra})"
