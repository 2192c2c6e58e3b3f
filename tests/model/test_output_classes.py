"""The class-factored softmax (``output_classes``): class layout, normalisation, agreement
between its scoring and decoding paths, training and checkpoints."""

import numpy as np
import pytest

from rnnlm.model import LanguageModel, ModelConfig, TrainConfig, train
from rnnlm.model.batching import make_batch
from rnnlm.model.engines import create_engine
from rnnlm.model.engines.word_classes import class_bounds
from rnnlm.model.vocab import START_ID
from tests.conftest import needs_torch

VOCAB = 60


def test_class_bounds_cover_the_vocabulary_with_non_empty_ranges():
    rng = np.random.default_rng(0)
    counts = np.sort(rng.zipf(1.2, 1000).clip(0, 50_000))[::-1]
    bounds = class_bounds(counts, 30)
    assert bounds[0] == 0 and bounds[-1] == 1000 and len(bounds) == 31
    sizes = np.diff(bounds)
    assert np.all(sizes >= 1)
    # Frequent words (low ids) sit in small classes, rare ones in large classes.
    assert sizes[0] < sizes[-1]
    # Each class holds a similar share of the summed sqrt(count), a word's own share apart.
    mass = np.add.reduceat(np.sqrt(counts), bounds[:-1]) / np.sqrt(counts).sum()
    assert mass.max() < 2.5 / 30


@pytest.mark.parametrize(
    ("counts", "classes", "want"),
    [
        ([1000, 0, 1, 1], 4, [0, 1, 2, 3, 4]),  # one word outweighs all: still non-empty
        ([1000, 0, 1, 1], 9, [0, 1, 2, 3, 4]),  # capped at V classes
        ([0, 0, 0, 0], 2, [0, 2, 4]),  # no counts at all: even ranges
        ([5, 5, 5, 5, 5, 5], 3, [0, 2, 4, 6]),
    ],
)
def test_class_bounds_edge_cases(counts, classes, want):
    assert class_bounds(np.array(counts), classes).tolist() == want


def class_engine(classes: int = 7, cell: str = "gru"):
    needs_torch(cell)  # the NumPy rnn needs none
    config = ModelConfig(
        cell=cell, vocab_size=VOCAB, embed_size=16, hidden_size=16, output_classes=classes
    )
    counts = np.arange(VOCAB, 0, -1) ** 2
    engine = create_engine(config, VOCAB, seed=1, device="cpu", word_counts=counts)
    rng = np.random.default_rng(2)
    engine.load_state_dict(
        {
            k: v if k.endswith("bounds") else rng.normal(0, 0.7, v.shape).astype(v.dtype)
            for k, v in engine.state_dict().items()
        }
    )
    return engine


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_distributions_are_normalised_and_scoring_equals_decoding(cell):
    """``step`` builds the whole (B, V) distribution class by class; ``token_log_probs``
    runs one product per class present. They are separate code paths and must agree."""
    engine = class_engine(cell=cell)
    seqs = [np.array([START_ID, 5, 9, 40, 3, 59, 2]), np.array([START_ID, 17, 2])]
    scores = engine.token_log_probs(make_batch(seqs))  # (B, T)
    for row, seq in enumerate(seqs):
        state = None
        for t in range(len(seq) - 1):
            logp, state = engine.step(seq[t : t + 1], state)  # (1, V)
            assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-5)
            assert scores[row, t] == pytest.approx(logp[0, seq[t + 1]], abs=1e-5)
    assert np.exp(logp[0]).std() > 1e-3  # sharp enough for the comparison to mean something


def test_class_bounds_follow_training_counts_and_survive_a_checkpoint(tmp_path):
    needs_torch("gru")
    rare = [f"w{i} w{i + 1} ." for i in range(0, 40, 2)] * 2  # 40 words seen twice
    text = " ".join(["the cat sat on the mat ."] * 40 + ["a dog ran to the park ."] * 10 + rare)
    config = ModelConfig(embed_size=16, hidden_size=16, output_classes=4, ngram_order=0)
    lm = train(text, config, TrainConfig(epochs=8, batch_size=8, log_every=10**9))
    bounds = lm.engine.model.classes.bounds.tolist()
    assert len(bounds) == 5 and bounds[-1] == len(lm.vocab)
    sizes = np.diff(bounds)  # placed by counts: frequent words in a small class
    assert sizes[0] < sizes[-1] / 2  # (even ranges would be equal)
    path = tmp_path / "m.st"
    lm.save(path)
    loaded = LanguageModel.load(path, device="cpu")
    assert loaded.engine.model.classes.bounds.tolist() == bounds
    sentences = ["the cat sat on the mat .", "a dog ran ."]
    for a, b in zip(lm.score(sentences), loaded.score(sentences)):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-9)
    # It learned: the training sentence is far more likely than its reversal.
    good, bad = lm.score(["the cat sat on the mat .", ". mat the on sat cat the"], scorer="neural")
    assert good.logprob > bad.logprob + 3


def test_output_classes_is_validated():
    with pytest.raises(ValueError, match="output_classes must be an integer >= 2"):
        ModelConfig(output_classes=1)
    assert ModelConfig(cell="rnn", output_classes=10).output_classes == 10  # Mikolov's RNNLM


def test_default_output_layer_depends_on_the_vocabulary_size():
    assert ModelConfig().output_classes == 89  # round(sqrt(8000))
    assert ModelConfig(vocab_size=50_000).output_classes == 224
    assert ModelConfig(vocab_size=999).output_classes == 0  # small: the full softmax is cheap
    assert ModelConfig(cell="rnn", vocab_size=8000).output_classes == 0
    assert ModelConfig(output_classes=0).output_classes == 0  # asked for explicitly
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()  # stored resolved


def test_configs_stored_before_a_field_existed_keep_what_they_were_trained_with():
    old = ModelConfig(output_classes=0, min_count=1, ngram_order=0).to_dict()
    for name in ("output_classes", "min_count", "ngram_order"):
        del old[name]
    config = ModelConfig.from_stored(old)
    assert (config.output_classes, config.min_count, config.ngram_order) == (0, 1, 0)
    assert ModelConfig.from_stored(ModelConfig().to_dict()) == ModelConfig()


@pytest.mark.parametrize(("cell", "key"), [("rnn", "class_bounds"), ("gru", "classes.bounds")])
def test_damaged_class_bounds_are_refused(cell, key):
    engine = class_engine(cell=cell)
    weights = engine.state_dict()
    weights[key] = weights[key][::-1].copy()
    with pytest.raises(ValueError, match="must rise strictly from 0 to 60"):
        engine.load_state_dict(weights)


def test_the_numpy_class_softmax_gradients_match_finite_differences():
    """The hand-written backward of the factored output layer (word_classes.class_output)
    through BPTT, against centred differences of the loss, every parameter entry, float64."""
    from rnnlm.model.engines.numpy_rnn import init_params, loss_and_grads

    rng = np.random.default_rng(0)
    vocab, hidden = 30, 5
    params = init_params(hidden, vocab, seed=1, dtype="float64", classes=6)
    for name in params:
        params[name] = params[name] + rng.normal(0.0, 0.3, params[name].shape)
    bounds = class_bounds(np.arange(vocab, 0, -1) ** 2, 6)
    batch = make_batch([rng.integers(0, vocab, size=n) for n in (9, 6, 3)])
    _, grads = loss_and_grads(params, batch, "tanh", None, bounds)
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            old = value[index]
            value[index] = old + 1e-6
            up, _ = loss_and_grads(params, batch, "tanh", None, bounds)
            value[index] = old - 1e-6
            down, _ = loss_and_grads(params, batch, "tanh", None, bounds)
            value[index] = old
            numeric[index] = (up - down) / 2e-6 / batch.num_tokens
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-9, err_msg=name)


def test_a_numpy_class_model_trains_and_keeps_its_classes(tmp_path):
    rare = [f"w{i} w{i + 1} ." for i in range(0, 40, 2)] * 2
    text = " ".join(["the cat sat on the mat ."] * 40 + ["a dog ran to the park ."] * 10 + rare)
    config = ModelConfig(cell="rnn", hidden_size=16, output_classes=4, ngram_order=0)
    lm = train(text, config, TrainConfig(epochs=8, batch_size=8, optimizer="adam"))
    bounds = lm.engine.bounds.tolist()
    assert len(bounds) == 5 and bounds[-1] == len(lm.vocab)
    assert np.diff(bounds)[0] < np.diff(bounds)[-1] / 2  # placed by the training counts
    path = tmp_path / "rnn.st"
    lm.save(path)
    loaded = LanguageModel.load(path)
    assert loaded.engine.bounds.tolist() == bounds
    good, bad = loaded.score(
        ["the cat sat on the mat .", ". mat the on sat cat the"], scorer="neural"
    )
    assert good.logprob > bad.logprob + 3


@pytest.mark.parametrize("repeat_states", [False, True])
def test_the_torch_class_softmax_gradients_match_finite_differences(repeat_states):
    """The written-out backward of the word-in-class part (torch_output._WordInClass),
    through the whole class softmax, against torch.autograd.gradcheck in float64; with
    ``repeat_states`` several targets share a state (a prefix tree's children)."""
    needs_torch("gru")
    import torch

    from rnnlm.model.engines.torch_output import ClassSoftmax, log_probs

    torch.manual_seed(0)
    vocab, hidden, classes = 30, 5, 6
    layers = torch.nn.Module()
    layers.decoder = torch.nn.Linear(hidden, vocab).double()
    layers.classes = ClassSoftmax(hidden, classes, vocab).double()
    layers.classes.set_bounds(class_bounds(np.arange(vocab, 0, -1) ** 2, classes))
    layers.adaptive = None
    states = torch.randn(7, hidden, dtype=torch.float64, requires_grad=True)
    at = torch.tensor([0, 1, 1, 1, 4, 6, 6] if repeat_states else range(7))
    targets = torch.tensor([0, 29, 3, 3, 12, 25, 1])  # first and last class, a repeat

    def loss(states, weight, bias):
        layers.decoder.weight, layers.decoder.bias = weight, bias
        return log_probs(layers, states, at, targets)

    weight = layers.decoder.weight.detach().clone().requires_grad_()
    bias = layers.decoder.bias.detach().clone().requires_grad_()
    del layers.decoder.weight, layers.decoder.bias  # plain tensors from here on
    assert torch.autograd.gradcheck(loss, (states, weight, bias))
    # Asked for the states' gradient alone (the gradient-flow diagnostic), the same values.
    (both,) = torch.autograd.grad(loss(states, weight, bias).sum(), states)
    (alone,) = torch.autograd.grad(loss(states, weight.detach(), bias.detach()).sum(), states)
    torch.testing.assert_close(alone, both)
