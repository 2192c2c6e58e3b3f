"""Typed records: training jobs with their progress and events, models with their versions,
and corpora, named as in rnnlm.proto (``TrainingJob``, ``TrainingProgress``,
``TrainingEvent``, ``Model``, ``ModelVersion``, ``Corpus``) from the engine's progress event
to the wire, so that convert.py only copies fields.

Each record reads itself from a stored document (``from_store``) and writes one
(``to_store``). Documents written by earlier versions spell some fields differently
(``tokens_per_sec``, ``model_config``, ...): ``upgrade`` maps those names once, here, and
``to_store`` writes the new ones. A document is checked for its shape (listing.py) before a
record is read from it; a record also holds the few fields the wire does not carry
(leases, heartbeats, the corpus source).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, TypeVar

from rnnlm.model import ProgressEvent
from rnnlm.server.job_states import JobState
from rnnlm.server.store import CORPUS, JOB, MODEL

# Stored field names of earlier versions -> today's (the API's).
PROGRESS_RENAMED = {
    "tokens_per_sec": "tokens_per_second",
    "elapsed_s": "elapsed_seconds",
    "eta_s": "eta_seconds",
}
JOB_RENAMED = {"model_config": "model", "train_config": "training"}

# Progress fields that may be absent from a stored progress (listing.py does not ask for
# them): they read as 0.
UNCHECKED_PROGRESS = (
    *("tokens_per_second", "learning_rate", "grad_norm", "elapsed_seconds", "eta_seconds"),
)

# Job record fields that the store itself reads (a run's writes are fenced on the first).
LEASE_FIELD = "lease_generation"
# Set when a job's resumable checkpoint was removed: it can no longer resume.
CHECKPOINT_REMOVED = "checkpoint_removed_at"


def _renamed(doc: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """``doc`` with each old name replaced by its new one (unless both are there)."""
    out = dict(doc)
    for old, new in names.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
    return out


def upgrade(kind: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored document with today's field names, whatever version wrote it."""
    if kind != JOB:
        return dict(doc)
    out = _renamed(doc, JOB_RENAMED)
    if isinstance(out.get("progress"), Mapping):
        out["progress"] = _renamed(out["progress"], PROGRESS_RENAMED)
    return out


def _known(cls: type, doc: Mapping[str, Any], *skip: str) -> dict[str, Any]:
    """The entries of ``doc`` that are fields of the dataclass ``cls``."""
    names = {f.name for f in dataclasses.fields(cls)} - set(skip)
    return {k: v for k, v in doc.items() if k in names}


_R = TypeVar("_R", bound="StoredRecord")


class StoredRecord:
    """A record kept in the store as a document of ``KIND`` (listing.py reads and changes
    records through this interface)."""

    KIND: ClassVar[str]

    @classmethod
    def from_store(cls: type[_R], doc: Mapping[str, Any]) -> _R:
        raise NotImplementedError

    def to_store(self) -> dict[str, Any]:
        raise NotImplementedError


class TrainingProgress(ProgressEvent):
    """The engine's progress event (``rnnlm.model.ProgressEvent``, the same fields), as a
    job record, its event log and the wire carry it."""

    @classmethod
    def from_event(cls, event: ProgressEvent) -> TrainingProgress:
        return cls(**dataclasses.asdict(event))

    @classmethod
    def from_store(cls, doc: Mapping[str, Any]) -> TrainingProgress:
        """From a stored progress (or a progress event, whose other keys are ignored).
        The fields a listing does not check (listing.PROGRESS_FIELDS) read as 0 when absent."""
        values = _known(cls, _renamed(doc, PROGRESS_RENAMED))
        for name in UNCHECKED_PROGRESS:
            values.setdefault(name, 0.0)
        return cls(**values)

    def to_store(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainingJob(StoredRecord):
    """A training job (document kind ``job``)."""

    KIND: ClassVar[str] = JOB

    job_id: str
    model_id: str
    state: JobState
    corpus_id: str
    model: dict[str, Any]  # the ModelConfig, as ModelConfig.to_dict wrote it
    training: dict[str, Any]  # the TrainConfig, as TrainConfig.to_dict wrote it
    created_at: float
    updated_at: float
    error: str = ""
    request_id: str = ""
    progress: TrainingProgress | None = None
    checkpoint_step: int = 0
    model_version: int = 0
    server_id: str = ""
    warnings: list[str] = field(default_factory=list)
    # Not stored: what this server's run of the job does now, when its state does not say.
    phase: str = ""
    # Stored, not sent:
    corpus: dict[str, Any] = field(default_factory=dict)  # the source (convert.py's dict)
    arpa_id: str = ""
    heartbeat_at: float = 0.0  # renewed by the server that runs it (leases.py)
    cancel_requested: bool = False
    lease_generation: int = 0  # of the run that holds it; records from before leases: 0
    checkpoint_removed_at: float | None = None

    @classmethod
    def from_store(cls, doc: Mapping[str, Any]) -> TrainingJob:
        doc = upgrade(JOB, doc)
        progress = doc.get("progress")
        return cls(
            **_known(cls, doc, "state", "progress", "phase"),
            state=JobState(doc["state"]),
            progress=TrainingProgress.from_store(progress) if progress else None,
        )

    def to_store(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        del doc["phase"]
        doc["state"] = self.state.value
        if self.checkpoint_removed_at is None:
            del doc[CHECKPOINT_REMOVED]
        return doc


@dataclass(frozen=True)
class JobStateChange:
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
        change = JobStateChange(
            JobState(doc["state"]), doc.get("error", ""), doc.get("model_version", 0)
        )
        return cls(when, state=change)

    def to_store(self) -> dict[str, Any]:
        """Stored flat: ``type`` says which it is."""
        if self.progress is not None:
            return {"type": "progress", "time": self.time, **self.progress.to_store()}
        if self.state is None:
            return {"type": "checkpoint", "time": self.time, "step": self.checkpoint_step}
        change = dataclasses.asdict(self.state)
        return {"type": "state", "time": self.time, **change, "state": self.state.state.value}


class ModelState(Enum):
    """Whether a model can serve (the wire's ``MODEL_STATE_`` + the member's name)."""

    TRAINING = "training"  # no version yet; a job trains it
    READY = "ready"
    EMPTY = "empty"  # no version, no job


@dataclass
class ModelVersion:
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

    @classmethod
    def from_store(cls, doc: Mapping[str, Any]) -> ModelVersion:
        return cls(**_known(cls, doc))


@dataclass
class Model(StoredRecord):
    """A model and its versions, oldest first (document kind ``model``)."""

    KIND: ClassVar[str] = MODEL

    model_id: str
    created_at: float
    updated_at: float
    current_version: int = 0  # 0: none yet
    versions: list[ModelVersion] = field(default_factory=list)
    active_job_id: str = ""  # the one job training it now
    next_version: int = 1  # the number the next publish takes

    @classmethod
    def new(cls, model_id: str, now: float) -> Model:
        return cls(model_id, created_at=now, updated_at=now)

    @classmethod
    def from_store(cls, doc: Mapping[str, Any]) -> Model:
        versions = [ModelVersion.from_store(v) for v in doc["versions"]]
        values = _known(cls, doc, "versions")
        # Records from before next_version: after every version there has been.
        values.setdefault(
            "next_version", max([v.version for v in versions] + [doc["current_version"]]) + 1
        )
        return cls(**values, versions=versions)

    def to_store(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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
class Corpus(StoredRecord):
    """An uploaded corpus (or ARPA file) (document kind ``corpus``)."""

    KIND: ClassVar[str] = CORPUS

    corpus_id: str
    filename: str
    size_bytes: int
    sha256: str
    created_at: float

    @classmethod
    def from_store(cls, doc: Mapping[str, Any]) -> Corpus:
        return cls(**_known(cls, doc))

    def to_store(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
