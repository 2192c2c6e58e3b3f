"""Scoring many sequences that share prefixes (an n-best list) as one prefix tree.

Each distinct prefix is one tree node, run through the network once; the output layer, most
of the work at a large vocabulary, runs once per node that has children instead of once per
token. With no sharing at all the tree does no more output-layer work than batches do (one
row per target), in larger products, but it pays one batched step per depth: for a few long
sequences that share little, ordinary batches (``length_sorted_batches``) are the better
choice. ``PrefixTree.worthwhile`` says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rnnlm.model.engines import Engine
    from rnnlm.model.stopping import ShouldStop

# One depth of the tree (a batched step: Python, dispatch, gathering the parents' states)
# costs about as much as scoring three nodes: ~170 us vs ~65 us per node for a GRU with
# H=256, V=8000 on one CPU core; ordinary batches cost ~100 us per token there.
LEVEL_COST_IN_NODES = 3


@dataclass(frozen=True)
class PrefixTree:
    tokens: np.ndarray  # (N,) int64, the id each node adds to its parent's prefix
    parents: np.ndarray  # (N,) int64, parents[i] < i, -1 for a root
    paths: list[np.ndarray]  # per input sequence, (len(s),) int64: the node of each position

    @property
    def num_nodes(self) -> int:
        return len(self.tokens)

    @property
    def num_tokens(self) -> int:
        """Positions over all sequences: the nodes a tree without sharing would have."""
        return sum(len(p) for p in self.paths)

    @property
    def node_ratio(self) -> float:
        """Nodes per token, in (0, 1]: what is left of the recurrent work; the output layer's
        share (nodes with children per target) is about the same. 1.0 for no sequences."""
        return self.num_nodes / self.num_tokens if self.num_tokens else 1.0

    @property
    def num_levels(self) -> int:
        """The tree's depth + 1: one batched step each."""
        return max((len(p) for p in self.paths), default=0)

    @property
    def worthwhile(self) -> bool:
        """Whether scoring the tree should beat ordinary batches: true for n-best lists and
        for many short sentences even unshared (their roots and first words are shared and
        the steps are wide); false for a few long sentences that share little."""
        return self.num_nodes + LEVEL_COST_IN_NODES * self.num_levels <= self.num_tokens


def build_prefix_tree(sequences: Sequence[np.ndarray]) -> PrefixTree:
    """One node per distinct prefix, numbered in order of first appearance (so parents come
    first). About 7 us per sequence of 22 ids: a dict lookup per position."""
    index: dict[tuple[int, int], int] = {}  # (parent node, token) -> node
    tokens: list[int] = []
    parents: list[int] = []
    flat: list[int] = []  # the node of every position of every sequence, in order
    for seq in sequences:
        parent = -1
        for token in np.asarray(seq).tolist():  # Python ints: far faster dict keys
            node = index.get((parent, token))
            if node is None:
                node = index[parent, token] = len(tokens)
                tokens.append(token)
                parents.append(parent)
            flat.append(node)
            parent = node
    ends = np.cumsum([len(s) for s in sequences], dtype=np.int64)
    paths = np.split(np.array(flat, dtype=np.int64), ends[:-1]) if len(sequences) else []
    return PrefixTree(np.array(tokens, dtype=np.int64), np.array(parents, dtype=np.int64), paths)


def prefix_sharing(sequences: Sequence[np.ndarray]) -> float:
    """Fraction of positions that a prefix tree saves, in [0, 1): 0 when nothing is shared.
    Costs a tree build; to decide and then score, build once and use ``worthwhile``."""
    return 1.0 - build_prefix_tree(sequences).node_ratio


def score_prefix_tree(
    engine: Engine, tree: PrefixTree, should_stop: ShouldStop | None = None
) -> list[np.ndarray]:
    """Per sequence s, ln p of the targets s[1:], (len(s) - 1,) float64 (empty below 2 ids).
    ``should_stop`` is checked between output-layer chunks (``Stopped``)."""
    node_log_probs = engine.tree_log_probs(tree.tokens, tree.parents, should_stop)  # (N,)
    return [node_log_probs[path[1:]] for path in tree.paths]


def tree_token_log_probs(engine: Engine, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The same scores as ``engine.token_log_probs(make_batch([s]))[0, :len(s) - 1]`` for each
    sequence s, computed over their prefix tree, which grows with the tokens: pass at most a
    few thousand sequences (``scoring.TREE_MAX_SEQUENCES``)."""
    return score_prefix_tree(engine, build_prefix_tree(sequences))
