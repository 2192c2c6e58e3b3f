"""How an engine runs a prefix tree (``Engine.tree_log_probs``), whatever it computes with.

The recurrence runs depth by depth: one batched time step per depth, each node continuing
its parent's state, which sits in the level before. The output layer runs once on every
node that has children, in chunks of rows taken as the levels produce them, so that memory
is bounded by a chunk and the widest level rather than by the size of the tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

import numpy as np


class _RowSliceable(Protocol):
    def __getitem__(self, rows: slice, /) -> Any: ...


# A (n, H) array of states, np.ndarray or torch.Tensor: whatever ``rechunk`` can slice.
Rows = TypeVar("Rows", bound=_RowSliceable)


class TreePlan:
    def __init__(self, tokens: np.ndarray, parents: np.ndarray) -> None:
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.parents = np.asarray(parents, dtype=np.int64)
        if self.tokens.ndim != 1 or self.tokens.shape != self.parents.shape:
            raise ValueError(
                "tokens and parents must both be (N,), "
                f"got {self.tokens.shape} and {self.parents.shape}"
            )
        self.levels, self.slot = tree_levels(self.parents)  # checks the order
        children = np.flatnonzero(self.parents >= 0)
        # Children grouped by parent, and where each node's group starts and how long it is.
        self._children = children[np.argsort(self.parents[children], kind="stable")]  # (C,)
        self._counts = np.bincount(self.parents[children], minlength=len(self.parents))  # (N,)
        self._starts = np.cumsum(self._counts) - self._counts  # (N,)

    def __len__(self) -> int:
        return len(self.parents)

    def parent_slots(self, level: np.ndarray) -> np.ndarray:
        """For the nodes of one level (n,), their parents' rows in the level before."""
        return self.slot[self.parents[level]]

    def has_children(self, nodes: np.ndarray) -> np.ndarray:
        """(n,) bool: the nodes whose states the output layer needs."""
        return self._counts[nodes] > 0

    def children_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The children (c,) of the nodes ``rows`` (n,), and the index into ``rows`` of
        each child's parent (c,)."""
        counts = self._counts[rows]  # (n,)
        at = np.repeat(np.arange(len(rows)), counts)  # (c,)
        ends = np.cumsum(counts)
        offsets = np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - counts, counts)
        return self._children[self._starts[rows][at] + offsets], at


def tree_levels(parents: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The nodes of each depth (roots first, each level ascending), and each node's row
    within its level, (N,)."""
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


def rechunk(
    pieces: Iterable[tuple[np.ndarray, Rows]], size: int, concat: Callable[[list[Rows]], Rows]
) -> Iterator[tuple[np.ndarray, Rows]]:
    """Regroup a stream of (nodes (n,), states (n, H)) pieces, one per level, into chunks of
    ``size`` rows (the last one shorter): the output layer gets large products however
    narrow the levels are, and never more than ``size`` rows at once."""
    nodes: list[np.ndarray] = []
    states: list[Rows] = []
    count = 0
    for piece_nodes, piece_states in pieces:
        nodes.append(piece_nodes)
        states.append(piece_states)
        count += len(piece_nodes)
        if count >= size:
            all_nodes, all_states = np.concatenate(nodes), concat(states)
            cut = count - count % size
            for start in range(0, cut, size):
                yield all_nodes[start : start + size], all_states[start : start + size]
            nodes, states, count = [all_nodes[cut:]], [all_states[cut:]], count - cut
    if count:
        yield np.concatenate(nodes), concat(states)
