"""Gradient checks for the NumPy RNN's hand-written BPTT (``rnnlm.model.engines.numpy_rnn``).

The engine's backward pass is checked against three independent references:

* centred finite differences of a plain per-sequence forward pass written here (full BPTT);
* centred finite differences of the *surrogate* loss whose true gradient is the truncated
  BPTT gradient: for the loss at step t, the state s_{t-k-1} is frozen at its value under
  the base parameters and z_{t-k}..z_t are recomputed from it;
* torch autograd on the same model (skipped when torch is missing).

Everything runs in float64 on a tiny model, so the whole file takes a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlm.model.batching import make_batch
from rnnlm.model.engines.numpy_rnn import init_params, loss_and_grads

VOCAB = 9
HIDDEN = 5
# Framed sequence lengths (ids): 8, 5 and 1 targets. The short one leaves most of its row as
# padding; the long ones are longer than k + 2 for every truncation tested.
SEQ_LENGTHS = (9, 6, 2)
PARAM_NAMES = ("U", "W", "b", "V", "c")
FD_STEP = 1e-5
FD_RTOL = 1e-6
# Entries where both the numerical and analytical gradients are below this are not compared:
# their relative error is pure round-off.
FD_ZERO = 1e-10
# Seeds for which every real pre-activation is well away from the ReLU kink (asserted below).
SEEDS = {"tanh": 15, "relu": 4}


# --------------------------------------------------------------------------- fixtures


def _make_case(activation: str, seed: int):
    """Perturbed float64 parameters and a random batch of framed sequences.

    Parameters are moved away from the initialisation (zero biases, small weights) so that
    every gradient entry is of a healthy size and the biases matter.
    """
    rng = np.random.default_rng(seed)
    params = init_params(HIDDEN, VOCAB, seed=seed, dtype="float64")
    for name in PARAM_NAMES:
        params[name] = params[name] + rng.normal(0.0, 0.5, params[name].shape)
    seqs = [rng.integers(0, VOCAB, size=n).astype(np.int64) for n in SEQ_LENGTHS]
    return params, seqs


@pytest.fixture(params=["tanh", "relu"])
def case(request):
    activation = request.param
    params, seqs = _make_case(activation, SEEDS[activation])
    if activation == "relu":
        # Finite differences are only valid away from the kink of max(z, 0): a step of
        # FD_STEP must never flip the sign of a pre-activation that reaches the loss.
        zs = [z for seq in seqs for z in _ref_forward(params, seq[:-1], activation)[0]]
        min_abs_z = min(np.abs(z).min() for z in zs)
        assert min_abs_z > 100 * FD_STEP, f"seed too close to the ReLU kink: {min_abs_z}"
    return params, seqs, activation


# --------------------------------------------------------------------------- references


def _f(z: np.ndarray, activation: str) -> np.ndarray:
    return np.tanh(z) if activation == "tanh" else np.maximum(z, 0.0)


def _ref_forward(params, x, activation, s_init=None):
    """Plain per-sequence recurrence; returns lists of z_t and s_t for t = 0..len(x)-1."""
    s = np.zeros(params["W"].shape[0]) if s_init is None else s_init
    zs, ss = [], []
    for word in x:
        z = params["U"][:, word] + params["W"] @ s + params["b"]
        s = _f(z, activation)
        zs.append(z)
        ss.append(s)
    return zs, ss


def _neg_log_prob(params, s, target) -> float:
    o = params["V"] @ s + params["c"]
    m = o.max()
    return float(m + math.log(np.exp(o - m).sum()) - o[target])


def _ref_sum_loss(params, seqs, activation) -> float:
    """Summed cross-entropy (nats) over every target of every sequence, no padding involved."""
    total = 0.0
    for seq in seqs:
        _, ss = _ref_forward(params, seq[:-1], activation)
        total += sum(_neg_log_prob(params, s, y) for s, y in zip(ss, seq[1:], strict=True))
    return total


def _ref_surrogate_sum_loss(params, base_params, seqs, activation, k) -> float:
    """Summed loss whose true gradient (at params == base_params) is the k-truncated one.

    For the loss at step t the anchor s_{t-k-1} comes from a forward pass under
    ``base_params`` (a constant: it does not move when ``params`` are perturbed); z_{t-k}..z_t
    are recomputed from it with ``params``. Before the start the anchor is s_{-1} = 0.
    """
    total = 0.0
    for seq in seqs:
        x, y = seq[:-1], seq[1:]
        _, base_states = _ref_forward(base_params, x, activation)
        for t in range(len(x)):
            start = max(0, t - k)
            anchor = base_states[start - 1] if start > 0 else np.zeros(params["W"].shape[0])
            _, ss = _ref_forward(params, x[start : t + 1], activation, s_init=anchor)
            total += _neg_log_prob(params, ss[-1], y[t])
    return total


def _num_tokens(seqs) -> int:
    return sum(len(s) - 1 for s in seqs)


def _finite_difference_grads(mean_loss, params):
    """Centred differences of ``mean_loss(params)`` w.r.t. every element of every parameter."""
    grads = {}
    for name in PARAM_NAMES:
        p = params[name]
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + FD_STEP
            plus = mean_loss(params)
            p[idx] = old - FD_STEP
            minus = mean_loss(params)
            p[idx] = old
            g[idx] = (plus - minus) / (2 * FD_STEP)
        grads[name] = g
    return grads


def _assert_fd_close(numerical, analytical):
    for name in PARAM_NAMES:
        num, ana = numerical[name], analytical[name]
        assert ana.shape == num.shape, name
        compared = (np.abs(num) > FD_ZERO) | (np.abs(ana) > FD_ZERO)
        rel = np.abs(num - ana) / np.maximum(np.abs(num) + np.abs(ana), 1e-300)
        worst = rel[compared].max(initial=0.0)
        assert worst < FD_RTOL, f"{name}: max relative error {worst:.3e}"


# --------------------------------------------------------------------------- loss value


def test_summed_loss_matches_reference_forward(case):
    # The loss is the sum of -log p(target) over real tokens only: padding must not count.
    params, seqs, activation = case
    batch = make_batch(seqs)
    assert batch.num_tokens == _num_tokens(seqs)
    loss_sum, _ = loss_and_grads(params, batch, activation)
    assert loss_sum == pytest.approx(_ref_sum_loss(params, seqs, activation), rel=1e-12)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_truncation_does_not_change_the_loss(case, k):
    # Truncation only affects the backward pass.
    params, seqs, activation = case
    batch = make_batch(seqs)
    full, _ = loss_and_grads(params, batch, activation)
    truncated, _ = loss_and_grads(params, batch, activation, bptt_truncate=k)
    assert truncated == pytest.approx(full, rel=1e-13)


# --------------------------------------------------------------------------- finite differences


def test_full_bptt_matches_finite_differences(case):
    params, seqs, activation = case
    n = _num_tokens(seqs)
    _, analytical = loss_and_grads(params, make_batch(seqs), activation)
    numerical = _finite_difference_grads(lambda p: _ref_sum_loss(p, seqs, activation) / n, params)
    _assert_fd_close(numerical, analytical)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_truncated_bptt_matches_finite_differences_of_surrogate(case, k):
    params, seqs, activation = case
    assert max(SEQ_LENGTHS) - 1 > k + 2  # truncation really cuts something
    n = _num_tokens(seqs)
    base = {name: arr.copy() for name, arr in params.items()}  # anchors stay at theta0
    _, analytical = loss_and_grads(params, make_batch(seqs), activation, bptt_truncate=k)
    numerical = _finite_difference_grads(
        lambda p: _ref_surrogate_sum_loss(p, base, seqs, activation, k) / n, params
    )
    _assert_fd_close(numerical, analytical)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_truncated_gradient_differs_from_full(case, k):
    # Guards against a truncation that is silently ignored.
    params, seqs, activation = case
    batch = make_batch(seqs)
    _, full = loss_and_grads(params, batch, activation)
    _, truncated = loss_and_grads(params, batch, activation, bptt_truncate=k)
    diff = np.abs(truncated["W"] - full["W"]).max()
    assert diff > 1e-3 * np.abs(full["W"]).max()
    # The output layer sees no recurrence, so truncation must leave it alone.
    np.testing.assert_allclose(truncated["V"], full["V"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(truncated["c"], full["c"], rtol=1e-12, atol=1e-15)


def test_truncation_at_least_sequence_length_equals_full(case):
    # k = T-1 runs the truncated code path but reaches back to z_0 from every step, so it
    # must agree with full BPTT; k >= T takes the full path.
    params, seqs, activation = case
    batch = make_batch(seqs)
    steps = batch.inputs.shape[1]
    _, full = loss_and_grads(params, batch, activation)
    for k in (steps - 1, steps, steps + 5):
        _, truncated = loss_and_grads(params, batch, activation, bptt_truncate=k)
        for name in PARAM_NAMES:
            np.testing.assert_allclose(
                truncated[name], full[name], rtol=1e-10, atol=1e-14, err_msg=f"k={k} {name}"
            )


# --------------------------------------------------------------------------- torch autograd


def _torch_mean_loss(torch, tp, seqs, activation, k):
    """The same model in torch; with ``k`` the anchors s_{t-k-1} come from a detached full
    forward pass and each step's loss is rolled forward from its anchor."""
    f = torch.tanh if activation == "tanh" else torch.relu
    hidden = tp["W"].shape[0]

    def step(s, word):
        return f(tp["U"][:, word] + tp["W"] @ s + tp["b"])

    total = torch.zeros((), dtype=torch.float64)
    for seq in seqs:
        x, y = [int(i) for i in seq[:-1]], [int(i) for i in seq[1:]]
        s = torch.zeros(hidden, dtype=torch.float64)
        states = []
        for word in x:
            s = step(s, word)
            states.append(s)
        for t in range(len(x)):
            if k is None:
                s_t = states[t]
            else:
                start = max(0, t - k)
                s_t = (
                    states[start - 1].detach()
                    if start > 0
                    else torch.zeros(hidden, dtype=torch.float64)
                )
                for j in range(start, t + 1):
                    s_t = step(s_t, x[j])
            logits = tp["V"] @ s_t + tp["c"]
            total = total - torch.log_softmax(logits, dim=0)[y[t]]
    return total / _num_tokens(seqs)


@pytest.mark.parametrize("k", [None, 2])
def test_gradients_match_torch_autograd(case, k):
    torch = pytest.importorskip("torch")
    params, seqs, activation = case
    tp = {
        name: torch.tensor(arr, dtype=torch.float64, requires_grad=True)
        for name, arr in params.items()
    }
    mean_loss = _torch_mean_loss(torch, tp, seqs, activation, k)
    mean_loss.backward()

    loss_sum, grads = loss_and_grads(params, make_batch(seqs), activation, bptt_truncate=k)
    assert loss_sum / _num_tokens(seqs) == pytest.approx(mean_loss.item(), rel=1e-12)
    for name in PARAM_NAMES:
        ref = tp[name].grad.numpy()
        scale = max(np.abs(ref).max(), 1e-300)
        np.testing.assert_allclose(
            grads[name], ref, rtol=1e-8, atol=1e-10 * scale, err_msg=f"k={k} {name}"
        )


# --------------------------------------------------------------------------- initialisation


def test_initial_loss_is_close_to_uniform():
    # The tutorial's sanity check: with small initial weights and zero biases the softmax is
    # nearly uniform, so the mean loss starts at about ln(vocabulary size).
    vocab = 8000
    params = init_params(hidden_size=100, vocab_size=vocab, seed=0, dtype="float32")
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, vocab, size=n).astype(np.int64) for n in (12, 20, 7, 15)]
    batch = make_batch(seqs)
    for activation in ("tanh", "relu"):
        loss_sum, _ = loss_and_grads(params, batch, activation)
        mean = loss_sum / batch.num_tokens
        assert mean == pytest.approx(math.log(vocab), rel=0.02), activation
