"""The output layer of the torch engines: a full softmax over the vocabulary, or the
class-factored softmax of the RNNLM toolkit (Mikolov et al. 2011, "Extensions of recurrent
neural network language model"): p(w | h) = p(class(w) | h) * p(w | class(w), h).

With C classes over V words, scoring a token costs H x (C + |class(w)|) multiply-adds
instead of H x V: with C near sqrt(V) the output layer, which is most of a full-softmax
model's work, becomes small. A class is a contiguous range of word ids (ids are ordered by
training frequency, most frequent first), with boundaries that give each class an equal
share of the summed square-root frequencies, as the toolkit does: frequent words sit in
small classes, rare ones share large classes that are seldom visited.

The third option is the adaptive softmax of Grave et al. 2017 ("Efficient softmax
approximation for GPUs"; ``nn.AdaptiveLogSoftmaxWithLoss``): a head over the most frequent
words plus one entry per tail cluster, and each cluster of rarer words behind a projection
4x narrower than the last. Exact and normalised too; the head is one product for every
position, a cluster's product runs only for the positions whose target falls in it.

The functions take the output layers as ``OutputLayers`` (the model, or its int8 copy):
``decoder`` (H -> V, None with an adaptive softmax), ``classes`` and ``adaptive`` (either
may be None). Every function takes states (n, H), and for the tokens to score, ``at`` (c,) (the row
of each token's state) and ``targets`` (c,) (its word id), so that one state may predict
several children of a prefix tree. The word-in-class part of the class softmax runs one
small product per class present (and three in the backward pass, ``_WordInClass``);
callers pass thousands of rows at a time so that the Python loop over classes stays cheap
next to the arithmetic.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from rnnlm.model.engines.word_classes import check_bounds, even_bounds

# Each tail cluster's projection is this many times narrower than the one before
# (torch's default; Grave et al. use 4 too).
ADAPTIVE_DIV_VALUE = 4.0


def adaptive_softmax(hidden_size: int, vocab_size: int, cutoffs: tuple[int, ...]):
    """The adaptive softmax of ``ModelConfig.adaptive_cutoffs`` for this vocabulary: the
    cut-offs at or past its end are dropped (the vocabulary can be smaller than the
    configured vocab_size), and when none is left the rarest word alone is the tail, so that
    the same configuration builds the same layer for any corpus. A bias on the head (the
    full softmax has one) carries the unigram prior."""
    kept = [c for c in cutoffs if c < vocab_size] or [vocab_size - 1]
    return nn.AdaptiveLogSoftmaxWithLoss(
        hidden_size, vocab_size, kept, div_value=ADAPTIVE_DIV_VALUE, head_bias=True
    )


class OutputLayers(Protocol):
    """What the functions below read of a model: its output layer, one of three kinds."""

    decoder: nn.Linear | None
    classes: ClassSoftmax | None
    adaptive: nn.AdaptiveLogSoftmaxWithLoss | None


class ClassSoftmax(nn.Module):
    """The class part of a factored softmax: a (H -> C) layer and the id ranges of the
    classes, kept as a buffer so that checkpoints carry them. The word part is the model's
    ordinary decoder (V rows, tied to the embedding where configured): class k uses rows
    bounds[k]:bounds[k+1]."""

    bounds: torch.Tensor  # (C + 1,) int64, a registered buffer

    def __init__(self, hidden_size: int, num_classes: int, vocab_size: int) -> None:
        super().__init__()
        self.layer = nn.Linear(hidden_size, num_classes)
        nn.init.uniform_(self.layer.weight, -0.1, 0.1)
        nn.init.zeros_(self.layer.bias)
        # Until set_bounds: equal ranges (a model loaded from a checkpoint gets its own).
        self.register_buffer("bounds", torch.from_numpy(even_bounds(vocab_size, num_classes)))
        self._vocab_size = vocab_size
        self._cache_key: tuple[int, ...] | None = None
        self._word_class: torch.Tensor | None = None

    def set_bounds(self, bounds: np.ndarray) -> None:
        if bounds.shape != tuple(self.bounds.shape):
            raise ValueError(f"class bounds must be {tuple(self.bounds.shape)}, got {bounds.shape}")
        self.bounds.copy_(torch.from_numpy(bounds))
        self.check_bounds()

    def check_bounds(self) -> None:
        """Refuse bounds that do not fit the vocabulary (``word_classes.check_bounds``)."""
        check_bounds(self.bounds.cpu().numpy(), self._vocab_size)

    def word_class(self) -> torch.Tensor:
        """(V,) the class of every word id, rebuilt when the bounds change (loading)."""
        key = tuple(self.bounds.tolist())
        if key != self._cache_key:
            sizes = self.bounds[1:] - self.bounds[:-1]  # (C,)
            classes = torch.arange(len(sizes), device=self.bounds.device)
            self._word_class = torch.repeat_interleave(classes, sizes)
            self._cache_key = key
        assert self._word_class is not None
        return self._word_class


def log_probs(
    layers: OutputLayers, states: torch.Tensor, at: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """ln p(targets[i] | states[at[i]]), (c,), in the states' dtype. Differentiable: the
    training loss is minus its sum."""
    if layers.adaptive is not None:  # the head for every row, a cluster for its rows only
        return layers.adaptive(states[at], targets).output
    decoder, classes = layers.decoder, layers.classes
    assert decoder is not None
    if classes is None:
        logits = decoder(states)  # (n, V)
        return logits[at, targets] - torch.logsumexp(logits, dim=-1)[at]
    target_class = classes.word_class()[targets]  # (c,)
    class_logits = classes.layer(states)  # (n, C)
    class_part = class_logits[at, target_class] - torch.logsumexp(class_logits, dim=-1)[at]
    # The word part with the tokens sorted by class, so that each class's tokens are one
    # slice of the rows.
    order = torch.argsort(target_class)  # (c,)
    sorted_classes, sorted_targets = target_class[order], targets[order]  # (c,), (c,)
    present, counts = torch.unique_consecutive(sorted_classes, return_counts=True)
    word_part = _WordInClass.apply(
        states[at[order]],  # (c, H)
        decoder.weight,
        decoder.bias,
        sorted_targets,
        sorted_targets - classes.bounds[sorted_classes],  # their places in their classes
        present.tolist(),
        counts.tolist(),
        torch.diff(classes.bounds).tolist(),  # (C,) words per class
    )
    return class_part + torch.empty_like(class_part).index_put((order,), word_part)


class _WordInClass(torch.autograd.Function):
    """ln p(t[i] | class(t[i]), h[i]), (c,): the log-softmax of h[i] . weight[w] + bias[w]
    over the words w of t[i]'s class, at t[i]; for tokens sorted by class: ``present`` the
    classes in the batch in order, ``counts`` their tokens, ``sizes`` every class's words
    (the split of the weight's rows).

    Written out with its backward because autograd's graph of a per-class loop costs more
    than the loop's arithmetic (several nodes a class, ~100 classes a step): here a class is
    a product, a log-softmax and a gather forward, an exp and three products backward, each
    reading and writing views made by one ``split`` per tensor; the target words' part of
    the backward is one vectorised pass, accumulated into the same gradient buffers."""

    @staticmethod
    def forward(ctx, h, weight, bias, targets, in_class, present, counts, sizes):
        # h (c, H), weight (V, H), bias (V,), targets and in_class (c,): word ids, and
        # their places within their classes.
        log_probs = h.new_empty(h.shape[0], 1)  # (c, 1)
        weights, biases = weight.split(sizes), bias.split(sizes)
        log_softmaxes = []
        for k, h_k, at_k, out_k in zip(
            present, h.split(counts), in_class[:, None].split(counts), log_probs.split(counts),
            strict=True,
        ):  # fmt: skip
            logits = F.linear(h_k, weights[k], biases[k])  # (r, |k|)
            log_softmax = torch.log_softmax(logits, dim=1)
            torch.gather(log_softmax, 1, at_k, out=out_k)
            log_softmaxes.append(log_softmax)
        # The log-softmaxes as saved tensors, so that autograd frees them after backward.
        ctx.save_for_backward(h, weight, targets, *log_softmaxes)
        ctx.classes = (present, counts, sizes)
        return log_probs[:, 0]

    @staticmethod
    @once_differentiable  # the products below write into buffers: no graph of their own
    def backward(ctx, grad):  # grad (c,)
        h, weight, targets, *log_softmaxes = ctx.saved_tensors
        present, counts, sizes = ctx.classes
        want_h, want_weight, want_bias = ctx.needs_input_grad[:3]
        # With p the class softmax of token i and g its gradient: dh = g (W[t] - p W_k),
        # dW = onehot(t)^T (g h) - p^T (g h), db = onehot(t)^T g - p^T g; rows of words in
        # no present class get 0. Only what is asked for is computed (the gradient-flow
        # diagnostic asks for the states' alone).
        grad = grad.contiguous()
        scaled_h = h * grad[:, None]  # (c, H)
        dh = torch.empty_like(h) if want_h else None  # every row is in a present class
        dweight = torch.zeros_like(weight) if want_weight else None
        dbias = weight.new_zeros(weight.shape[0]) if want_bias else None
        weights = weight.split(sizes)
        dweights = dweight.split(sizes) if dweight is not None else None
        dbiases = dbias.split(sizes) if dbias is not None else None
        # Per class, the rows of -g h and -g (for the p^T terms), and of dh.
        minus_h = scaled_h.neg().split(counts) if dweights is not None else None
        minus_grad = grad.neg().split(counts) if dbiases is not None else None
        rows = dh.split(counts) if dh is not None else None
        for i, (k, log_softmax) in enumerate(zip(present, log_softmaxes, strict=True)):
            p = log_softmax.exp()  # (r, |k|)
            if rows is not None:
                torch.mm(p, weights[k], out=rows[i])
            p_t = p.t()  # (|k|, r)
            if dweights is not None and minus_h is not None:
                torch.mm(p_t, minus_h[i], out=dweights[k])
            if dbiases is not None and minus_grad is not None:
                torch.mv(p_t, minus_grad[i], out=dbiases[k])
        # The target words' part; index_put_ accumulates deterministically on a GPU too.
        if dh is not None:
            dh = torch.sub(weight[targets], dh).mul_(grad[:, None])
        if dweight is not None:
            dweight.index_put_((targets,), scaled_h, accumulate=True)
        if dbias is not None:
            dbias.index_put_((targets,), grad, accumulate=True)
        return dh, dweight, dbias, None, None, None, None, None


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or float64 where it is (a float64 model keeps its precision)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def full_log_probs(layers: OutputLayers, states: torch.Tensor) -> torch.Tensor:
    """ln p(w | states[i]) for every word, (n, V), float32 (float64 for a float64 model),
    on the states' device: what decoding needs where it reads every word (greedy, beam
    search, filtered sampling; under ``torch.no_grad`` there). Differentiable. Word classes
    in a few vectorised passes instead of one per class: each class shifted by its own
    maximum, so no class sum underflows (``torch.segment_reduce``: the same sums every run,
    on a GPU too); an adaptive softmax gives torch's own log_prob."""
    if layers.adaptive is not None:
        return at_least_float32(layers.adaptive.log_prob(states))
    decoder, classes = layers.decoder, layers.classes
    assert decoder is not None
    logits = at_least_float32(decoder(states))  # (n, V)
    if classes is None:
        return torch.log_softmax(logits, dim=-1)
    word_class = classes.word_class()  # (V,)
    class_lp = torch.log_softmax(at_least_float32(classes.layer(states)), dim=-1)  # (n, C)
    sizes = (classes.bounds[1:] - classes.bounds[:-1]).expand_as(class_lp).contiguous()
    # A shift, which changes no probability: no gradient through it.
    peaks = torch.segment_reduce(logits.detach(), "max", lengths=sizes, axis=1)  # (n, C)
    shifted = logits - peaks[:, word_class]  # <= 0, 0 at each class's best
    sums = torch.segment_reduce(shifted.exp(), "sum", lengths=sizes, axis=1)  # (n, C)
    return shifted + (class_lp - sums.log())[:, word_class]
