"""Regularisation and the learning-rate schedule: locked and embedding dropout, tied
weights, weight decay (torch and NumPy optimizers), the plateau rule and its resumption,
and the best validation epoch as the finished model."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlm.model import Corpus, LanguageModel, ModelConfig, TrainConfig, evaluate, train
from rnnlm.model.batching import make_batch
from rnnlm.model.dataset import prepare
from rnnlm.model.engines import create_engine, numpy_optim, torch_available
from rnnlm.model.state import PLATEAU_THRESHOLD, TrainingState, plateau_reached

needs_torch = pytest.mark.skipif(not torch_available(), reason="needs torch")
VOCAB = 30
# A model that overfits 10k characters of pydoc text from epoch 3 on (3 steps an epoch):
# its validation loss stalls and rises, which the plateau and best-epoch tests need.
OVERFIT_CHARS = 10_000
OVERFIT_MODEL = ModelConfig(cell="rnn", vocab_size=500, hidden_size=64, ngram_order=0)
OVERFIT_TRAIN = {"optimizer": "adam", "learning_rate": 0.01, "seed": 1, "valid_fraction": 0.2}


def random_batch(seed: int = 0, rows: int = 6, width: int = 9):
    rng = np.random.default_rng(seed)
    return make_batch([rng.integers(3, VOCAB, size=width) for _ in range(rows)])


# --------------------------------------------------------------------------- dropout


@needs_torch
def test_locked_dropout_keeps_one_mask_per_sentence():
    import torch

    from rnnlm.model.engines.torch_dropout import locked_dropout

    torch.manual_seed(0)
    x = torch.ones(4, 7, 50)  # (B, T, C)
    y = locked_dropout(x, 0.4, training=True)
    assert torch.equal(y, y[:, :1].expand_as(y))  # the same positions at every time step
    assert y.unique().tolist() == pytest.approx([0.0, 1 / 0.6])  # dropped or scaled up
    assert not torch.equal(y[0, 0], y[1, 0])  # each sentence has its own mask
    assert locked_dropout(x, 0.4, training=False) is x


@needs_torch
def test_the_model_drops_the_same_embedding_units_at_every_step():
    """Through the model: what reaches the GRU is the embedding times a per-sentence mask."""
    import torch

    config = ModelConfig(dropout=0.5, embed_size=16, hidden_size=16)
    engine = create_engine(config, VOCAB, device="cpu")
    model = engine.model.train()
    seen = []
    model.rnn.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    inputs = torch.from_numpy(random_batch().inputs)
    torch.manual_seed(3)
    model.hidden_states(inputs)
    ratio = seen[0] / model.embedding(inputs)  # (B, T, E): 0 or 2, by sentence and unit
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio))
    assert set(ratio.round(decimals=4).unique().tolist()) == {0.0, 2.0}


@needs_torch
def test_embed_dropout_drops_whole_words_and_only_in_training():
    import torch

    from rnnlm.model.engines.torch_dropout import embedded_dropout

    emb = torch.nn.Embedding(VOCAB, 8)
    inputs = torch.tensor([[3, 4, 5, 3, 6], [5, 3, 7, 7, 4]])  # (B, T), words repeat
    torch.manual_seed(1)
    out = embedded_dropout(emb, inputs, 0.5, training=True)
    ratio = (out / emb(inputs)).detach()  # (B, T, E)
    assert torch.allclose(ratio, ratio[..., :1].expand_as(ratio))  # whole rows
    per_position = ratio[..., 0]
    for word in inputs.unique():  # a word is dropped (or kept) everywhere in the batch
        values = per_position[inputs == word].unique()
        assert len(values) == 1 and values.item() in (0.0, pytest.approx(2.0))
    assert (per_position == 0).any() and (per_position != 0).any()
    assert torch.equal(embedded_dropout(emb, inputs, 0.5, training=False), emb(inputs))


@needs_torch
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_scoring_is_deterministic_after_training_steps(cell):
    config = ModelConfig(cell=cell, dropout=0.5, embed_dropout=0.3, embed_size=8, hidden_size=8)
    engine = create_engine(config, VOCAB, device="cpu")
    engine.configure_training("adam", 0.01, 5.0, None)
    batch = random_batch()
    engine.train_step(batch)  # leaves the module in training mode
    first = engine.token_log_probs(batch)
    engine.train_step(batch)
    assert np.array_equal(engine.token_log_probs(batch), engine.token_log_probs(batch))
    assert not np.array_equal(first, engine.token_log_probs(batch))  # it did train


# --------------------------------------------------------------------------- tied weights


def test_dropout_defaults_by_cell():
    assert ModelConfig().dropout == 0.3 and ModelConfig(cell="lstm").dropout == 0.3
    assert ModelConfig(cell="rnn").dropout == 0.0
    assert ModelConfig(dropout=0.0).dropout == 0.0
    assert ModelConfig.from_dict(ModelConfig().to_dict()).dropout == 0.3


def test_tie_weights_resolves_from_the_sizes():
    assert ModelConfig().tie_weights is True  # 128 == 128
    assert ModelConfig(embed_size=64, hidden_size=128).tie_weights is False
    assert ModelConfig(cell="rnn").tie_weights is False
    assert ModelConfig(tie_weights=False).tie_weights is False
    stored = ModelConfig(embed_size=32, hidden_size=32).to_dict()
    assert stored["tie_weights"] is True and ModelConfig.from_dict(stored).tie_weights is True
    with pytest.raises(ValueError, match="tie_weights needs embed_size == hidden_size"):
        ModelConfig(tie_weights=True, embed_size=64, hidden_size=128)


@needs_torch
def test_a_tied_model_shares_one_matrix():
    engine = create_engine(ModelConfig(embed_size=8, hidden_size=8), VOCAB)
    assert engine.model.decoder.weight is engine.model.embedding.weight


# --------------------------------------------------------------------------- weight decay


@pytest.mark.parametrize("cell", ["rnn", pytest.param("gru", marks=needs_torch)])
def test_adamw_decay_shrinks_the_weights_apart_from_the_adam_step(cell):
    """AdamW's update is Adam's plus -lr * decay * weight: two engines that differ only in
    the decay differ after one step by exactly that."""
    config = ModelConfig(cell=cell, embed_size=8, hidden_size=8)
    lr, decay = 0.01, 0.5
    engines = [create_engine(config, VOCAB, seed=4, device="cpu") for _ in range(2)]
    before = engines[0].state_dict()
    for engine, wd in zip(engines, (0.0, decay), strict=True):
        engine.configure_training("adamw", lr, None, None, weight_decay=wd)
        engine.train_step(random_batch())
    plain, decayed = (e.state_dict() for e in engines)
    for name, weight in before.items():
        if not np.issubdtype(weight.dtype, np.floating):
            continue  # an integer buffer (word class bounds), not a weight
        np.testing.assert_allclose(
            decayed[name] - plain[name], -lr * decay * weight, atol=1e-6, err_msg=name
        )


@needs_torch
@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam", "adamw"])
def test_numpy_optimizers_decay_as_torch_does(optimizer):
    import torch

    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 4))
    grads = [rng.normal(size=(3, 4)) for _ in range(3)]
    param = {"w": start.copy()}
    ours = numpy_optim.OPTIMIZER_CLASSES[optimizer](param, 0.01, weight_decay=0.1)
    theirs_param = torch.nn.Parameter(torch.from_numpy(start.copy()))
    engine = create_engine(ModelConfig(embed_size=4, hidden_size=4), VOCAB, device="cpu")
    engine.model = torch.nn.ParameterList([theirs_param])  # the optimizer's only parameter
    engine.configure_training(optimizer, 0.01, None, None, weight_decay=0.1)
    for grad in grads:
        ours.update({"w": grad})
        theirs_param.grad = torch.from_numpy(grad.copy())
        engine.optimizer.step()
    np.testing.assert_allclose(param["w"], theirs_param.detach().numpy(), rtol=1e-10)


@needs_torch
@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam", "adamw"])
def test_numpy_optimizers_update_parameters_of_several_shapes_as_torch_does(optimizer):
    # The updates share two scratch arrays, sized for the largest parameter: a smaller one
    # updated after it must not read what the larger one left there.
    import torch

    rng = np.random.default_rng(1)
    shapes = {"big": (5, 6), "small": (3,), "middle": (4, 2)}
    start = {name: rng.normal(size=shape) for name, shape in shapes.items()}
    params = {name: value.copy() for name, value in start.items()}
    ours = numpy_optim.OPTIMIZER_CLASSES[optimizer](params, 0.01)
    theirs = {
        name: torch.nn.Parameter(torch.from_numpy(value.copy())) for name, value in start.items()
    }
    engine = create_engine(ModelConfig(embed_size=4, hidden_size=4), VOCAB, device="cpu")
    engine.model = torch.nn.ParameterList(theirs.values())
    engine.configure_training(optimizer, 0.01, None, None, weight_decay=0.0)
    for _ in range(3):
        grads = {name: rng.normal(size=shape) for name, shape in shapes.items()}
        ours.update(grads)
        for name, grad in grads.items():
            theirs[name].grad = torch.from_numpy(grad.copy())
        engine.optimizer.step()
    for name in shapes:
        np.testing.assert_allclose(params[name], theirs[name].detach().numpy(), rtol=1e-10)


def test_weight_decay_defaults_per_optimizer():
    assert TrainConfig(optimizer="adamw").effective_weight_decay == 0.1
    assert TrainConfig(optimizer="adam").effective_weight_decay == 0.0
    assert TrainConfig(optimizer="rmsprop", weight_decay=1e-6).effective_weight_decay == 1e-6


# --------------------------------------------------------------------------- plateau rule


def test_the_rate_is_cut_only_after_lr_patience_epochs_without_a_new_best():
    config = TrainConfig(lr_patience=2)
    state = TrainingState(learning_rate=0.01)
    tiny_gain = 4.0 * (1 - PLATEAU_THRESHOLD / 2)  # below the threshold: noise, not progress
    losses = [5.0, 4.0, 4.2, tiny_gain, 3.0, 3.1, 3.05, 3.2, 2.0]
    cuts = [plateau_reached(state, loss, config) for loss in losses]
    assert cuts == [False, False, False, True, False, False, True, False, False]
    assert (state.plateau_loss, state.plateau_epochs) == (2.0, 0)
    once = TrainConfig(lr_patience=1)
    state = TrainingState(learning_rate=0.01)
    assert [plateau_reached(state, x, once) for x in (5.0, 5.1, 5.2, 4.0)] == [
        False,
        True,
        True,
        False,
    ]


def _expected_rates(history: list[dict], start: float, config: TrainConfig) -> list[float]:
    """Replay the plateau rule over a run's validation losses."""
    state, rate, rates = TrainingState(learning_rate=start), start, []
    for epoch in history:
        if plateau_reached(state, epoch["valid_loss"], config):
            rate *= config.lr_decay
        rates.append(rate)
    return rates


def test_plateau_state_survives_resuming_and_the_best_epoch_is_kept(pydoc_text):
    """An overfitting run without early stopping: rates follow the plateau rule, a run
    resumed from a checkpoint taken while a plateau was being counted ends identically,
    and the finished model has the best validation epoch's weights, not the last one's."""
    corpus = Corpus.from_text(pydoc_text[:OVERFIT_CHARS])
    tc = TrainConfig(epochs=8, patience=None, lr_patience=2, checkpoint_every=2, **OVERFIT_TRAIN)
    saved = []
    full = train(
        corpus,
        OVERFIT_MODEL,
        tc,
        on_checkpoint=lambda lm: saved.append(lm.to_bytes(resumable=True)),
    )
    state, history = full.training_state, full.training_state.history
    assert state.status == "completed" and state.best_epoch < len(history)
    assert [h["learning_rate"] for h in history] == pytest.approx(
        _expected_rates(history, 0.01, tc)
    )
    assert any(h["learning_rate"] < 0.01 for h in history)
    valid = prepare(corpus, OVERFIT_MODEL, tc, full).valid
    loss, tokens = evaluate(full.engine, valid)
    assert loss / tokens == pytest.approx(min(h["valid_loss"] for h in history), rel=1e-6)

    counting = [LanguageModel.from_bytes(b) for b in saved[:-1]]
    restored = next(m for m in counting if m.training_state.plateau_epochs == 1)
    resumed = train(corpus, resume_from=restored)
    assert resumed.training_state.history == history
    assert resumed.training_state.plateau_loss == state.plateau_loss
