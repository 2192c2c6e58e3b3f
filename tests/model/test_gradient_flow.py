"""The vanishing-gradient report (``rnnlm.model.gradient_flow``) on planted cases.

With the recurrent matrix set to a * Q (Q orthogonal), tiny inputs and gates pinned open or
shut, every cell is near linear and the gradient shrinks or grows by exactly ``a`` per step
back: the measured rate must match the planted one. The NumPy path is also checked against
centred finite differences, the torch path against autograd through the fused nn.GRU/LSTM
module stepped one token at a time; and the report runs on trained models of each cell.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlm.model import Corpus, ModelConfig, TrainConfig, train
from rnnlm.model.engines import create_engine, torch_available
from rnnlm.model.gradient_flow import (
    MAX_DISTANCE,
    MAX_WORDS,
    fit_decay,
    gradient_flow,
    sequence_flow,
)
from tests.conftest import ALL_CELLS, TORCH_CELLS, needs_torch

VOCAB = 30
HIDDEN = 8
PLANTED_LENGTH = 10  # ids per framed sequence: 9 positions
PLANTED_DISTANCE = 6


def orthogonal(size: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))
    return q * np.sign(np.diag(r))  # (H, H), Q^T Q = I


def random_sequences(count: int, length: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCAB, size=length).astype(np.int64) for _ in range(count)]


def planted_rnn(scale: float, dtype: str = "float32"):
    """A NumPy rnn with W = scale * Q and inputs of about 1e-3: tanh' stays near 1."""
    engine = create_engine(ModelConfig(cell="rnn", hidden_size=HIDDEN, dtype=dtype), VOCAB)
    rng = np.random.default_rng(0)
    params = engine.params  # type: ignore[attr-defined]
    params["W"][...] = scale * orthogonal(HIDDEN, 1)
    params["U"][...] = rng.uniform(-1e-3, 1e-3, params["U"].shape)
    params["V"][...] = rng.normal(size=params["V"].shape)
    params["b"][...] = params["c"][...] = 0
    return engine


def planted_torch(cell: str, scale: float):
    """A one-layer GRU/LSTM whose state-to-state Jacobian is scale * Q: the gates that mix
    in the old state (GRU z, LSTM f) are shut, the others open, and only the candidate's
    recurrent block is non-zero."""
    import torch

    config = ModelConfig(
        cell=cell,
        vocab_size=VOCAB,
        embed_size=HIDDEN,
        hidden_size=HIDDEN,
        dropout=0.0,
        tie_weights=False,
        output_classes=0,
    )
    engine = create_engine(config, VOCAB, device="cpu")
    rnn, h = engine.model.rnn, HIDDEN  # type: ignore[attr-defined]
    # Gate blocks of the stacked weights: GRU (r, z, n), LSTM (i, f, g, o).
    gates = {"gru": {"r": 0, "z": 1, "n": 2}, "lstm": {"i": 0, "f": 1, "g": 2, "o": 3}}[cell]
    candidate = gates["n" if cell == "gru" else "g"]
    bias = {"r": 20.0, "z": -20.0, "n": 0.0, "i": 20.0, "f": -20.0, "g": 0.0, "o": 20.0}
    with torch.no_grad():
        engine.model.embedding.weight.mul_(1e-2)  # type: ignore[attr-defined]
        rnn.weight_hh_l0.zero_()
        block = slice(candidate * h, (candidate + 1) * h)
        rnn.weight_hh_l0[block] = torch.from_numpy(scale * orthogonal(h, 1)).float()
        rnn.bias_hh_l0.zero_()
        for gate, index in gates.items():
            rnn.bias_ih_l0[index * h : (index + 1) * h] = bias[gate]
    return engine


def successive_ratios(norms: list[float]) -> np.ndarray:
    return np.array(norms[1:]) / np.array(norms[:-1])


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_numpy_rnn_decays_at_the_planted_rate(scale):
    sequences = random_sequences(100, PLANTED_LENGTH, seed=2)
    flow = sequence_flow(planted_rnn(scale), "rnn", sequences, PLANTED_DISTANCE)
    assert flow.distances == list(range(PLANTED_DISTANCE + 1))
    assert flow.counts == [100 * (PLANTED_LENGTH - 1 - k) for k in flow.distances]
    assert flow.decay_per_step == pytest.approx(scale, rel=0.03)
    np.testing.assert_allclose(successive_ratios(flow.mean_norms), scale, rtol=0.02)


@pytest.mark.parametrize("cell", TORCH_CELLS)
@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_torch_cells_decay_at_the_planted_rate(cell, scale):
    needs_torch(cell)
    sequences = random_sequences(60, PLANTED_LENGTH, seed=3)
    flow = sequence_flow(planted_torch(cell, scale), cell, sequences, PLANTED_DISTANCE)
    assert flow.decay_per_step == pytest.approx(scale, rel=0.03)
    np.testing.assert_allclose(successive_ratios(flow.mean_norms), scale, rtol=0.02)


def test_a_planted_rate_is_not_found_where_it_is_not():
    """The check can fail: a model planted with 0.5 does not pass for 1.5."""
    flow = sequence_flow(planted_rnn(0.5), "rnn", random_sequences(20, 8, seed=4), 5)
    assert flow.decay_per_step is not None and flow.decay_per_step < 0.6


# -- exactness -------------------------------------------------------------------------


def _loss_from_state(params, seq, t: int, start: int, state: np.ndarray) -> float:
    """L_t with the state after reading position ``start`` replaced by ``state``."""
    s = state
    for j in range(start + 1, t + 1):
        s = np.tanh(params["U"][:, seq[j]] + params["W"] @ s + params["b"])
    logits = params["V"] @ s + params["c"]
    return float(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[seq[t + 1]])


def test_numpy_norms_match_finite_differences():
    engine = create_engine(ModelConfig(cell="rnn", hidden_size=5, dtype="float64"), VOCAB, seed=7)
    params = engine.params  # type: ignore[attr-defined]
    params["W"] *= 3.0  # well inside tanh's curve: the check is not of a linear model
    sequences = random_sequences(2, 7, seed=5)
    distance = 4
    flow = sequence_flow(engine, "rnn", sequences, distance)
    sums, counts = np.zeros(distance + 1), np.zeros(distance + 1)
    for seq in sequences:
        states = [np.zeros(5)]
        for x in seq[:-1]:
            states.append(np.tanh(params["U"][:, x] + params["W"] @ states[-1] + params["b"]))
        for t in range(len(seq) - 1):
            for k in range(min(distance, t) + 1):
                base, grad = states[t - k + 1], np.zeros(5)
                for i in range(5):
                    step = np.eye(5)[i] * 1e-6
                    up = _loss_from_state(params, seq, t, t - k, base + step)
                    down = _loss_from_state(params, seq, t, t - k, base - step)
                    grad[i] = (up - down) / 2e-6
                sums[k] += np.linalg.norm(grad)
                counts[k] += 1
    assert flow.counts == counts.astype(int).tolist()
    np.testing.assert_allclose(flow.mean_norms, sums / counts, rtol=1e-6)


def _fused_reference(engine, seq: np.ndarray, distance: int) -> list[float]:
    """Mean norms by autograd through the model's own nn.GRU/nn.LSTM, stepped one token at a
    time: the state it hands to the next step is what the loss k >= 1 steps on reaches."""
    import torch

    from rnnlm.model.engines.torch_output import full_log_probs

    model = engine.model
    ids = torch.from_numpy(seq[:-1])[None]  # (1, T)
    emb = model.embedding(ids)
    state, outs, tops, losses = None, [], [], []
    for t in range(ids.shape[1]):
        out, state = model.rnn(emb[:, t : t + 1], state)
        outs.append(out[:, 0])  # (1, H): what the output layer reads
        tops.append(state[0] if isinstance(state, tuple) else state)  # (L, 1, H)
        logp = full_log_probs(model, outs[-1])[0, int(seq[t + 1])]
        losses.append(-logp)
    sums = np.zeros(distance + 1)
    counts = np.zeros(distance + 1)
    for t, loss in enumerate(losses):
        for k in range(min(distance, t) + 1):
            wrt = outs[t] if k == 0 else tops[t - k]
            (grad,) = torch.autograd.grad(loss, wrt, retain_graph=True)
            sums[k] += float((grad if k == 0 else grad[-1]).norm())
            counts[k] += 1
    return list(sums / counts)


@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_torch_norms_match_autograd_through_the_fused_module(cell):
    needs_torch(cell)
    config = ModelConfig(
        cell=cell, vocab_size=VOCAB, embed_size=6, hidden_size=7, num_layers=2, output_classes=4
    )
    engine = create_engine(config, VOCAB, seed=3, device="cpu")
    seq = random_sequences(1, 9, seed=6)[0]
    flow = sequence_flow(engine, cell, [seq], 5)
    np.testing.assert_allclose(flow.mean_norms, _fused_reference(engine, seq, 5), rtol=1e-4)


# -- trained models and the public function --------------------------------------------

HELD_OUT = [
    "the value of the list is not a number .",
    "a class may define a method that is called when the object is used .",
    "this is the name of the module .",
]


@pytest.fixture(scope="module")
def trained(pydoc_text):
    corpus = Corpus.from_text(pydoc_text[:15_000])
    sizes = {"vocab_size": 150, "embed_size": 12, "hidden_size": 12}
    models = {}
    for cell in ALL_CELLS:
        if cell != "rnn" and not torch_available():
            continue
        layers = {"num_layers": 2} if cell == "gru" else {}
        models[cell] = train(
            corpus,
            ModelConfig(cell=cell, **sizes, **layers),
            TrainConfig(epochs=1, batch_size=32, seed=2, device="cpu"),
        )
    return models


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_the_report_runs_on_a_trained_model(cell, trained):
    needs_torch(cell)
    lm = trained[cell]
    flow = gradient_flow(lm, HELD_OUT, max_distance=8)
    assert flow.cell == cell
    assert flow.distances == list(range(9))
    lengths = [len(lm.words(s)) + 1 for s in HELD_OUT]  # positions: the words and the end
    assert flow.counts == [sum(max(n - k, 0) for n in lengths) for k in range(9)]
    assert all(math.isfinite(m) and m > 0 for m in flow.mean_norms)
    assert flow.decay_per_step is not None and 0 < flow.decay_per_step < 1.5
    # The same sentences as word lists give the same report.
    again = gradient_flow(lm, [lm.words(s) for s in HELD_OUT], max_distance=8)
    assert again.mean_norms == pytest.approx(flow.mean_norms, rel=1e-6)


def test_distances_stop_where_the_sentences_end(trained):
    flow = gradient_flow(trained["rnn"], ["the list ."], max_distance=20)
    assert flow.distances == [0, 1, 2, 3] and flow.counts == [4, 3, 2, 1]


@pytest.mark.parametrize(
    ("sentences", "max_distance", "message"),
    [
        ([], 20, "sentences is empty"),
        ("the list .", 20, "must be a list of sentences"),
        (["the list .", "  "], 20, "sentences[1] has no words"),
        (["word " * (MAX_WORDS + 1)], 20, f"at most {MAX_WORDS} a sentence"),
        (["the list ."], 0, f"max_distance must be an integer in [1, {MAX_DISTANCE}], got 0"),
        (["the list ."], MAX_DISTANCE + 1, f"in [1, {MAX_DISTANCE}]"),
        (["the list ."], True, "max_distance must be an integer"),
    ],
)
def test_bad_arguments_say_what_is_allowed(trained, sentences, max_distance, message):
    with pytest.raises(ValueError) as err:
        gradient_flow(trained["rnn"], sentences, max_distance=max_distance)
    assert message in str(err.value)


def test_the_fit_recovers_a_geometric_curve():
    curve = 3.0 * 0.7 ** np.arange(6)
    assert fit_decay(curve, np.array([6, 5, 4, 3, 2, 1])) == pytest.approx(0.7)
    assert fit_decay(np.append(curve, 0.0), np.ones(7)) == pytest.approx(0.7)  # 0 left out
    assert fit_decay(np.array([1.0]), np.array([3])) is None
