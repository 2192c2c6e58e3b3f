"""What a training run reports as it goes (its own module: the processes of a data-parallel
run send these to the caller, which rebuilds them without importing the training loop)."""

from __future__ import annotations

from dataclasses import dataclass

from rnnlm.model.engines.base import StepStats


@dataclass(frozen=True)
class ProgressEvent:
    # 'step' (every log_every steps, or about every PROGRESS_SECONDS: the loss since the
    # previous step event, tokens/s over about RATE_HORIZON_SECONDS) or 'epoch' (end of an
    # epoch: the epoch's mean training loss and tokens/s, validation)
    kind: str
    epoch: int  # 1-based epoch in progress
    epochs: int
    step: int  # global step
    total_steps: int
    loss: float  # mean training loss per token (nats)
    perplexity: float
    tokens_per_second: float
    learning_rate: float
    grad_norm: float  # last step's gradient norm before clipping
    elapsed_seconds: float
    eta_seconds: float  # estimated seconds left, from the pace so far
    valid_loss: float | None = None
    valid_perplexity: float | None = None

    # The fields are named as in the API (rnnlm.proto's TrainingProgress), which the server
    # stores and sends as they are; the short names are kept for existing callers.
    @property
    def tokens_per_sec(self) -> float:
        return self.tokens_per_second

    @property
    def eta_s(self) -> float:
        return self.eta_seconds


@dataclass
class Work:
    """Training steps added up: their loss, tokens and seconds."""

    loss_sum: float = 0.0
    tokens: int = 0
    seconds: float = 0.0

    def add(self, stats: StepStats, seconds: float) -> None:
        self.loss_sum += stats.loss_sum
        self.tokens += stats.num_tokens
        self.seconds += seconds

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0
