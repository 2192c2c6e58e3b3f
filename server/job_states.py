"""The names of a training job's states, in one place: the store, the wire (``JOB_STATE_`` +
the member's name, in convert.py) and every module that reads a job record use these."""

from __future__ import annotations

from enum import Enum

from rnnlm.model.state import STATUS_CANCELLED, STATUS_COMPLETED, STATUS_EARLY_STOPPED


class JobState(str, Enum):
    """A job's state; its value is how the store spells it. A str (equal to, hashed and
    formatted as its value), so a state read from a document compares with it as it is."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    EARLY_STOPPED = "early_stopped"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    __hash__ = str.__hash__

    def __str__(self) -> str:  # and f"{state}", on every Python: its value
        return self.value

    @classmethod
    def after_training(cls, status: str) -> JobState:
        """The state of a job whose training run ended with ``status`` (the engine's
        ``TrainingState.status``)."""
        return _AFTER_TRAINING[status]


_AFTER_TRAINING = {
    STATUS_COMPLETED: JobState.COMPLETED,
    STATUS_EARLY_STOPPED: JobState.EARLY_STOPPED,
    STATUS_CANCELLED: JobState.CANCELLED,
}

ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING})
FINAL = frozenset(JobState) - ACTIVE
# Ended, with a checkpoint to continue from.
RESUMABLE = frozenset({JobState.CANCELLED, JobState.INTERRUPTED})
