"""Where a training run stands, saved in checkpoints so that a run can resume. Its own
module because ``lm.py`` reads it and ``training.py``, which imports ``lm.py``, updates it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only
    from rnnlm.model.config import ModelConfig, TrainConfig

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


# Fields that decide which sentences are trained and validated on, and in which order:
# changing them on resume would leak validation sentences into training.
RESUME_FIXED_FIELDS = ("seed", "valid_fraction", "max_length", "batch_size", "optimizer")


def check_resumable(
    stored: tuple[ModelConfig, TrainConfig | None, TrainingState | None],
    model_config: ModelConfig,
    train_config: TrainConfig,
    corpus_sha256: str,
) -> None:
    """Refuse to resume a checkpoint (its model config, train config and state: ``stored``)
    with another configuration or corpus."""
    config, before, state = stored
    if config != model_config:
        raise ValueError(
            "resume_from: model_config differs from the checkpoint's; "
            "a run resumes with the configuration it started with"
        )
    changed = [
        f for f in RESUME_FIXED_FIELDS if before and getattr(before, f) != getattr(train_config, f)
    ]
    if changed:
        raise ValueError(
            f"resume_from: train_config.{changed[0]} must stay "
            f"{getattr(before, changed[0])!r} when resuming (fixed on resume: "
            f"{', '.join(RESUME_FIXED_FIELDS)}); epochs, learning rate and the rest may change"
        )
    if state is not None and state.corpus_sha256 not in (None, corpus_sha256):
        raise ValueError(
            "resume_from: the corpus differs from the one this run started on; "
            "resume with the same corpus, or start a new training"
        )


# For the learning-rate rule a loss counts as progress only when it beats the best so far by
# this share: validation noise (a few 1e-4 relative) must not reset the plateau count.
PLATEAU_THRESHOLD = 1e-3


def plateau_reached(state: TrainingState, loss: float, config: TrainConfig) -> bool:
    """Count an epoch's loss towards the learning-rate rule; True when the rate is due a
    cut: ``lr_patience`` epochs in a row without beating the best loss by PLATEAU_THRESHOLD.
    (Cutting it whenever the noisy validation loss rose, the tutorial's rule, starved
    models with dropout of learning rate, and they under-fitted.)"""
    if state.plateau_loss is None or loss < state.plateau_loss * (1 - PLATEAU_THRESHOLD):
        state.plateau_loss, state.plateau_epochs = loss, 0
        return False
    state.plateau_epochs += 1
    if state.plateau_epochs < config.lr_patience:
        return False
    state.plateau_epochs = 0  # the cut rate gets lr_patience epochs of its own
    return True
