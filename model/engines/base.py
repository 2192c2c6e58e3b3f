"""The interface every engine implements, so that callers never ask which one they have.

Arrays cross this boundary as NumPy (ids in, float64 log-probabilities out); an engine
keeps its own parameters and optimizer state in whatever form it computes with. The one
exception is the decoding loop's log-probs (``decoding_step``), which stay in the engine's
own array between its steps and are read through the engine's methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rnnlm.model import generation
from rnnlm.model.batching import Batch
from rnnlm.model.stopping import ShouldStop

State = Any  # an engine's recurrent state for decoding; opaque to callers


@dataclass(frozen=True)
class StepStats:
    loss_sum: float  # summed negative log-likelihood (nats) over the batch's real tokens
    num_tokens: int
    grad_norm: float  # global gradient norm before clipping


class Engine(Protocol):
    vocab_size: int

    def token_log_probs(self, batch: Batch) -> np.ndarray:
        """ln p(target | prefix) at every position, (B, T) float64, 0 at padding."""

    def tree_log_probs(
        self, tokens: np.ndarray, parents: np.ndarray, should_stop: ShouldStop | None = None
    ) -> np.ndarray:
        """Nodes of a prefix tree in topological order (parents[i] < i, -1 for a root):
        node i's recurrent state is the state after feeding tokens[i] to its parent's state
        (the initial state for a root). Returns (N,) float64: ln p(tokens[i] | the tokens on
        the path from the root to parents[i]), and 0.0 for roots (a root's token is context
        only). Shared prefixes are run once and the output layer once per node with children.
        ``should_stop`` is checked before each output-layer chunk (``stopping.Stopped``).
        """

    def configure_training(
        self,
        optimizer: str,
        learning_rate: float,
        clip: float | None,
        bptt_truncate: int | None,
        weight_decay: float = 0.0,
    ) -> None:
        """Create the optimizer; must be called before ``train_step``. ``weight_decay`` is
        decoupled for "adamw" and an L2 term in the gradient for the other optimizers."""

    def train_step(self, batch: Batch) -> StepStats:
        """One gradient step on the mean per-token loss of ``batch``."""

    def set_learning_rate(self, learning_rate: float) -> None: ...

    def initial_state(self, batch_size: int) -> State: ...

    def step(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """Feed one token per row, (B,) int64; returns log-probs (B, V) (float32 or float64:
        the engine's), and the next state."""

    def decoding_step(self, tokens: np.ndarray, state: State) -> tuple[Any, State]:
        """``step`` for the decoding loop (decoding.py): the log-probs (B, V) in the
        engine's own array (NumPy; a torch tensor on the model's device for the torch
        engines), handed to the methods below, so that the loop's passes over them run
        where the model does."""

    def choose_tokens(
        self,
        logp: Any,
        produced: np.ndarray,
        configs: Sequence[generation.GenerationConfig],
        uniforms: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``generation.choose_tokens`` on ``decoding_step``'s log-probs (rows of them):
        the tokens (n,) int64 and their log-probs (n,), NumPy."""

    def concat_log_probs(self, parts: list[Any]) -> Any:
        """``decoding_step`` log-probs stacked, rows in order."""

    def numpy_log_probs(self, logp: Any) -> np.ndarray:
        """``decoding_step`` log-probs as NumPy (beam search ranks hypotheses in NumPy)."""

    def select_state(self, state: State, rows: np.ndarray) -> State:
        """Rows of a decoding state (beam search reorders and duplicates hypotheses)."""

    def concat_states(self, states: list[State]) -> State:
        """Decoding states (none the initial state) stacked in one batch, rows in order:
        the decoding loop (decoding.py) adds requests to its batch this way."""

    def state_dict(self) -> dict[str, np.ndarray]: ...

    def load_state_dict(self, tensors: dict[str, np.ndarray]) -> None: ...

    def optimizer_state_dict(self) -> dict[str, np.ndarray]:
        """Optimizer state (and RNG state) for resuming; empty before configure_training."""

    def load_optimizer_state_dict(self, tensors: dict[str, np.ndarray]) -> None: ...


def check_state_dict(expected: dict[str, tuple[int, ...]], tensors: dict[str, np.ndarray]) -> None:
    """Refuse weights whose names or shapes do not fit the model, naming the difference."""
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(
            f"checkpoint weights do not fit the model: missing {missing}, unexpected {extra}"
        )
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != tuple(shape):
            raise ValueError(
                f"checkpoint weight {name!r} has shape {tuple(tensors[name].shape)}, "
                f"the model needs {tuple(shape)}"
            )


class NumpyDecoding:
    """The decoding loop's methods for an engine whose ``step`` gives NumPy log-probs (the
    NumPy rnn, stand-ins in tests): the log-probs stay NumPy, tokens are chosen by
    ``generation.choose_tokens``."""

    step: Callable[[np.ndarray, State], tuple[np.ndarray, State]]  # the engine's own

    def decoding_step(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        return self.step(tokens, state)

    def choose_tokens(
        self,
        logp: np.ndarray,
        produced: np.ndarray,
        configs: Sequence[generation.GenerationConfig],
        uniforms: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        return generation.choose_tokens(logp, produced, configs, uniforms)

    def concat_log_probs(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts)  # each (B_i, V)

    def numpy_log_probs(self, logp: np.ndarray) -> np.ndarray:
        return logp
