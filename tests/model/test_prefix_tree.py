"""Prefix-tree scoring: the tree's structure, and scores equal to ordinary batched scoring."""

import sys

import numpy as np
import pytest

from rnnlm.model import ModelConfig
from rnnlm.model.batching import make_batch
from rnnlm.model.engines import create_engine
from rnnlm.model.engines.tree_plan import TreePlan, rechunk, tree_levels
from rnnlm.model.prefix_tree import (
    build_prefix_tree,
    prefix_sharing,
    score_prefix_tree,
    tree_token_log_probs,
)
from rnnlm.model.vocab import END_ID, START_ID
from tests.conftest import needs_torch

VOCAB = 50
# Two float32 sums of the same terms in another order differ by a few units of the last
# place: on log-probabilities near -5 (ulp ~5e-7), 1e-5 was met on one machine and missed
# by 1e-8 on another.
FLOAT32_ATOL = 3e-5
CONFIGS = {
    "gru": ModelConfig(cell="gru", vocab_size=VOCAB, embed_size=12, hidden_size=16),
    "lstm-2-layers": ModelConfig(
        cell="lstm", vocab_size=VOCAB, embed_size=12, hidden_size=16, num_layers=2
    ),
    "rnn": ModelConfig(cell="rnn", vocab_size=VOCAB, hidden_size=16),
    "gru-classes": ModelConfig(
        cell="gru", vocab_size=VOCAB, embed_size=16, hidden_size=16, output_classes=7
    ),
    "rnn-float64-relu": ModelConfig(
        cell="rnn", vocab_size=VOCAB, hidden_size=16, activation="relu", dtype="float64"
    ),
}


def sharpened_engine(name: str):
    """A small random model whose predictions depend strongly on the context: at the usual
    small initialisation every distribution is near uniform, which would hide a wrong state."""
    config = CONFIGS[name]
    needs_torch(config.cell)
    counts = np.arange(VOCAB, 0, -1)  # word classes of unequal sizes
    engine = create_engine(config, VOCAB, seed=3, device="cpu", word_counts=counts)
    rng = np.random.default_rng(4)
    engine.load_state_dict(
        {
            k: v if k.endswith("bounds") else rng.normal(0, 0.7, v.shape).astype(v.dtype)
            for k, v in engine.state_dict().items()
        }
    )
    return engine


def framed(*words: int) -> np.ndarray:
    return np.array([START_ID, *words, END_ID], dtype=np.int64)


def nbest_sequences() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(3, VOCAB, 12)
    group = []
    for _ in range(8):  # an n-best list: variants of one sentence in its second half
        words = base.copy()
        positions = rng.choice(np.arange(6, 12), rng.integers(1, 4), replace=False)
        words[positions] = rng.integers(3, VOCAB, len(positions))
        group.append(framed(*words))
    return [
        *group,
        group[0].copy(),  # a duplicate
        framed(*base[:5]),  # a prefix of another sequence ...
        np.concatenate([framed(*base[:5]), [7, 8, END_ID]]),  # ... that goes on past END
        np.array([START_ID, END_ID]),  # single-target sequences
        np.array([START_ID, 9]),
        rng.integers(3, VOCAB, 9),  # no sharing: no START, so roots of their own
        rng.integers(3, VOCAB, 4),
        framed(*rng.integers(3, VOCAB, 15)),  # shares START only
    ]


def batched_scores(engine, sequences) -> list[np.ndarray]:
    rows = engine.token_log_probs(make_batch(sequences))  # (B, T)
    return [rows[i, : len(s) - 1] for i, s in enumerate(sequences)]


def test_tree_has_one_node_per_distinct_prefix():
    seqs = [np.array([1, 5, 6]), np.array([1, 5, 7]), np.array([1, 5]), np.array([4, 5, 6])]
    tree = build_prefix_tree(seqs)
    prefixes = {tuple(s[: k + 1]) for s in seqs for k in range(len(s))}
    assert tree.num_nodes == len(prefixes) == 7
    assert tree.num_tokens == 11
    assert tree.node_ratio == pytest.approx(7 / 11)
    assert prefix_sharing(seqs) == pytest.approx(4 / 11)
    assert np.all(tree.parents < np.arange(tree.num_nodes))
    for seq, path in zip(seqs, tree.paths):
        assert np.array_equal(tree.tokens[path], seq)  # each path spells its sequence
        assert tree.parents[path[0]] == -1
        assert np.array_equal(tree.parents[path[1:]], path[:-1])
    assert np.array_equal(tree.paths[2], tree.paths[0][:2])  # a prefix ends at an inner node


def test_worthwhile_unless_a_few_long_sequences_share_little():
    assert build_prefix_tree(nbest_sequences()[:8]).worthwhile
    unshared = [np.arange(k, k + 20) for k in range(0, 200, 20)]
    assert prefix_sharing(unshared) == 0.0
    tree = build_prefix_tree(unshared)
    assert tree.num_levels == 20 and not tree.worthwhile
    # Many short sentences: they share SENTENCE_START and the steps are wide.
    rng = np.random.default_rng(1)
    assert build_prefix_tree([framed(*rng.integers(3, 99, 10)) for _ in range(50)]).worthwhile


def test_tree_levels_schedule_by_depth():
    parents = np.array([-1, 0, -1, 1, 0, 2, 3])
    levels, slot = tree_levels(parents)
    assert [level.tolist() for level in levels] == [[0, 2], [1, 4, 5], [3], [6]]
    assert slot.tolist() == [0, 0, 1, 0, 1, 2, 0]
    with pytest.raises(ValueError, match="topological"):
        tree_levels(np.array([-1, 2, 0]))


@pytest.mark.parametrize("name", CONFIGS)
def test_tree_scores_equal_batched_scores(name):
    engine = sharpened_engine(name)
    seqs = nbest_sequences()
    tree = build_prefix_tree(seqs)
    assert tree.num_nodes < 0.7 * tree.num_tokens
    expected = batched_scores(engine, seqs)
    got = score_prefix_tree(engine, tree)
    for want, have in zip(expected, got):
        assert have.dtype == np.float64 and have.shape == want.shape
        np.testing.assert_allclose(have, want, rtol=0, atol=FLOAT32_ATOL)
    # The check has teeth: scores vary a lot with the context.
    assert np.concatenate(expected).std() > 0.5


@pytest.mark.parametrize("name", ["lstm-2-layers", "rnn"])
def test_output_chunks_across_levels(name, monkeypatch):
    """Chunks of 3 output rows: split inside levels and spanning several."""
    engine = sharpened_engine(name)
    monkeypatch.setattr(sys.modules[type(engine).__module__], "_TREE_CHUNK_ROWS", 3)
    seqs = nbest_sequences()
    for want, have in zip(batched_scores(engine, seqs), tree_token_log_probs(engine, seqs)):
        np.testing.assert_allclose(have, want, rtol=0, atol=FLOAT32_ATOL)


def test_plan_children_and_rechunk():
    plan = TreePlan(np.arange(7), np.array([-1, 0, -1, 1, 0, 2, 3]))
    assert plan.has_children(np.arange(7)).tolist() == [1, 1, 1, 1, 0, 0, 0]
    children, at = plan.children_of(np.array([3, 0, 4, 2]))
    assert children.tolist() == [6, 1, 4, 5] and at.tolist() == [0, 1, 1, 3]
    pieces = [(np.arange(k, k + n), np.full((n, 2), k)) for k, n in [(0, 2), (2, 5), (7, 1)]]
    chunks = list(rechunk(pieces, 3, np.concatenate))
    assert [c[0].tolist() for c in chunks] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert np.array_equal(np.concatenate([c[1] for c in chunks])[:, 0], [0, 0, 2, 2, 2, 2, 2, 7])


@pytest.mark.parametrize("name", ["gru", "lstm-2-layers", "rnn", "gru-classes"])
def test_engine_scores_any_tree_in_topological_order(name):
    """Duplicate siblings and nodes numbered out of depth order, as no builder of ours
    would make them; roots score 0."""
    engine = sharpened_engine(name)
    tokens = np.array([1, 5, 7, 5, 1, 9, 8, 5])
    parents = np.array([-1, 0, 1, 0, -1, 4, 2, 3])
    paths = [[0, 1, 2, 6], [0, 3, 7], [4, 5]]
    got = engine.tree_log_probs(tokens, parents)
    assert got.dtype == np.float64 and got.shape == (8,)
    assert got[0] == 0.0 and got[4] == 0.0
    assert got[1] == pytest.approx(got[3], abs=1e-6)  # the same prediction twice
    for path, want in zip(paths, batched_scores(engine, [tokens[p] for p in paths])):
        np.testing.assert_allclose(got[path[1:]], want, rtol=0, atol=FLOAT32_ATOL)


@pytest.mark.parametrize("name", ["gru", "rnn"])
def test_degenerate_inputs(name):
    engine = sharpened_engine(name)
    assert tree_token_log_probs(engine, []) == []
    (single,) = tree_token_log_probs(engine, [np.array([START_ID])])
    assert single.shape == (0,)
    assert engine.tree_log_probs(np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)
    with pytest.raises(ValueError, match="must both be"):
        engine.tree_log_probs(np.array([1, 2]), np.array([-1]))
