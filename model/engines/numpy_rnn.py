"""The vanilla RNN of the tutorial in NumPy, with backpropagation through time by hand.

    z_t = U x_t + W s_{t-1} + b        s_t = f(z_t)  (tanh or ReLU), s_{-1} = 0
    o_t = V s_t + c                    p_t = softmax(o_t)

``x_t`` is one-hot, so ``U x_t`` is the column ``U[:, x_t]``. Shapes follow the tutorial:
U (H, V), W (H, H), V (V, H). Work is batched over sentences: one step of the recurrence is
a (B, H) @ (H, H) product, and the output layer, where almost all the time goes, is done
for every real (non-padding) position of the batch at once as (N, H) @ (H, V) products.

Truncated BPTT follows the tutorial: the loss at step t sends gradient back to
z_t, z_{t-1}, .., z_{t-k} (k = ``bptt_truncate``) and no further. Instead of the tutorial's
inner loop over those k+1 steps for every t, the backward pass carries a stack of deltas by
age (0..k) and moves the whole stack one step back with one matrix product, so truncated
BPTT costs about as much as full BPTT.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from rnnlm.model.batching import Batch
from rnnlm.model.config import ModelConfig
from rnnlm.model.engines.base import NumpyDecoding, StepStats, check_state_dict
from rnnlm.model.engines.numpy_optim import OPTIMIZER_CLASSES, NumpyOptimizer
from rnnlm.model.engines.tree_plan import TreePlan, rechunk
from rnnlm.model.engines.word_classes import (
    check_bounds,
    class_bounds,
    class_output,
    even_bounds,
    factored_log_probs,
)
from rnnlm.model.stopping import ShouldStop, check

Params = dict[str, np.ndarray]
# The checkpoint name of a factored output layer's class ranges (not a trained parameter).
CLASS_BOUNDS = "class_bounds"
# Output-layer rows per chunk when scoring a prefix tree: bounds the (rows, V) buffer.
# Logits below this (by dtype size) cannot overflow exp: float32's exp overflows past 88.7,
# float64's past 709.8 (and none so far below zero that every exp underflows).
_SAFE_EXP = {4: 80.0, 8: 700.0}
_TREE_CHUNK_ROWS = 1024


def init_params(
    hidden_size: int, vocab_size: int, seed: int, dtype: str = "float32", classes: int = 0
) -> Params:
    """The tutorial's initialisation: uniform in +-1/sqrt(fan-in), zero biases; with
    ``classes``, a class layer Wc (C, H), cc (C,) initialised the same way."""
    rng = np.random.default_rng(seed)
    h, v = hidden_size, vocab_size

    def uniform(bound: float, shape: tuple[int, ...]) -> np.ndarray:
        return rng.uniform(-bound, bound, shape).astype(dtype)

    params = {
        "U": uniform(1 / math.sqrt(v), (h, v)),
        "W": uniform(1 / math.sqrt(h), (h, h)),
        "b": np.zeros(h, dtype=dtype),
        "V": uniform(1 / math.sqrt(h), (v, h)),
        "c": np.zeros(v, dtype=dtype),
    }
    if classes:
        params["Wc"] = uniform(1 / math.sqrt(h), (min(classes, v), h))
        params["cc"] = np.zeros(min(classes, v), dtype=dtype)
    return params


def _activate(z: np.ndarray, activation: str) -> np.ndarray:
    return np.tanh(z) if activation == "tanh" else np.maximum(z, 0)


def _activation_grad(z: np.ndarray, s: np.ndarray, activation: str) -> np.ndarray:
    """f'(z), from the cached output s = f(z) where that is cheaper."""
    return 1 - s * s if activation == "tanh" else (z > 0).astype(s.dtype)


def forward_states(
    params: Params, inputs: np.ndarray, activation: str
) -> tuple[np.ndarray, np.ndarray]:
    """Run the recurrence over a (B, T) id batch.

    Returns Z (T, B, H), the pre-activations, and S (T+1, B, H) with S[0] = s_{-1} = 0,
    so S[t+1] is the state after reading inputs[:, t].
    """
    U, W, b = params["U"], params["W"], params["b"]
    batch, steps = inputs.shape
    hidden = W.shape[0]
    # U.T[ids] gathers U[:, x_t] for every position at once: (T, B, H).
    inputs_term = U.T[inputs.T] + b
    Z = np.empty((steps, batch, hidden), dtype=W.dtype)
    S = np.zeros((steps + 1, batch, hidden), dtype=W.dtype)
    for t in range(steps):
        np.matmul(S[t], W.T, out=Z[t])
        Z[t] += inputs_term[t]
        S[t + 1] = _activate(Z[t], activation)
    return Z, S


def with_ones(states: np.ndarray) -> np.ndarray:
    """States (N, H) with a column of ones (N, H + 1): a product with [V | c] then adds the
    bias c inside the matrix product instead of in a pass over the (N, V) result."""
    return np.hstack([states, np.ones((len(states), 1), dtype=states.dtype)])


def output_log_probs(
    params: Params, states: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Softmax output for N states (N, H) and their targets (N,).

    Returns ln p(target) (N,), the unnormalised probabilities (N, V) and their row totals
    (N,): softmax row i is probs[i] / totals[i], which a backward pass folds into its
    products rather than paying a pass over the (N, V) buffer, the largest array of a
    step. It is computed in place in as few passes as the maths allows: the bias inside
    the product (``with_ones``), no shift by the row maximum where no logit can be large
    enough to overflow ``exp`` (softmax does not change with a shift; |logit| <= |s|
    max_j |V_j| + max |c|, and with tanh |s| <= sqrt(H)), then exp, and the row totals as
    a matrix-vector product (the math library's threads, not one NumPy pass).
    """
    V, c = params["V"], params["c"]
    probs = with_ones(states) @ np.hstack([V, c[:, None]]).T  # (N, V) logits
    bound = float(np.sqrt(np.einsum("nh,nh->n", states, states).max(initial=0.0)))
    bound = bound * float(np.sqrt(np.einsum("vh,vh->v", V, V).max())) + float(np.abs(c).max())
    if not bound < _SAFE_EXP[probs.dtype.itemsize]:
        probs -= probs.max(axis=1, keepdims=True)
    rows = np.arange(len(targets))
    target_logits = probs[rows, targets].copy()
    np.exp(probs, out=probs)
    totals = probs @ np.ones(probs.shape[1], dtype=probs.dtype)  # (N,)
    return target_logits - np.log(totals), probs, totals


def tree_forward_states(
    params: Params, plan: TreePlan, activation: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Run the recurrence over a prefix tree, one batched step per depth. Yields, per depth,
    the nodes that have children (k,) and their states (k, H)."""
    U, W, b = params["U"], params["W"], params["b"]
    before = None  # the previous level's states, (n, H)
    for level in plan.levels:
        inputs_term = U.T[plan.tokens[level]] + b  # (n, H)
        if before is None:  # roots start from s_{-1} = 0
            z = inputs_term
        else:  # the same order of operations as forward_states
            z = before[plan.parent_slots(level)] @ W.T
            z += inputs_term
        before = _activate(z, activation)
        keep = plan.has_children(level)
        yield level[keep], before[keep]


def tree_output_log_probs(
    params: Params, states: np.ndarray, at: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    """ln p(targets[j] | states[at[j]]), (c,), for N states (N, H): the softmax runs once
    per state however many targets it has, normalised as in ``output_log_probs``."""
    logits = states @ params["V"].T  # (N, V)
    logits += params["c"]
    logits -= logits.max(axis=1, keepdims=True)
    target_logits = logits[at, targets]  # (c,)
    np.exp(logits, out=logits)
    return target_logits - np.log(logits.sum(axis=1))[at]


def output_grads(
    params: Params, bounds: np.ndarray | None, states: np.ndarray, targets: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray, Params]:
    """The output layer at N states (N, H): ln p(targets) (N,), and the gradients of
    ``-scale * sum(ln p)`` with respect to the states (N, H) and the output parameters (the
    full softmax's V, c; or the factored one's, ``word_classes.class_output``)."""
    if bounds is not None:
        logp, grad_states, class_grads = class_output(params, bounds, states, targets, scale)
        assert grad_states is not None
        return logp, grad_states, class_grads
    logp, probs, totals = output_log_probs(params, states, targets)
    # dL/do = weight_i probs_i - scale onehot(target_i), weight_i = scale / totals_i: the
    # weights scale the (N, H + 1) side of each product, the one-hot part is a row update.
    weights = (scale / totals).astype(states.dtype)[:, None]  # (N, 1)
    inputs = with_ones(states)  # (N, H + 1)
    both = probs.T @ (inputs * weights)  # (V, H + 1): [dL/dV | dL/dc] in one product
    words, sums = sum_rows_by_id(targets, inputs)
    both[words] -= scale * sums
    grads: Params = {"V": both[:, :-1], "c": both[:, -1]}
    V = params["V"]
    grad_states = (probs @ V) * weights - scale * V[targets]  # (N, H)
    return logp, grad_states, grads


def loss_and_grads(
    params: Params,
    batch: Batch,
    activation: str = "tanh",
    bptt_truncate: int | None = None,
    bounds: np.ndarray | None = None,
) -> tuple[float, Params]:
    """Summed loss (nats) over the batch's real tokens and gradients of the *mean* loss;
    ``bounds``: the word classes of a factored output layer (None: the full softmax)."""
    W = params["W"]
    Z, S = forward_states(params, batch.inputs, activation)
    steps, _, hidden = Z.shape
    real = batch.mask.T  # (T, B): positions in time-major order
    n_tokens = int(real.sum())
    states = S[1:][real]  # (N, H)
    targets = batch.targets.T[real]
    logp, grad_states, grads = output_grads(params, bounds, states, targets, 1.0 / n_tokens)

    # dL_t/ds_t from the output layer; zero at padding. (T, B, H)
    E = np.zeros_like(Z)
    E[real] = grad_states
    F = _activation_grad(Z, S[1:], activation)  # f'(z_t), (T, B, H)

    # D[t] = dL/dz_t summed over the losses that reach z_t. (T, B, H)
    D = np.empty_like(Z)
    if bptt_truncate is None or bptt_truncate >= steps:
        carry = np.zeros_like(Z[0])  # dL/ds_t from steps after t
        for t in range(steps - 1, -1, -1):
            D[t] = (E[t] + carry) * F[t]
            carry = D[t] @ W
    else:
        k = bptt_truncate
        # ages[a] = gradient at z_t of the loss at step t + a, for a = 0..k. (k+1, B, H)
        ages = np.zeros((k + 1, *Z.shape[1:]), dtype=Z.dtype)
        for t in range(steps - 1, -1, -1):
            older = (ages[:-1].reshape(-1, hidden) @ W).reshape(k, *Z.shape[1:])
            ages[1:] = older * F[t]
            ages[0] = E[t] * F[t]
            D[t] = ages.sum(axis=0)

    flat_D = D.reshape(-1, hidden)
    grads["W"] = flat_D.T @ S[:-1].reshape(-1, hidden)
    grads["b"] = flat_D.sum(axis=0)
    grads["U"] = input_grad(params["U"], batch.inputs.T[real], D[real])
    return -float(logp.sum(dtype=np.float64)), grads


def input_grad(U: np.ndarray, ids: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """dL/dU (H, V): the deltas (N, H) of the positions that read word ids[i], added into
    its column, written once per distinct word (``sum_rows_by_id``)."""
    grad = np.zeros_like(U)
    words, sums = sum_rows_by_id(ids, deltas)
    grad[:, words] = sums.T  # (H, u)
    return grad


def sum_rows_by_id(ids: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ids (u,) and, for each, the sum of the rows (N, D) with that id (u, D):
    sorted and summed with ``np.add.reduceat``. ``np.add.at``, its unbuffered per-element
    scatter, was most of a step's time outside the products."""
    if len(ids) == 0:
        return ids[:0], rows[:0]
    order = np.argsort(ids, kind="stable")
    words, starts = np.unique(ids[order], return_index=True)
    return words, np.add.reduceat(rows[order], starts, axis=0)


def clip_by_global_norm(grads: Params, max_norm: float | None) -> float:
    """Scale all gradients together so their joint L2 norm is at most ``max_norm``;
    returns the norm before clipping."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if max_norm is not None and norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for g in grads.values():
            g *= scale
    return norm


class NumpyRNNEngine(NumpyDecoding):
    """The ``rnn`` cell: needs NumPy only."""

    def __init__(
        self,
        config: ModelConfig,
        vocab_size: int,
        seed: int = 0,
        word_counts: np.ndarray | None = None,
    ) -> None:
        """``word_counts`` (V,) places the word classes of ``config.output_classes``."""
        self.vocab_size = vocab_size
        self.activation = config.activation
        classes = config.output_classes or 0
        self.params = init_params(config.hidden_size, vocab_size, seed, config.dtype, classes)
        # The factored output layer's class ranges (word_classes.py); None: full softmax.
        self.bounds: np.ndarray | None = None
        if classes:
            self.bounds = (
                class_bounds(word_counts, classes)
                if word_counts is not None
                else even_bounds(vocab_size, classes)
            )
        self.optimizer: NumpyOptimizer | None = None
        self.clip: float | None = None
        self.bptt_truncate: int | None = None

    def _target_log_probs(self, states: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """ln p(targets[i] | states[i]), (N,)."""
        if self.bounds is not None:
            return class_output(self.params, self.bounds, states, targets)[0]
        return output_log_probs(self.params, states, targets)[0]

    def token_log_probs(self, batch: Batch) -> np.ndarray:
        _, S = forward_states(self.params, batch.inputs, self.activation)
        real = batch.mask.T
        logp = self._target_log_probs(S[1:][real], batch.targets.T[real])
        out = np.zeros(batch.inputs.T.shape, dtype=np.float64)  # (T, B)
        out[real] = logp
        return out.T

    def tree_log_probs(
        self, tokens: np.ndarray, parents: np.ndarray, should_stop: ShouldStop | None = None
    ) -> np.ndarray:
        plan = TreePlan(tokens, parents)
        out = np.zeros(len(plan), dtype=np.float64)
        pieces = tree_forward_states(self.params, plan, self.activation)
        for rows, states in rechunk(pieces, _TREE_CHUNK_ROWS, np.concatenate):
            check(should_stop)
            children, at = plan.children_of(rows)  # (c,), (c,)
            if self.bounds is not None:  # the class softmax costs per token, not per state
                out[children] = self._target_log_probs(states[at], plan.tokens[children])
                continue
            out[children] = tree_output_log_probs(self.params, states, at, plan.tokens[children])
        return out

    def configure_training(
        self,
        optimizer: str,
        learning_rate: float,
        clip: float | None,
        bptt_truncate: int | None,
        weight_decay: float = 0.0,
    ) -> None:
        self.optimizer = OPTIMIZER_CLASSES[optimizer](self.params, learning_rate, weight_decay)
        self.clip = clip
        self.bptt_truncate = bptt_truncate

    def set_learning_rate(self, learning_rate: float) -> None:
        assert self.optimizer is not None, "configure_training() first"
        self.optimizer.learning_rate = learning_rate

    def train_step(self, batch: Batch) -> StepStats:
        assert self.optimizer is not None, "configure_training() first"
        loss_sum, grads = loss_and_grads(
            self.params, batch, self.activation, self.bptt_truncate, self.bounds
        )
        norm = clip_by_global_norm(grads, self.clip)
        self.optimizer.update(grads)
        return StepStats(loss_sum, batch.num_tokens, norm)

    def initial_state(self, batch_size: int) -> np.ndarray:
        return np.zeros((batch_size, self.params["W"].shape[0]), dtype=self.params["W"].dtype)

    def step(self, tokens: np.ndarray, state: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        if state is None:  # as the torch engines: None is the initial state
            state = self.initial_state(len(tokens))
        z = p["U"].T[tokens] + state @ p["W"].T + p["b"]  # (B, H)
        new_state = _activate(z, self.activation)
        logits = (new_state @ p["V"].T + p["c"]).astype(np.float64)  # (B, V)
        if self.bounds is not None:
            class_logits = (new_state @ p["Wc"].T + p["cc"]).astype(np.float64)  # (B, C)
            class_logits -= class_logits.max(axis=1, keepdims=True)
            class_logits -= np.log(np.exp(class_logits).sum(axis=1, keepdims=True))
            return factored_log_probs(logits, class_logits, self.bounds), new_state
        logits -= logits.max(axis=1, keepdims=True)
        logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return logits, new_state

    def select_state(self, state: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return state[rows]

    def concat_states(self, states: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(states)  # each (B_i, H)

    def state_dict(self) -> dict[str, np.ndarray]:
        tensors = {name: arr.copy() for name, arr in self.params.items()}
        if self.bounds is not None:
            tensors[CLASS_BOUNDS] = self.bounds.copy()
        return tensors

    def load_state_dict(self, tensors: dict[str, np.ndarray]) -> None:
        expected = {k: v.shape for k, v in self.params.items()}
        if self.bounds is not None:
            expected[CLASS_BOUNDS] = self.bounds.shape
        check_state_dict(expected, tensors)
        if self.bounds is not None:
            bounds = np.asarray(tensors[CLASS_BOUNDS], dtype=np.int64)
            check_bounds(bounds, self.vocab_size)
            self.bounds = bounds.copy()
        for name, arr in self.params.items():
            arr[...] = tensors[name]  # in place: the optimizer holds references

    def optimizer_state_dict(self) -> dict[str, np.ndarray]:
        return self.optimizer.state_dict() if self.optimizer is not None else {}

    def load_optimizer_state_dict(self, tensors: dict[str, np.ndarray]) -> None:
        assert self.optimizer is not None, "configure_training() first"
        self.optimizer.load_state_dict(tensors)
