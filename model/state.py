"""Where a training run stands, saved in checkpoints so that a run can resume. Its own
module because ``lm.py`` reads it and ``training.py``, which imports ``lm.py``, updates it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# TrainingState.status: the run's outcome so far (the server maps these to job states).
STATUS_RUNNING, STATUS_COMPLETED = "running", "completed"
STATUS_EARLY_STOPPED, STATUS_CANCELLED = "early_stopped", "cancelled"


class WorkerLost(RuntimeError):
    """A process of a data-parallel run died or could not be reached (``data_parallel``):
    the run stopped without a result; its last checkpoint stands, and it can resume."""


@dataclass
class TrainingState:
    learning_rate: float
    epoch: int = 0  # completed epochs
    epoch_step: int = 0  # steps done in the epoch in progress
    global_step: int = 0
    epoch_loss_sum: float = 0.0  # running totals of the epoch in progress
    epoch_tokens: int = 0
    plateau_loss: float | None = None  # best loss the learning-rate rule has counted
    plateau_epochs: int = 0  # epochs since plateau_loss last improved (or the rate was cut)
    best_valid_loss: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0  # epochs since the validation loss last improved
    status: str = STATUS_RUNNING
    corpus_sha256: str | None = None  # the corpus this run trains on; resuming checks it
    history: list[dict[str, Any]] = field(default_factory=list)  # one summary per epoch
    warnings: list[str] = field(default_factory=list)  # about the corpus (dataset.prepare)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
