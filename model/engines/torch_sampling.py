"""The decoding loop's token choice in torch (``generation.choose_tokens`` for the torch
engines): every row of a step at once, on the model's device, with the interpreter lock
released for each pass, so that the server's other threads (sending the tokens already
made) run beside it instead of waiting.

A step's output is kept as the top layer's states (``StepOutputs``); the (n, V) log-probs
are computed only for the rows that need them all: greedy and beam rows, and sampling with
temperature, top-k or top-p. Plain sampling from a class-factored model (the default output
layer for vocabularies of 1,000 words or more) draws the class, then the word within it
(``_sample_by_class``): exactly the same distribution, for a few hundred words' products
per row instead of V.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnlm.model.engines.torch_output import ClassSoftmax, OutputLayers, full_log_probs
from rnnlm.model.generation import GenerationConfig
from rnnlm.model.vocab import END_ID, START_ID, UNK_ID

# Words never produced (generation's module doc); END_ID too while a sentence is short.
_NEVER = (UNK_ID, START_ID)
_BELOW_ONE = float(np.nextafter(1.0, 0.0))  # the largest float64 below 1
# The most values (rows x largest class x H) the class sampler gathers at once: 4 MB of
# float32, a few hundred microseconds of copying at most.
GATHER_LIMIT = 1 << 20


class StepOutputs:
    """One decoding step's rows: their top-layer states (n, H), and their log-probs over
    the vocabulary (n, V), computed the first time they are read."""

    def __init__(
        self, layers: OutputLayers, states: torch.Tensor, logp: torch.Tensor | None = None
    ) -> None:
        self.layers, self.states, self._logp = layers, states, logp

    def __len__(self) -> int:
        return len(self.states)

    def __getitem__(self, rows) -> StepOutputs:
        """Some rows (a slice or a list of indices), in the given order."""
        logp = None if self._logp is None else self._logp[rows]
        return StepOutputs(self.layers, self.states[rows], logp)

    def log_probs(self) -> torch.Tensor:
        """ln p(w | row) for every word, (n, V) float32 (float64 for a float64 model)."""
        if self._logp is None:
            with torch.no_grad():
                self._logp = full_log_probs(self.layers, self.states)
        return self._logp

    @staticmethod
    def cat(parts: Sequence[StepOutputs]) -> StepOutputs:
        states = torch.cat([p.states for p in parts])
        known = all(p._logp is not None for p in parts)
        logp = torch.cat([p._logp for p in parts]) if known else None  # type: ignore[misc]
        return StepOutputs(parts[0].layers, states, logp)


def choose_tokens(
    outputs: StepOutputs,
    produced: np.ndarray,
    configs: Sequence[GenerationConfig],
    uniforms: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The next token of each row and its log-prob, as ``generation.choose_tokens`` (same
    rules): ((n,) int64, (n,) float) NumPy."""
    n = len(outputs)
    chosen, token_logp = np.empty(n, dtype=np.int64), np.empty(n)
    short = produced < np.array([c.min_length for c in configs])
    by_class = [i for i, c in enumerate(configs) if _plain(c)] if _factored(outputs) else []
    if by_class:
        tokens, logps = _sample_by_class(
            outputs.layers, outputs.states[by_class], short[by_class], uniforms[by_class]
        )
        chosen[by_class], token_logp[by_class] = tokens, logps
    rest = sorted(set(range(n)).difference(by_class))
    if rest:
        part = outputs if len(rest) == n else outputs[rest]
        tokens_t, logps_t = _choose_from_log_probs(
            part.log_probs(), short[rest], [configs[i] for i in rest], uniforms[rest]
        )
        chosen[rest], token_logp[rest] = tokens_t, logps_t
    return chosen, token_logp


def _plain(config: GenerationConfig) -> bool:
    """Sampling from the model's own distribution: no temperature, top-k or top-p."""
    return (
        config.method == "sample"
        and config.temperature == 1.0
        and not config.top_k
        and config.top_p >= 1.0
    )


def _factored(outputs: StepOutputs) -> bool:
    """A class softmax whose word rows can be read (not an int8 copy)."""
    layers = outputs.layers
    decoder = layers.decoder
    return layers.classes is not None and isinstance(getattr(decoder, "weight", None), torch.Tensor)


@dataclass(frozen=True)
class _ClassPlan:
    """What the class sampler needs of a model's class ranges, worked out once per bounds.

    The words never produced (and SENTENCE_END, while a sentence is short) sit in the
    first classes (their ids are the vocabulary's first): ``classes`` k0:k1, ids lo:hi. Their
    logits are grouped (K, M) by class, padded with -inf, so that one logsumexp gives every
    class's total and one more the part a row may produce."""

    edges: list[int]  # (C + 1,) class k holds ids edges[k]:edges[k + 1]
    classes: slice  # k0:k1, the classes holding a word that may not be produced
    ids: slice  # lo:hi, their words
    group: torch.Tensor  # (K * M,) into the range's logits; hi - lo: the -inf padding
    shape: tuple[int, int]  # (K, M)
    masks: torch.Tensor  # (2, K, M) float64: -inf where a word may not be produced, else 0;
    # [0] for a row that may end its sentence, [1] for one that may not yet
    bans: dict[int, tuple[list[int], int | None]]  # class -> (never's places in it, END's)


def _class_plan(classes: ClassSoftmax) -> _ClassPlan:
    """``classes``' plan, rebuilt when its bounds change (loading, training)."""
    edges = classes.bounds.tolist()  # the values, however they were written (C + 1 ints)
    key = (classes.bounds.device, edges)
    cached = classes.__dict__.get("_sampling_plan")  # (not a module's attribute lookup)
    if cached is not None and cached[0] == key:
        return cached[1]
    of = [bisect.bisect_right(edges, i) - 1 for i in (*_NEVER, END_ID)]
    k0, k1 = min(of), max(of) + 1
    lo, hi = edges[k0], edges[k1]
    width = max(edges[k + 1] - edges[k] for k in range(k0, k1))
    group, masks = [], np.zeros((2, k1 - k0, width))
    bans: dict[int, tuple[list[int], int | None]] = {}
    for row, k in enumerate(range(k0, k1)):
        start, size = edges[k], edges[k + 1] - edges[k]
        group += [start - lo + j if j < size else hi - lo for j in range(width)]
        never = [i - start for i in _NEVER if start <= i < start + size]
        end = END_ID - start if start <= END_ID < start + size else None
        masks[:, row, never] = -np.inf
        if end is not None:
            masks[1, row, end] = -np.inf
        bans[k] = (never, end)
    device = classes.bounds.device
    plan = _ClassPlan(
        edges,
        slice(k0, k1),
        slice(lo, hi),
        torch.tensor(group, device=device),
        (k1 - k0, width),
        torch.from_numpy(masks).to(device),
        bans,
    )
    classes.__dict__["_sampling_plan"] = (key, plan)
    return plan


def _sample_by_class(
    layers: OutputLayers, states: torch.Tensor, short: np.ndarray, uniforms: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Plain sampling of (m,) rows of a class-factored model, states (m, H): each row's
    class drawn from p(c) times the share of c it may produce, then its word from p(w | c)
    over the words it may produce, with one uniform (the part of it left in the class
    chosen): the same token as inverting the whole distribution, whose ids run class by
    class. About 45 torch operations whatever m: on a CPU each costs more than its
    arithmetic at these sizes, so their number is what the step's time is."""
    classes, decoder = layers.classes, layers.decoder
    assert classes is not None and decoder is not None
    plan = _class_plan(classes)
    device = states.device
    m = len(states)
    with torch.no_grad():
        class_logits = classes.layer(states)  # (m, C); an int8 layer where quantized
        class_lp = torch.log_softmax(class_logits.double(), dim=-1)
        # The classes holding words never produced count with the part of them a row may
        # produce (nothing, where that is none of their words): their ln share is added.
        special = F.linear(states, decoder.weight[plan.ids], decoder.bias[plan.ids]).double()
        if plan.shape[0] > 1:  # more than one such class: each its own group, -inf padded
            special = F.pad(special, (0, 1), value=-torch.inf)[:, plan.group]
        grouped = special.view(m, *plan.shape)  # (m, K, M)
        masks = plan.masks[torch.from_numpy(short).to(device, torch.int64)]  # (m, K, M)
        share = (grouped + masks).logsumexp(-1) - grouped.logsumexp(-1)  # (m, K)
        draw_lp = class_lp.clone()
        draw_lp[:, plan.classes] += share
        # float64 for the class draw ((m, C) is small): a uniform below 1 stays so, and a
        # uniform u < 1 times the total stays below it: the first class whose cumulative
        # mass passes it has mass of its own. Shifted by each row's largest, so that the
        # total is at least 1 even where what may be produced is e^-800 of the row.
        class_p = (draw_lp - draw_lp.amax(dim=1, keepdim=True)).exp()
        cdf = class_p.cumsum(dim=1)  # (m, C)
        u = torch.from_numpy(np.asarray(uniforms, dtype=np.float64)).to(device)
        target = u[:, None] * cdf[:, -1:]  # (m, 1)
        drawn = torch.searchsorted(cdf, target, right=True).clamp_(max=len(plan.edges) - 2)
        # What is left of the uniform inside the class drawn: in [0, 1) but for rounding,
        # which the clamp takes back below 1 (so that it stays among the words allowed).
        before = F.pad(cdf, (1, 0)).gather(1, drawn)  # (m, 1): the mass of the classes before
        rest = ((target - before) / class_p.gather(1, drawn)).clamp_(0.0, _BELOW_ONE)  # (m, 1)
        chosen = drawn[:, 0].tolist()
        logits = _class_word_logits(decoder, states, chosen, plan.edges).double()  # (m, M)
        within_lp = torch.log_softmax(logits, dim=-1)  # (m, M): ln p(w | c); -inf pads
        for row, k in enumerate(chosen):  # rows in a class holding a word not to produce
            if k in plan.bans:
                never, end = plan.bans[k]
                logits[row, [*never, end] if short[row] and end is not None else never] = -torch.inf
        # The words a row may produce, its largest at 1 (as the classes above).
        weights = (logits - logits.amax(dim=1, keepdim=True)).exp()
        word_cdf = weights.cumsum(dim=1)  # (m, M)
        j = torch.searchsorted(word_cdf, rest * word_cdf[:, -1:], right=True)  # (m, 1)
        # Within the class whatever the numbers (a network gone to NaN must not stop the
        # loop's other requests with an index error).
        sizes = [plan.edges[k + 1] - plan.edges[k] for k in chosen]
        j = torch.minimum(j, torch.tensor(sizes, device=device)[:, None] - 1)
        first = torch.tensor([plan.edges[k] for k in chosen], device=device)
        tokens = first + j[:, 0]
        logp = (class_lp.gather(1, drawn) + within_lp.gather(1, j))[:, 0]
    return tokens.cpu().numpy(), logp.cpu().numpy()


def _class_word_logits(
    decoder: nn.Linear,
    states: torch.Tensor,
    chosen: list[int],
    edges: list[int],
) -> torch.Tensor:
    """The logits of the words of each row's class ``chosen`` (m, M), padded with -inf to
    the largest class chosen. Several rows: their classes' decoder rows gathered (m, M, H),
    a fixed few operations instead of a product a row (each operation costs more than its
    arithmetic at these sizes), unless that copy would exceed ``GATHER_LIMIT`` values (a
    large vocabulary's rarest classes hold thousands of words): then, as for one row, a
    product a row with a slice of the decoder's rows (no copy of them)."""
    weight, bias = decoder.weight, decoder.bias  # (V, H), (V,)
    if len(chosen) == 1:
        lo, hi = edges[chosen[0]], edges[chosen[0] + 1]
        return F.linear(states, weight[lo:hi], bias[lo:hi])  # (1, M)
    sizes = np.array([edges[k + 1] - edges[k] for k in chosen])[:, None]  # (m, 1)
    if len(chosen) * int(sizes.max()) * weight.shape[1] > GATHER_LIMIT:
        parts = [
            F.linear(states[i], weight[edges[k] : edges[k + 1]], bias[edges[k] : edges[k + 1]])
            for i, k in enumerate(chosen)
        ]
        return nn.utils.rnn.pad_sequence(parts, batch_first=True, padding_value=-torch.inf)
    starts = np.array([edges[k] for k in chosen])[:, None]  # (m, 1)
    offsets = np.arange(sizes.max())[None, :]  # (1, M)
    valid = offsets < sizes  # (m, M)
    ids = torch.from_numpy(np.where(valid, starts + offsets, starts)).to(states.device)
    rows = weight.index_select(0, ids.view(-1)).view(*ids.shape, -1)  # (m, M, H)
    # A product and a sum, not bmm: a batch of matrix-vector products is ~4x slower on CPUs.
    logits = (rows * states[:, None, :]).sum(dim=-1) + bias.take(ids)  # (m, M)
    return logits.masked_fill_(torch.from_numpy(~valid).to(states.device), -torch.inf)


def _choose_from_log_probs(
    logp: torch.Tensor,
    short: np.ndarray,
    configs: Sequence[GenerationConfig],
    uniforms: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Every rule on the rows' whole distributions, logp (n, V): greedy rows take the best
    allowed token, sampling rows apply temperature, top-k and top-p, then invert the
    cumulative distribution at their uniform."""
    n = len(logp)
    device = logp.device
    scores = logp.clone()
    scores[:, list(_NEVER)] = -torch.inf
    if short.any():
        scores[torch.from_numpy(short).to(device), END_ID] = -torch.inf
    greedy = [c.method == "greedy" for c in configs]
    chosen = torch.empty(n, dtype=torch.int64, device=device)
    if any(greedy):
        rows = torch.tensor(greedy, device=device)
        chosen[rows] = scores[rows].argmax(dim=1)
    sampled = [i for i, g in enumerate(greedy) if not g]
    if sampled:
        chosen[sampled] = _sample(scores[sampled], [configs[i] for i in sampled], uniforms[sampled])
    token_logp = logp.gather(1, chosen[:, None])[:, 0]
    return chosen.cpu().numpy(), token_logp.cpu().numpy()


def _sample(
    scores: torch.Tensor, configs: Sequence[GenerationConfig], uniforms: np.ndarray
) -> torch.Tensor:
    """Temperature, top-k and top-p, then the inverse CDF at each row's uniform; (m,)."""
    vocab_size = scores.shape[1]
    device = scores.device
    temperature = [c.temperature for c in configs]
    if any(t != 1.0 for t in temperature):  # divided in float64, as NumPy's rows are
        t = torch.tensor(temperature, dtype=torch.float64, device=device)[:, None]
        scores = (scores.double() / t).to(scores.dtype)
    top_ks = {c.top_k for c in configs if c.top_k}
    if top_ks:
        allowed_count = torch.isfinite(scores).sum(dim=1).tolist()
        for k in top_ks:  # one pass per distinct top_k
            these = [i for i, c in enumerate(configs) if c.top_k == k and k < allowed_count[i]]
            if these:
                part = scores[these]
                kth = part.topk(k, dim=1).values[:, -1:]  # (r, 1): the k-th best
                scores[these] = part.masked_fill(part < kth, -torch.inf)
    # Unnormalised probabilities: the draw below scales by each row's total anyway.
    probs = torch.exp(scores - scores.amax(dim=1, keepdim=True))
    nucleus = [i for i, c in enumerate(configs) if c.top_p < 1.0]
    if nucleus:
        top_p = torch.tensor([configs[i].top_p for i in nucleus], dtype=torch.float64)
        part = probs[nucleus]
        part /= part.sum(dim=1, keepdim=True)
        ordered, order = part.sort(dim=1, descending=True, stable=True)
        below = ordered.cumsum(dim=1).double() < top_p.to(device)[:, None]
        keep = below.sum(dim=1) + 1
        ranks = torch.empty_like(order).scatter_(
            1, order, torch.arange(vocab_size, device=device).expand(len(nucleus), -1)
        )
        part = torch.where(ranks < keep[:, None], part, 0.0)
        probs[nucleus] = part / part.sum(dim=1, keepdim=True)
    # float64: a uniform just below 1 must not reach the total (past every kept token).
    cdf = probs.double().cumsum(dim=1)  # (m, V)
    targets = torch.from_numpy(np.asarray(uniforms, dtype=np.float64)).to(device)
    index = torch.searchsorted(cdf, (targets * cdf[:, -1])[:, None], right=True)
    return torch.minimum(index, _last_positive(probs))[:, 0]


def _last_positive(weights: torch.Tensor) -> torch.Tensor:
    """(m, 1) the last position of each row (m, n) with a weight above 0: where a draw
    that rounding took past the total belongs."""
    positions = torch.arange(weights.shape[1], device=weights.device)
    return torch.where(weights > 0, positions, -1).amax(dim=1, keepdim=True)


class TorchDecoding:
    """The decoding loop's side of the torch engines (``Engine.decoding_step`` and the
    methods that read its output, the decoding state's rows); ``TorchRNNEngine`` holds
    the network."""

    model: Any  # the engine's RNNModel
    _serving: Any  # the network that serves: the model, or its int8 copy
    _tensor: Callable[[np.ndarray], torch.Tensor]  # NumPy to the model's device

    @torch.inference_mode()
    def step(self, tokens: np.ndarray, state):
        outputs, state = self.decoding_step(tokens, state)
        return self.numpy_log_probs(outputs), state

    def decoding_step(self, tokens: np.ndarray, state) -> tuple[StepOutputs, object]:
        if self.model.training:  # (train() walks every module: not once a token)
            self.model.eval()
        serving = self._serving
        with torch.no_grad():
            out, state = serving.hidden_states(self._tensor(tokens)[:, None], state)  # (B, 1, H)
        return StepOutputs(serving, out[:, 0]), state

    choose_tokens = staticmethod(choose_tokens)
    concat_log_probs = staticmethod(StepOutputs.cat)

    def numpy_log_probs(self, outputs: StepOutputs) -> np.ndarray:
        return outputs.log_probs().cpu().numpy()  # (B, V) float32

    def select_state(self, state, rows: np.ndarray):
        if state is None:
            return None
        index = self._tensor(np.asarray(rows, dtype=np.int64))
        if isinstance(state, tuple):  # LSTM: (h, c), each (layers, B, H)
            return tuple(s.index_select(1, index) for s in state)
        return state.index_select(1, index)

    def concat_states(self, states: list):
        if isinstance(states[0], tuple):  # LSTM: (h, c), each (layers, B_i, H)
            return tuple(torch.cat(parts, dim=1) for parts in zip(*states, strict=True))
        return torch.cat(states, dim=1)  # (layers, B_i, H)
