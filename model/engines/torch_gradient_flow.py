"""dL_t/dh_{t-k} for the torch cells (see ``model/gradient_flow.py`` for the report).

The stack is unrolled one step at a time with the model's own weights: an ``nn.GRUCell`` or
``nn.LSTMCell`` per layer shares the parameters of that layer of the ``nn.GRU``/``nn.LSTM``,
so that every step's top-layer state is a tensor of its own that autograd can take a
gradient with respect to (the fused module hands back only the last state). This also keeps
off cuDNN, whose RNN kernel runs backward in training mode only (dropout on): the model stays
in eval mode, as scoring, which may share it at the same time, needs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rnnlm.model.batching import Batch
from rnnlm.model.engines.base import Engine
from rnnlm.model.engines.torch_output import log_probs
from rnnlm.model.engines.torch_rnn import TorchRNNEngine
from rnnlm.model.stopping import ShouldStop, check

_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def layer_cells(rnn: nn.RNNBase) -> list[nn.GRUCell | nn.LSTMCell]:
    """One cell per layer of ``rnn``, holding that layer's parameters (shared, not copied)."""
    kind = nn.LSTMCell if isinstance(rnn, nn.LSTM) else nn.GRUCell
    cells = []
    for layer in range(rnn.num_layers):
        size = rnn.input_size if layer == 0 else rnn.hidden_size
        # Built on the meta device: its own weights are replaced at once, never allocated.
        cell = kind(size, rnn.hidden_size, bias=rnn.bias, device="meta")
        for name in _WEIGHTS if rnn.bias else _WEIGHTS[:2]:
            setattr(cell, name, getattr(rnn, f"{name}_l{layer}"))
        cells.append(cell)
    return cells


def _run(cell: nn.GRUCell | nn.LSTMCell, inputs: torch.Tensor) -> list[torch.Tensor]:
    """The cell over (B, T, I) inputs from a zero state: its output h at each step, (B, H)."""
    rows, hidden = inputs.shape[0], cell.hidden_size
    # A leaf that asks for gradients, so that the states do even where weights are frozen.
    h = inputs.new_zeros(rows, hidden).requires_grad_(torch.is_grad_enabled())
    c = inputs.new_zeros(rows, hidden)
    out = []
    for t in range(inputs.shape[1]):
        if isinstance(cell, nn.LSTMCell):
            h, c = cell(inputs[:, t], (h, c))
        else:
            h = cell(inputs[:, t], h)
        out.append(h)
    return out


def torch_pair_norms(
    engine: Engine, batch: Batch, max_distance: int, should_stop: ShouldStop | None = None
) -> np.ndarray:
    """(K + 1, T, B) norms of dL_t/dh_{t-k} (top layer; an LSTM's h with its c held fixed),
    0 where t - k < 0. One backward pass per position t gives all its distances at once;
    the rows of the batch are independent sentences, so one pass serves every row."""
    assert isinstance(engine, TorchRNNEngine), "cells 'gru' and 'lstm' run on torch"
    model = engine.model
    model.eval()  # no dropout: the model as it scores
    device = engine.device
    inputs = torch.from_numpy(batch.inputs).to(device)  # (B, T)
    targets = torch.from_numpy(batch.targets).to(device)  # (B, T)
    real = torch.from_numpy(batch.mask).to(device)  # (B, T)
    rows, steps = batch.inputs.shape
    at = torch.arange(rows, device=device)
    cells = layer_cells(model.rnn)
    norms = np.zeros((max_distance + 1, steps, rows))
    with torch.inference_mode(False):
        with torch.no_grad():  # the layers below the top one do not depend on its states
            below = model.embedding(inputs)  # (B, T, E)
            for cell in cells[:-1]:
                below = torch.stack(_run(cell, below), dim=1)  # (B, T, H)
        with torch.enable_grad():
            states = _run(cells[-1], below)  # T x (B, H)
            losses = [  # L_t summed over the rows where t is a real position
                -log_probs(model, h, at, targets[:, t])[real[:, t]].sum()
                for t, h in enumerate(states)
            ]
            for t in range(steps):
                check(should_stop)
                first = max(0, t - max_distance)
                grads = torch.autograd.grad(losses[t], states[first : t + 1], retain_graph=True)
                by_distance = torch.stack(grads[::-1])  # (k + 1, B, H), distance 0 first
                norms[: t - first + 1, t] = by_distance.norm(dim=-1).double().cpu().numpy()
    return norms
