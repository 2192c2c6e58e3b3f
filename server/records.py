"""Typed records: training jobs with their progress and events, models with their versions,
and corpora, named as in rnnlm.proto from the engine's progress event to the wire, so that
convert.py only copies fields. A record also holds the few fields the wire does not carry
(leases, heartbeats, the corpus source).

A record is stored as the document of its fields (``to_store``) and read back from one
(``from_store``) once ``problems`` found the document of the shape the fields declare: none
missing that every stored record has, each of its annotated type (JSON true is no number).
Documents written by earlier versions spell some fields differently (``tokens_per_sec``,
``model_config``, ...): a record reads them through ``upgrade`` and its ``RENAMED``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from enum import Enum
from typing import Any, ClassVar, TypeVar

from rnnlm.model import ProgressEvent
from rnnlm.server.errors import quote
from rnnlm.server.job_states import JobState
from rnnlm.server.store import CORPUS, JOB, MODEL

# Job record fields that the store itself reads (a run's writes are fenced on the first).
LEASE_FIELD = "lease_generation"
# Set when a job's resumable checkpoint was removed: it can no longer resume.
CHECKPOINT_REMOVED = "checkpoint_removed_at"

# Field metadata. A field with a default may be absent from a stored record (records from
# before it lack it), unless it is ALWAYS_STORED: a default for new records, which every
# record stored so far has all the same (one without it is damaged). NOT_STORED: never stored.
ALWAYS_STORED = {"stored": "always"}
NOT_STORED = {"stored": "never"}

_R = TypeVar("_R", bound="Record")


class Record:
    """A dataclass stored as the document of its fields: a record in it (or a list of them)
    as a document of its own, an Enum as its value, the rest as it is. listing.py reads and
    changes the records stored on their own, as documents of ``KIND``."""

    KIND: ClassVar[str]
    # Stored field names of earlier versions -> today's (the API's).
    RENAMED: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def problems(cls, doc: Mapping[str, Any], where: str) -> list[str]:
        """What keeps the stored ``doc`` (``where`` names it) from reading as a record."""
        doc = upgrade(doc, cls.RENAMED)
        found = []
        for name, (hint, required) in cls.stored_fields().items():
            if name in doc:
                found += _value_problems(hint, doc[name], f"{where} {name}")
            elif required:
                found.append(f"{where} lacks {name}")
        return found

    @classmethod
    def from_store(cls: type[_R], doc: Mapping[str, Any]) -> _R:
        """The record of a stored document that ``problems`` finds nothing wrong with (its
        other keys are ignored; the fields it lacks take their defaults)."""
        doc = upgrade(doc, cls.RENAMED)
        fields = cls.stored_fields().items()
        return cls(**{name: _read(hint, doc[name]) for name, (hint, _) in fields if name in doc})

    def to_store(self) -> dict[str, Any]:
        doc = dataclasses.asdict(typing.cast(Any, self), dict_factory=_document)
        return {name: doc[name] for name in self.stored_fields()}

    @classmethod
    @functools.cache
    def stored_fields(cls) -> dict[str, tuple[Any, bool]]:
        """Each stored field: its type, and whether every stored record has it."""
        hints = typing.get_type_hints(cls)
        fields = {}
        for f in dataclasses.fields(typing.cast(Any, cls)):
            stored = f.metadata.get("stored")
            has_default = f.default is not MISSING or f.default_factory is not MISSING
            if stored != "never":
                fields[f.name] = (hints[f.name], stored == "always" or not has_default)
        return fields


@functools.cache
def _unwrap(hint: Any) -> tuple[Any, bool, Any]:
    """The class a field's values are of (``X`` of ``X | None``, ``list`` of ``list[X]``),
    whether it may be None, and a list's item type."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    [value_type] = [option for option in options if option is not types.NoneType]
    cls = typing.get_origin(value_type) or value_type
    item = typing.get_args(value_type)[0] if cls is list else None
    return cls, types.NoneType in options, item


def _is_record(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, Record)


def _value_problems(hint: Any, value: Any, where: str) -> list[str]:
    """What keeps a stored ``value`` from reading as the type ``hint``."""
    cls, nullable, item = _unwrap(hint)
    if value is None and nullable:
        return []
    if not _stored_as(cls, value):
        return [f"{where} is of type {type(value).__name__}"]
    if issubclass(cls, Enum) and value not in {member.value for member in cls}:
        return [f"{where} {quote(value)} is unknown"]
    if _is_record(cls):
        return cls.problems(value, where)
    if _is_record(item):
        return [p for n, v in enumerate(value) for p in _value_problems(item, v, f"{where}[{n}]")]
    return []


def _stored_as(cls: type, value: Any) -> bool:
    """Whether ``value`` is of the JSON type that a value of ``cls`` is stored as."""
    if isinstance(value, bool):
        return cls is bool  # JSON true is no number
    if _is_record(cls):
        return isinstance(value, dict)
    if issubclass(cls, Enum):
        return isinstance(value, str)  # its value
    return isinstance(value, (int, float) if cls is float else cls)  # 1 is a float too


def _read(hint: Any, value: Any) -> Any:
    """A stored value (of the shape ``_value_problems`` checks) as the type ``hint``."""
    cls, _, item = _unwrap(hint)
    if value is None:
        return None
    if _is_record(cls):
        return cls.from_store(value)
    if _is_record(item):
        return [item.from_store(v) for v in value]
    return cls(value) if issubclass(cls, Enum) else value


def _document(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """A record's document as ``dataclasses.asdict`` builds it: an Enum as its value."""
    return {name: value.value if isinstance(value, Enum) else value for name, value in items}


def upgrade(doc: Mapping[str, Any], renamed: Mapping[str, str]) -> dict[str, Any]:
    """A stored document under today's field names: each old name in ``renamed`` replaced
    by its new one (the new one wins if both are there)."""
    old = {renamed[name]: value for name, value in doc.items() if name in renamed}
    return {**old, **{name: value for name, value in doc.items() if name not in renamed}}


@dataclass(frozen=True)
class TrainingProgress(ProgressEvent, Record):
    """The engine's progress event (``rnnlm.model.ProgressEvent``, the same fields), as a
    job record, its event log and the wire carry it."""

    RENAMED: ClassVar[Mapping[str, str]] = {
        "tokens_per_sec": "tokens_per_second",
        "elapsed_s": "elapsed_seconds",
        "eta_s": "eta_seconds",
    }
    # A stored progress may lack these (never required of it so far): they read as 0.
    tokens_per_second: float = 0.0
    learning_rate: float = 0.0
    grad_norm: float = 0.0
    elapsed_seconds: float = 0.0
    eta_seconds: float = 0.0

    @classmethod
    def from_event(cls, event: ProgressEvent) -> TrainingProgress:
        return cls(**dataclasses.asdict(event))


@dataclass
class TrainingJob(Record):
    """A training job (document kind ``job``)."""

    KIND: ClassVar[str] = JOB
    RENAMED: ClassVar[Mapping[str, str]] = {"model_config": "model", "train_config": "training"}

    job_id: str
    model_id: str
    state: JobState
    corpus_id: str
    model: dict[str, Any]  # the ModelConfig, as ModelConfig.to_dict wrote it
    training: dict[str, Any]  # the TrainConfig, as TrainConfig.to_dict wrote it
    created_at: float
    updated_at: float
    error: str = field(default="", metadata=ALWAYS_STORED)
    request_id: str = field(default="", metadata=ALWAYS_STORED)
    progress: TrainingProgress | None = None
    checkpoint_step: int = field(default=0, metadata=ALWAYS_STORED)
    model_version: int = field(default=0, metadata=ALWAYS_STORED)
    server_id: str = field(default="", metadata=ALWAYS_STORED)
    warnings: list[str] = field(default_factory=list)
    # What this server's run of the job does now, when its state does not say.
    phase: str = field(default="", metadata=NOT_STORED)
    # Stored, not sent:
    corpus: dict[str, Any] = field(default_factory=dict)  # the source (convert.py's dict)
    arpa_id: str = ""
    heartbeat_at: float = 0.0  # renewed by the server that runs it (leases.py)
    cancel_requested: bool = False
    lease_generation: int = 0  # of the run that holds it; records from before leases: 0
    checkpoint_removed_at: float | None = None

    def to_store(self) -> dict[str, Any]:
        doc = super().to_store()
        if self.checkpoint_removed_at is None:
            del doc[CHECKPOINT_REMOVED]  # absent, as in the records from before it
        return doc


@dataclass(frozen=True)
class JobStateChange(Record):
    state: JobState
    error: str = ""
    model_version: int = 0


@dataclass(frozen=True)
class TrainingEvent:
    """One entry of a job's event log: exactly one of progress, checkpoint_step and state."""

    time: float
    progress: TrainingProgress | None = None
    checkpoint_step: int | None = None
    state: JobStateChange | None = None

    @classmethod
    def from_store(cls, doc: Mapping[str, Any]) -> TrainingEvent:
        when = doc.get("time") or 0.0
        if doc["type"] == "progress":
            return cls(when, progress=TrainingProgress.from_store(doc))
        if doc["type"] == "checkpoint":
            return cls(when, checkpoint_step=doc["step"])
        return cls(when, state=JobStateChange.from_store(doc))

    def to_store(self) -> dict[str, Any]:
        """Stored flat: ``type`` says which it is."""
        if self.progress is not None:
            return {"type": "progress", "time": self.time, **self.progress.to_store()}
        if self.state is None:
            return {"type": "checkpoint", "time": self.time, "step": self.checkpoint_step}
        return {"type": "state", "time": self.time, **self.state.to_store()}


class ModelState(Enum):
    """Whether a model can serve (the wire's ``MODEL_STATE_`` + the member's name)."""

    TRAINING = "training"  # no version yet; a job trains it
    READY = "ready"
    EMPTY = "empty"  # no version, no job


@dataclass
class ModelVersion(Record):
    """One published version of a model (an entry of its record's ``versions``)."""

    version: int
    created_at: float
    job_id: str
    checkpoint_bytes: int
    sha256: str
    training_status: str
    epochs_trained: int
    train_loss: float
    # Stored, not sent per version (the model's current one is: Model.config, ...):
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    vocabulary_size: int
    valid_perplexity: float | None = None
    ngram_valid_perplexity: float | None = None
    interpolated_valid_perplexity: float | None = None
    neural_weight: float = 1.0  # 1: the network alone
    ngram_order: int = 0
    ngram_source: str = ""


@dataclass
class Model(Record):
    """A model and its versions, oldest first (document kind ``model``)."""

    KIND: ClassVar[str] = MODEL

    model_id: str
    created_at: float
    updated_at: float
    current_version: int = field(default=0, metadata=ALWAYS_STORED)  # 0: none yet
    versions: list[ModelVersion] = field(default_factory=list, metadata=ALWAYS_STORED)
    active_job_id: str = ""  # the one job training it now
    next_version: int = 1  # the number the next publish takes

    @classmethod
    def new(cls, model_id: str, now: float) -> Model:
        return cls(model_id, created_at=now, updated_at=now)

    @classmethod
    def from_store(cls, doc: Mapping[str, Any]) -> Model:
        model = super().from_store(doc)
        if "next_version" not in doc:  # a record from before it: after every version there was
            numbers = [v.version for v in model.versions]
            model.next_version = max([*numbers, model.current_version]) + 1
        return model

    def version(self, number: int) -> ModelVersion | None:
        return next((v for v in self.versions if v.version == number), None)

    @property
    def current(self) -> ModelVersion | None:
        return self.version(self.current_version)

    @property
    def state(self) -> ModelState:
        if self.current is not None:
            return ModelState.READY
        return ModelState.TRAINING if self.active_job_id else ModelState.EMPTY


@dataclass
class Corpus(Record):
    """An uploaded corpus (or ARPA file) (document kind ``corpus``)."""

    KIND: ClassVar[str] = CORPUS

    corpus_id: str
    filename: str
    size_bytes: int
    sha256: str
    created_at: float
