"""The vanishing-gradient report: how far back the loss at one word still reaches.

For a trained model and some held-out sentences, the mean norm of dL_t/dh_{t-k} at each
distance k = 0..K, averaged over every position t of every sentence that has a state k
steps earlier. ``L_t = -ln p(target_t | prefix)`` is the loss at position t (the one the
network is trained on) and ``h_{t-k}`` the recurrent state k steps before it: the top
layer's state for a stack of layers, and for an LSTM its hidden output h (a partial
derivative: the cell state c of that step is held fixed, so the part of the gradient that
reaches step t-k through c alone is not in it).

How to read it: a curve that falls by a constant factor per step is geometric decay; the
factor (``decay_per_step``) near 1 means the loss still shapes states far back, while 0.5
means a word ten steps back gets a thousandth of the gradient of the current one, and
training cannot learn what depended on it. A factor above 1 is exploding gradients.

Only the network is measured: with class-factored outputs the loss is the class softmax's
own ln p; an n-gram part that scoring interpolates with is left out (it has no states).
The NumPy ``rnn`` propagates the Jacobian by hand (as its engine's backward does); the
torch cells unroll step by step with autograd (``engines/torch_gradient_flow.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rnnlm.model.batching import Batch, length_sorted_batches
from rnnlm.model.checks import integer
from rnnlm.model.engines import Engine
from rnnlm.model.lm import LanguageModel
from rnnlm.model.scoring import BATCH_MAX_TOKENS, SentenceInput
from rnnlm.model.stopping import ShouldStop, check

MAX_DISTANCE = 200
DEFAULT_MAX_DISTANCE = 20
DISTANCE = integer(1, MAX_DISTANCE)  # what max_distance may be
# Words a sentence may have here: the torch path runs one backward pass per position, so
# the work grows with length times distance (a 256-word sentence at K=200 takes seconds).
MAX_WORDS = 256
# Sentences per padded batch: rows of one backward pass (torch) or one Jacobian product.
BATCH_SIZE = 64

# (engine, batch, max_distance, should_stop) -> (K + 1, T, B) norms of dL_t/dh_{t-k}, 0
# where t - k < 0 (the caller counts only real pairs).
PairNorms = Callable[[Engine, Batch, int, ShouldStop | None], np.ndarray]


@dataclass(frozen=True)
class GradientFlow:
    """The mean norm of dL_t/dh_{t-k} at each distance k, over ``counts[k]`` pairs (t, t-k).
    Distances stop at the longest sentence's reach (a k with no pair is left out)."""

    cell: str  # 'rnn', 'gru' or 'lstm'
    distances: list[int]  # 0, 1, .., K
    mean_norms: list[float]  # one per distance
    counts: list[int]  # the (t, t-k) pairs averaged at each distance
    # exp(slope) of a count-weighted least-squares line through (k, ln mean_norm): the
    # factor the gradient shrinks (< 1) or grows (> 1) by per step back. None with fewer
    # than two distances of non-zero norm.
    decay_per_step: float | None


def gradient_flow(
    lm: LanguageModel,
    sentences: Sequence[SentenceInput],
    max_distance: int = DEFAULT_MAX_DISTANCE,
    should_stop: ShouldStop | None = None,
) -> GradientFlow:
    """The report for ``sentences`` (raw text, or lists of words tokenised elsewhere), each
    framed ``SENTENCE_START .. SENTENCE_END`` as in training. ``ValueError`` for no
    sentences, a sentence without words or with more than ``MAX_WORDS``, or a
    ``max_distance`` outside [1, ``MAX_DISTANCE``]. ``should_stop``: as for scoring."""
    DISTANCE.check("max_distance", max_distance)
    if isinstance(sentences, str) or not isinstance(sentences, Sequence):
        raise ValueError("sentences must be a list of sentences (texts or lists of words)")
    if not sentences:
        raise ValueError("sentences is empty; give at least one held-out sentence")
    sequences = []
    for i, sentence in enumerate(sentences):
        check(should_stop)
        words = lm.words(sentence, f"sentences[{i}]")
        if not words:
            raise ValueError(f"sentences[{i}] has no words; each sentence needs at least one")
        if len(words) > MAX_WORDS:
            raise ValueError(
                f"sentences[{i}] has {len(words)} words; the gradient report takes at most "
                f"{MAX_WORDS} a sentence: split it"
            )
        sequences.append(lm.vocab.frame(words))
    return sequence_flow(lm.engine, lm.config.cell, sequences, max_distance, should_stop)


def sequence_flow(
    engine: Engine,
    cell: str,
    sequences: Sequence[np.ndarray],
    max_distance: int,
    should_stop: ShouldStop | None = None,
) -> GradientFlow:
    """``gradient_flow`` of framed id sequences (each at least two ids)."""
    pair_norms = _pair_norms_for(cell)
    sums = np.zeros(max_distance + 1)
    counts = np.zeros(max_distance + 1, dtype=np.int64)
    batches = length_sorted_batches(sequences, BATCH_SIZE, max_tokens=BATCH_MAX_TOKENS)
    for _, batch in batches:
        check(should_stop)
        norms = pair_norms(engine, batch, max_distance, should_stop)  # (K + 1, T, B)
        for k in range(min(max_distance + 1, norms.shape[1])):
            real = batch.mask[:, k:].T  # (T - k, B): positions t >= k of each sentence
            sums[k] += norms[k, k:][real].sum()
            counts[k] += int(real.sum())
    reach = int(np.count_nonzero(counts))  # counts fall with k: the first zero ends them
    means = sums[:reach] / counts[:reach]
    return GradientFlow(
        cell=cell,
        distances=list(range(reach)),
        mean_norms=[float(m) for m in means],
        counts=[int(c) for c in counts[:reach]],
        decay_per_step=fit_decay(means, counts[:reach]),
    )


def fit_decay(mean_norms: np.ndarray, counts: np.ndarray) -> float | None:
    """exp(slope) of the least-squares line through (k, ln mean_norms[k]), each distance
    weighted by its pair count (the far distances rest on fewer pairs). Norms of 0 (an
    underflow far back) are left out; None when fewer than two distances remain."""
    k = np.arange(len(mean_norms), dtype=np.float64)
    use = np.asarray(mean_norms) > 0
    if use.sum() < 2:
        return None
    x, y, w = k[use], np.log(np.asarray(mean_norms)[use]), np.asarray(counts, float)[use]
    x_mean, y_mean = np.average(x, weights=w), np.average(y, weights=w)
    slope = np.sum(w * (x - x_mean) * (y - y_mean)) / np.sum(w * (x - x_mean) ** 2)
    return float(math.exp(slope))


def _pair_norms_for(cell: str) -> PairNorms:
    """The computation for ``cell``; torch is imported only for its cells."""
    if cell == "rnn":
        return numpy_pair_norms
    from rnnlm.model.engines.torch_gradient_flow import torch_pair_norms

    return torch_pair_norms


def numpy_pair_norms(
    engine: Engine, batch: Batch, max_distance: int, should_stop: ShouldStop | None = None
) -> np.ndarray:
    """The NumPy ``rnn``'s norms, by hand in float64. With z_t = U x_t + W s_{t-1} + b and
    s_t = f(z_t), the loss at t reaches one step further back as

        dL_t/ds_{t-k-1} = W^T (f'(z_{t-k}) * dL_t/ds_{t-k}),

    and every position t moves back together: one (T - k, B, H) @ (H, H) product a step."""
    from rnnlm.model.engines.numpy_rnn import (
        NumpyRNNEngine,
        _activation_grad,
        forward_states,
        output_grads,
    )

    assert isinstance(engine, NumpyRNNEngine), "cell 'rnn' runs on the NumPy engine"
    params = {name: p.astype(np.float64) for name, p in engine.params.items()}
    Z, S = forward_states(params, batch.inputs, engine.activation)  # (T, B, H), (T+1, B, H)
    steps, rows, _ = Z.shape
    real = batch.mask.T  # (T, B)
    targets = batch.targets.T[real]  # (N,)
    # dL_t/ds_t (= V^T (softmax(o_t) - onehot(target_t)) for a full softmax), at real
    # positions. (T, B, H)
    _, grad_states, _ = output_grads(params, engine.bounds, S[1:][real], targets, 1.0)
    grad = np.zeros_like(Z)
    grad[real] = grad_states
    slope = _activation_grad(Z, S[1:], engine.activation)  # f'(z_t), (T, B, H)
    W = params["W"]
    norms = np.zeros((max_distance + 1, steps, rows))
    norms[0] = np.linalg.norm(grad, axis=-1)
    # grad[i] holds dL_t/ds_{t-k} for t = k + i: the stack of positions that reach k back.
    for k in range(1, min(max_distance, steps - 1) + 1):
        check(should_stop)
        grad = (grad[1:] * slope[1 : steps - k + 1]) @ W  # (T - k, B, H)
        norms[k, k:] = np.linalg.norm(grad, axis=-1)
    return norms
