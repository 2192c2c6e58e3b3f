"""Word classes for a factored softmax (Goodman 2001; Mikolov et al. 2011, as in RNNLM):
p(w | s) = p(class(w) | s) * p(w | class(w), s), so a token costs H * (C + |class|) instead
of H * V multiply-adds, exactly normalised. Classes are contiguous id ranges (ids are sorted
by frequency), each with about 1/C of the summed sqrt(count): frequent words get small
classes. Shared by both engines: ``class_bounds``, ``factored_log_probs`` (every word's
log-probability, for decoding); the NumPy engine's output layer with its gradients
(``class_output``) is written out here by hand.

Shapes: states S (N, H); class layer Wc (C, H), cc (C,); word layer V (V, H), c (V,); class
k holds ids bounds[k] <= id < bounds[k + 1].
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np


def class_bounds(word_counts: np.ndarray, num_classes: int) -> np.ndarray:
    """(C + 1,) int64 boundaries of C contiguous, non-empty id ranges covering V words:
    class k holds ids bounds[k] <= id < bounds[k + 1]. Each range takes about 1/C of the
    summed sqrt(count); ``num_classes`` is capped at V."""
    counts = np.asarray(word_counts, dtype=np.float64)
    size = len(counts)
    classes = min(num_classes, size)
    mass = np.sqrt(np.maximum(counts, 0.0))
    total = mass.sum()
    before = np.cumsum(mass) - mass  # (V,) mass of the ids before each id
    share = before / total if total > 0 else np.arange(size) / size
    # The first id of class k is the first id whose preceding mass reaches k / C.
    starts = np.searchsorted(share, np.arange(classes) / classes, side="left")
    # Every class non-empty even where one word carries more than 1/C of the mass:
    # strictly increasing starts, each leaving room for the classes after it.
    for k in range(1, classes):  # C is small (about sqrt(V))
        starts[k] = min(max(starts[k], starts[k - 1] + 1), size - (classes - k))
    return np.append(starts, size).astype(np.int64)


def even_bounds(vocab_size: int, num_classes: int) -> np.ndarray:
    """Equal ranges: the bounds of a model before ``class_bounds`` (or a checkpoint) sets them."""
    return np.linspace(0, vocab_size, min(num_classes, vocab_size) + 1).round().astype(np.int64)


def check_bounds(bounds: np.ndarray, vocab_size: int) -> None:
    """Refuse bounds that are not C non-empty ranges from 0 to V (a damaged checkpoint would
    otherwise score with the wrong words' rows)."""
    values = np.asarray(bounds).tolist()
    rising = all(a < b for a, b in itertools.pairwise(values))
    if not rising or values[0] != 0 or values[-1] != vocab_size:
        raise ValueError(
            f"word class bounds must rise strictly from 0 to {vocab_size}, "
            f"got {values[:4]}...{values[-2:]}"
        )


def word_class(bounds: np.ndarray) -> np.ndarray:
    """(V,) the class of every word id."""
    return np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))


def factored_log_probs(logits: np.ndarray, class_lp: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """ln p(w | s_i) for every word, (n, V), from the word logits (n, V) (overwritten) and
    the class log-probabilities (n, C): per class one vectorised pass, the exponentials of
    each row shifted by its maximum summed over each class's range (``np.add.reduceat``).
    A row whose class sum underflows (every word of a class 87 nats, in float32, below the
    row's best: not seen with trained weights) is normalised class by class instead."""
    logits -= logits.max(axis=1, keepdims=True)
    sums = np.add.reduceat(np.exp(logits), bounds[:-1], axis=1)  # (n, C)
    low = ~np.all(sums > 0, axis=1)
    if low.any():  # the exact pass for those rows: each class shifted by its own maximum
        for lo, hi in itertools.pairwise(bounds.tolist()):
            part = logits[low, lo:hi]
            peak = part.max(axis=1, keepdims=True)
            sums[low, np.searchsorted(bounds, lo)] = np.exp(part - peak).sum(axis=1)
            logits[low, lo:hi] = part - peak
    logits -= (np.log(sums) - class_lp)[:, word_class(bounds)]
    return logits


def _log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, (n, m), in place."""
    x -= x.max(axis=1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=1, keepdims=True))
    return x


def _by_class(classes: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(class, the positions (r,) whose target is in it), for each class present."""
    order = np.argsort(classes, kind="stable")
    present, starts = np.unique(classes[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    for k, a, b in zip(present.tolist(), starts, ends):
        yield k, order[a:b]


def class_output(
    params: dict[str, np.ndarray],
    bounds: np.ndarray,
    states: np.ndarray,
    targets: np.ndarray,
    grad_scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """The factored output layer at N states (N, H) and their targets (N,): ln p(target)
    (N,), and with ``grad_scale`` (1/n for a mean loss) the gradient of
    ``-grad_scale * sum(ln p)`` with respect to the states (N, H) and to Wc, cc, V, c.

        a = S Wc^T + cc,  ln p(class) = log_softmax(a)[class(w)]
        o = S[rows] V[lo:hi]^T + c[lo:hi],  ln p(w | class) = log_softmax(o)[w - lo]
        dL/da = scale (softmax(a) - onehot(class)),  dL/do = scale (softmax(o) - onehot(w))

    Only the rows of V in the targets' classes are touched: the dense (V, H) gradient is
    zero elsewhere (kept dense for the optimizer)."""
    Wc, cc, V, c = params["Wc"], params["cc"], params["V"], params["c"]
    n = len(targets)
    classes = np.searchsorted(bounds, targets, side="right") - 1  # (N,)
    rows = np.arange(n)
    class_lp = _log_softmax(states @ Wc.T + cc)  # (N, C)
    logp = class_lp[rows, classes].astype(np.float64)
    want_grads = grad_scale is not None
    grads: dict[str, np.ndarray] = {}
    grad_states = None
    if want_grads:
        grad_a = np.exp(class_lp)  # softmax(a), (N, C)
        grad_a[rows, classes] -= 1
        grad_a *= grad_scale
        grads = {"Wc": grad_a.T @ states, "cc": grad_a.sum(axis=0)}
        grad_states = grad_a @ Wc  # (N, H)
        grads["V"], grads["c"] = np.zeros_like(V), np.zeros_like(c)
    for k, at in _by_class(classes):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        part = states[at]  # (r, H)
        word_lp = _log_softmax(part @ V[lo:hi].T + c[lo:hi])  # (r, hi - lo)
        picked = targets[at] - lo
        logp[at] += word_lp[np.arange(len(at)), picked]
        if want_grads:
            grad_o = np.exp(word_lp)
            grad_o[np.arange(len(at)), picked] -= 1
            grad_o *= grad_scale
            grads["V"][lo:hi] += grad_o.T @ part
            grads["c"][lo:hi] += grad_o.sum(axis=0)
            assert grad_states is not None
            grad_states[at] += grad_o @ V[lo:hi]
    return logp, grad_states, grads
