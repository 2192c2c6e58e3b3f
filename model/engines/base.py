"""The interface every engine implements, so that callers never ask which one they have.

Arrays cross this boundary as NumPy (ids in, float64 log-probabilities out); an engine
keeps its own parameters and optimizer state in whatever form it computes with.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..batching import Batch

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

    def tree_log_probs(self, tokens: np.ndarray, parents: np.ndarray) -> np.ndarray:
        """Nodes of a prefix tree in topological order (parents[i] < i, -1 for a root):
        node i's recurrent state is the state after feeding tokens[i] to its parent's state
        (the initial state for a root). Returns (N,) float64: ln p(tokens[i] | the tokens on
        the path from the root to parents[i]), and 0.0 for roots (a root's token is context
        only). Shared prefixes are run once and the output layer once per node with children.
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
        """Feed one token per row, (B,) int64; returns log-probs (B, V) float64, next state."""

    def select_state(self, state: State, rows: np.ndarray) -> State:
        """Rows of a decoding state (beam search reorders and duplicates hypotheses)."""

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


def check_tree(tokens: np.ndarray, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as (N,) int64, or ValueError; topological order is checked by ``tree_levels``."""
    tokens = np.asarray(tokens, dtype=np.int64)
    parents = np.asarray(parents, dtype=np.int64)
    if tokens.ndim != 1 or tokens.shape != parents.shape:
        raise ValueError(
            f"tokens and parents must both be (N,), got {tokens.shape} and {parents.shape}"
        )
    return tokens, parents


def tree_levels(parents: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Schedule a prefix tree depth by depth: the nodes of each depth (roots first, each
    level ascending), and each node's row within its level, (N,). A level's parents are all
    in the level before, so one batched time step per level runs the whole tree."""
    n = len(parents)
    if parents.ndim != 1 or np.any(parents < -1) or np.any(parents >= np.arange(n)):
        raise ValueError("parents must be (N,) with -1 <= parents[i] < i (topological order)")
    depth = _depths(parents)
    order = np.argsort(depth, kind="stable")  # (N,) by depth, ascending within a depth
    sizes = np.bincount(depth) if n else np.zeros(0, dtype=np.int64)
    starts = np.cumsum(sizes) - sizes
    slot = np.empty(n, dtype=np.int64)
    slot[order] = np.arange(n) - starts[depth[order]]
    return np.split(order, starts[1:]), slot


def _depths(parents: np.ndarray) -> np.ndarray:
    """Depth of every node by pointer jumping: log2(depth) vectorised passes, not a Python
    loop over nodes. Invariant: depth[i] is the distance from i to up[i] (to the root when
    up[i] is -1)."""
    up = parents.copy()
    depth = (up >= 0).astype(np.int64)
    live = np.flatnonzero(up >= 0)
    while live.size:
        above = up[live]
        depth[live] += depth[above]  # the right side is read before the update: synchronous
        up[live] = up[above]
        live = live[up[live] >= 0]
    return depth


def tree_output_chunks(
    parents: np.ndarray, chunk_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Plan the output layer of a prefix tree: it runs once on every node that has children.

    Yields, per chunk of at most ``chunk_size`` such nodes: ``rows`` (n,) the nodes to run
    the output layer on, ``children`` (c,) the nodes whose tokens they predict, and
    ``child_rows`` (c,) the index into ``rows`` of each child's parent.
    """
    children = np.flatnonzero(parents >= 0)
    children = children[np.argsort(parents[children], kind="stable")]  # grouped by parent
    rows, child_rows = np.unique(parents[children], return_inverse=True)  # (P,), (C,)
    for start in range(0, len(rows), chunk_size):
        lo, hi = np.searchsorted(child_rows, [start, start + chunk_size])
        yield rows[start : start + chunk_size], children[lo:hi], child_rows[lo:hi] - start
