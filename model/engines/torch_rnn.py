"""GRU and LSTM language models on PyTorch (cuDNN kernels on CUDA, MKL/oneDNN on CPU)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnnlm.model.batching import Batch
from rnnlm.model.config import ModelConfig
from rnnlm.model.data_parallel import DataParallel, step_seed
from rnnlm.model.engines.base import StepStats, check_state_dict
from rnnlm.model.engines.numpy_optim import ADAM_BETAS, EPS, RMSPROP_DECAY
from rnnlm.model.engines.torch_dropout import embedded_dropout, locked_dropout
from rnnlm.model.engines.torch_output import (
    ClassSoftmax,
    adaptive_softmax,
    log_probs,
)
from rnnlm.model.engines.torch_quantize import int8_refusal, quantized_for_serving
from rnnlm.model.engines.torch_sampling import TorchDecoding
from rnnlm.model.engines.tree_plan import TreePlan, rechunk
from rnnlm.model.engines.word_classes import class_bounds
from rnnlm.model.stopping import ShouldStop, check

_CELL_CLASSES = {"gru": nn.GRU, "lstm": nn.LSTM}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Output-layer rows per chunk when scoring (a batch, or a prefix tree): bounds the (rows, V) logits
# (1024 x 8000 float32 = 33 MB); larger chunks were no faster on the CPU.
_TREE_CHUNK_ROWS = 1024
# With a class or adaptive softmax there are no (rows, V) logits to bound, and larger chunks
# spread the per-class (per-cluster) loop over more rows.
_TREE_CHUNK_ROWS_CLASSES = 8192


def resolve_device(device: str) -> torch.device:
    """'auto' is CUDA when a GPU is visible, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'"
        )
    return torch.device(device)


def _logsumexp_(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp over the rows of (n, V) logits, (n,), overwriting them: torch.logsumexp
    allocates a second (n, V) buffer and makes one more pass over it (4% of a tree's
    scoring time at 1024 rows, far more at 2048, where the buffers outgrow the cache)."""
    peak = logits.amax(dim=-1, keepdim=True)  # (n, 1)
    return logits.sub_(peak).exp_().sum(dim=-1).log_().add_(peak[:, 0])


class RNNModel(nn.Module):
    """Embedding (word dropout) -> locked dropout -> GRU/LSTM stack -> locked dropout ->
    linear decoder (tied to the embedding by default where the sizes allow), factored by
    word classes when ``output_classes`` is set, or an adaptive softmax in its place when
    ``adaptive_cutoffs`` is (see torch_output)."""

    def __init__(self, config: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        # ModelConfig resolves dropout None to the cell's default on construction.
        self.dropout: float = config.dropout or 0.0
        self.embed_dropout = config.embed_dropout
        self.embedding = nn.Embedding(vocab_size, config.embed_size)
        # Between stacked layers it is nn.GRU's own (per-step) dropout: one module for the
        # stack keeps cuDNN's fused multi-layer kernel and the weight names of checkpoints;
        # per-layer modules with locked dropout between them were 3% slower on the CPU.
        between = config.dropout if config.num_layers > 1 else 0.0
        self.rnn = _CELL_CLASSES[config.cell](
            config.embed_size,
            config.hidden_size,
            config.num_layers,
            dropout=between,
            batch_first=True,
        )
        # Small uniform init, as in the PyTorch word-language-model example: the initial
        # output distribution is close to uniform, so the first loss is near ln(V).
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.adaptive = None
        self.decoder: nn.Linear | None = None
        if config.adaptive_cutoffs:  # its own head and clusters instead of the decoder
            self.adaptive = adaptive_softmax(
                config.hidden_size, vocab_size, config.adaptive_cutoffs
            )
        else:
            self.decoder = nn.Linear(config.hidden_size, vocab_size)
            nn.init.zeros_(self.decoder.bias)
            if config.tie_weights:  # Press & Wolf 2017: one matrix for input and output words
                self.decoder.weight = self.embedding.weight
            else:
                nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        self.classes = (
            ClassSoftmax(config.hidden_size, min(config.output_classes, vocab_size), vocab_size)
            if config.output_classes
            else None
        )

    def hidden_states(self, inputs: torch.Tensor, state=None):
        """(B, T) ids -> (B, T, H) top-layer outputs and the final state. Dropout applies
        in training mode only; in eval mode the outputs are deterministic."""
        emb = embedded_dropout(self.embedding, inputs, self.embed_dropout, self.training)
        emb = locked_dropout(emb, self.dropout, self.training)  # (B, T, E)
        out, state = self.rnn(emb, state)  # (B, T, H)
        return locked_dropout(out, self.dropout, self.training), state

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The training loss: summed negative log-likelihood of the targets (B, T) at real
        positions (mask (B, T)), a scalar. Training goes through here so that
        DistributedDataParallel, which hooks forward(), can wrap the model."""
        out, _ = self.hidden_states(inputs)  # (B, T, H)
        states, targets = out[mask], targets[mask]  # (N, H), (N,): padding left out
        if self.decoder is not None and self.classes is None:
            # cross_entropy's fused backward is the faster one
            return F.cross_entropy(self.decoder(states), targets, reduction="sum")
        at = torch.arange(len(targets), device=states.device)
        return -log_probs(self, states, at, targets).sum()


class TorchRNNEngine(TorchDecoding):
    """The ``gru`` and ``lstm`` cells (their decoding side: ``TorchDecoding``)."""

    def __init__(
        self,
        config: ModelConfig,
        vocab_size: int,
        seed: int = 0,
        device: str = "auto",
        word_counts: np.ndarray | None = None,
    ) -> None:
        """``word_counts``: as for ``create_engine``."""
        self.vocab_size = vocab_size
        self.seed = seed
        self.device = resolve_device(device)
        # A private generator keeps initialisation reproducible without touching the
        # global RNG of the process (other models may be training in other threads).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = RNNModel(config, vocab_size)
        if model.classes is not None and word_counts is not None:
            model.classes.set_bounds(class_bounds(word_counts, len(model.classes.bounds) - 1))
        self.model: RNNModel = model.to(device=self.device, dtype=_DTYPES[config.dtype])
        self.model.eval()
        self.optimizer: torch.optim.Optimizer | None = None
        self.clip: float | None = None
        # Set by data_parallel(): this rank's place in the run, and the model wrapped in
        # DistributedDataParallel (training steps only; scoring uses the model itself).
        self.group: DataParallel | None = None
        self._trained: nn.Module = self.model
        # What scoring and decoding run: the model, or its int8 copy (quantize()); the
        # float model stays for checkpoints and training.
        self._serving: RNNModel = self.model
        self.quantized = False

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(self.device, non_blocking=True)

    def _token_states(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Top-layer outputs at real positions only: the output layer is most of the work,
        and padding would only add to it. Returns states (N, H), targets (N,), mask (B, T)."""
        mask = self._tensor(batch.mask)
        out, _ = self._serving.hidden_states(self._tensor(batch.inputs))  # (B, T, H)
        return out[mask], self._tensor(batch.targets)[mask], mask

    def _log_probs(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(N,) ln p(targets[i] | states[i]) in float32 (normalising in float64 would cost
        more than the decoder product itself)."""
        at = torch.arange(len(targets), device=self.device)
        return log_probs(self._serving, states, at, targets)

    @torch.inference_mode()
    def token_log_probs(self, batch: Batch) -> np.ndarray:
        self.model.eval()
        states, targets, mask = self._token_states(batch)  # (N, H), (N,)
        logp = torch.empty(len(targets), dtype=torch.float64, device=self.device)
        decoder = self._full_softmax()
        chunk = _TREE_CHUNK_ROWS if decoder is not None else _TREE_CHUNK_ROWS_CLASSES
        # In chunks of positions: the full softmax's (rows, V) logits stay bounded (and in
        # cache) however large the batch, so a large batch is as fast per token as a small one.
        for lo in range(0, len(targets), chunk):
            part, wanted = states[lo : lo + chunk], targets[lo : lo + chunk]
            if decoder is None:
                logp[lo : lo + chunk] = self._log_probs(part, wanted).double()
                continue
            logits = decoder(part)  # (n, V)
            target = logits.gather(1, wanted[:, None])[:, 0]  # read before the overwrite
            logp[lo : lo + chunk] = (target - _logsumexp_(logits)).double()
        out = torch.zeros(mask.shape, dtype=torch.float64, device=self.device)
        out[mask] = logp  # widen only the N results
        return out.cpu().numpy()

    @torch.inference_mode()
    def tree_log_probs(
        self, tokens: np.ndarray, parents: np.ndarray, should_stop: ShouldStop | None = None
    ) -> np.ndarray:
        self.model.eval()
        plan = TreePlan(tokens, parents)
        out = torch.zeros(len(plan), dtype=torch.float64, device=self.device)
        if len(plan) == 0:
            return out.cpu().numpy()
        ids = self._tensor(plan.tokens)  # (N,)
        decoder = self._full_softmax()
        chunk = _TREE_CHUNK_ROWS if decoder is not None else _TREE_CHUNK_ROWS_CLASSES
        for rows, states in rechunk(self._tree_states(plan, ids), chunk, torch.cat):
            check(should_stop)
            children, parent_rows = plan.children_of(rows)  # (c,), (c,)
            kids, at = self._tensor(children), self._tensor(parent_rows)
            if decoder is None:
                logp = log_probs(self._serving, states, at, ids[kids])
                out[kids] = logp.double()
                continue
            logits = decoder(states)  # (n, V)
            target = logits[at, ids[kids]]  # (c,), read before the logits are overwritten
            # As in token_log_probs: normalise in float32 and widen only the results.
            out[kids] = (target - _logsumexp_(logits)[at]).double()
        return out.cpu().numpy()

    def _full_softmax(self) -> nn.Module | None:
        """The serving decoder when the output layer is a plain softmax over it (scored
        here with a fused logsumexp), else None (torch_output.log_probs)."""
        serving = self._serving
        return serving.decoder if serving.classes is None else None

    def _tree_states(
        self, plan: TreePlan, ids: torch.Tensor
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Per depth, the nodes (n,) that have children and their top-layer outputs (n, H):
        one batched time step per depth, each node continuing its parent's state."""
        state = None  # the previous level's state: (layers, n, H), or (h, c) for an LSTM
        for level in plan.levels:
            before = None if state is None else self.select_state(state, plan.parent_slots(level))
            out, state = self._serving.hidden_states(ids[self._tensor(level)][:, None], before)
            keep = plan.has_children(level)  # (n,)
            yield level[keep], out[self._tensor(keep), 0]  # (k,), (k, H)

    def int8_refusal(self) -> str | None:
        """Why ``quantize`` would refuse this model, or None."""
        return int8_refusal(self.model)

    def quantize(self) -> None:
        """Score and decode with int8 weights from now on (dynamic quantization, float32 on the CPU;
        ``torch_quantize``). Checkpoints keep the float weights; a quantized engine does not
        train."""
        if (refusal := self.int8_refusal()) is not None:
            raise ValueError(refusal)
        self._serving = quantized_for_serving(self.model)
        self.quantized = True

    def configure_training(
        self,
        optimizer: str,
        learning_rate: float,
        clip: float | None,
        bptt_truncate: int | None,
        weight_decay: float = 0.0,
    ) -> None:
        if self.quantized:
            raise ValueError("a quantized model serves only; train the float model it came from")
        params, lr, wd = self.model.parameters(), learning_rate, weight_decay
        # torch's weight_decay is an L2 term in the gradient, except in AdamW (decoupled).
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr, weight_decay=wd)
        elif optimizer == "rmsprop":
            self.optimizer = torch.optim.RMSprop(
                params, lr=lr, alpha=RMSPROP_DECAY, eps=EPS, weight_decay=wd
            )
        else:
            adam = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
            # fused: one kernel for the whole update instead of ~10 passes over every weight
            # (a quarter of an adaptive-softmax LSTM's CPU step went to those passes).
            fused = self.device.type in ("cpu", "cuda")
            self.optimizer = adam(
                params, lr=lr, betas=ADAM_BETAS, eps=EPS, weight_decay=wd, fused=fused
            )
        self.clip = clip
        # Dropout draws from torch's global generator: seed it so that the same seed gives
        # the same model. (Resuming restores the saved generator state instead.)
        torch.manual_seed(self.seed)

    def set_learning_rate(self, learning_rate: float) -> None:
        assert self.optimizer is not None, "configure_training() first"
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate

    def data_parallel(self, group: DataParallel, step: int) -> None:
        """Train as one rank of a data-parallel run from global step ``step`` on: each
        train_step takes this rank's rows of the global batch, and the gradients are
        averaged over the ranks before clipping, so every rank takes the same step.
        Call after configure_training (and after loading a checkpoint's RNG state)."""
        from torch.nn.parallel import DistributedDataParallel

        self.group = group
        on_gpu = self.device.type == "cuda"
        # Wrapping broadcasts rank 0's weights to every rank.
        self._trained = DistributedDataParallel(
            self.model, device_ids=[self.device] if on_gpu else None
        )
        if not group.leader:  # rank 0 keeps the stream its checkpoints save
            torch.manual_seed(step_seed(self.seed, group.rank, step))

    def train_step(self, batch: Batch) -> StepStats:
        assert self.optimizer is not None, "configure_training() first"
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        # One process: the whole batch; a rank of a data-parallel run: its rows, weighted
        # so that the averaged gradient is the whole batch's (DataParallel.part).
        part, weight = (batch, 1.0) if self.group is None else self.group.part(batch)
        inputs, targets = self._tensor(part.inputs), self._tensor(part.targets)
        loss_sum = self._trained(inputs, targets, self._tensor(part.mask))  # scalar
        (loss_sum * (weight / batch.num_tokens)).backward()
        norm = self._clip_gradients()
        self.optimizer.step()
        loss = loss_sum.item() if weight else 0.0
        if self.group is not None:
            loss = self.group.sum(loss)[0]
        return StepStats(loss, batch.num_tokens, norm.item())

    def _clip_gradients(self) -> torch.Tensor:
        """The gradients' global norm, after scaling them down to ``clip`` where it is
        exceeded. Unlike ``clip_grad_norm_``, which multiplies every gradient by a factor
        clamped at 1 so that a GPU need not wait for the norm, nothing is multiplied when
        the norm is within bounds (most steps): on a CPU that pass over every weight was
        ~8% of a class-softmax step."""
        # foreach left to torch (CUDA only): with foreach=True on the CPU a torchrun follower
        # aborted at exit in about 1 run in 5 ("terminate called without an active exception").
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        # "not <=": a NaN norm is clipped too (it poisons every gradient, as before).
        if self.clip is not None and (self.device.type != "cpu" or not norm <= self.clip):
            parameters = self.model.parameters()  # those without a gradient are skipped
            torch.nn.utils.clip_grads_with_norm_(parameters, self.clip, norm)
        return norm

    def initial_state(self, batch_size: int):
        return None  # nn.GRU / nn.LSTM start from zeros when given no state

    def state_dict(self) -> dict[str, np.ndarray]:
        # Tied weights appear once in state_dict() under both names; keep both so the
        # checkpoint is self-describing, load_state_dict() restores the tie.
        return {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, tensors: dict[str, np.ndarray]) -> None:
        expected = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        check_state_dict(expected, tensors)
        dtype = next(self.model.parameters()).dtype
        # Weights take the model's dtype; integer buffers (class bounds) stay integers.
        self.model.load_state_dict(
            {
                k: torch.from_numpy(np.ascontiguousarray(v)).to(
                    dtype if np.issubdtype(v.dtype, np.floating) else torch.int64
                )
                for k, v in tensors.items()
            }
        )
        if self.model.classes is not None:
            self.model.classes.check_bounds()
        if self.quantized:  # the int8 copy follows the new weights
            self.quantize()

    def optimizer_state_dict(self) -> dict[str, np.ndarray]:
        """Flattened torch optimizer state, plus the RNG (dropout) state."""
        if self.optimizer is None:
            return {}
        out = {"rng.cpu": torch.random.get_rng_state().numpy().copy()}
        if self.device.type == "cuda":
            out["rng.cuda"] = torch.cuda.get_rng_state(self.device).numpy().copy()
        for index, slots in self.optimizer.state_dict()["state"].items():
            for slot, value in slots.items():
                out[f"{index}.{slot}"] = (
                    torch.as_tensor(value).detach().cpu().reshape(-1).numpy().copy()
                )
        return out

    def load_optimizer_state_dict(self, tensors: dict[str, np.ndarray]) -> None:
        assert self.optimizer is not None, "configure_training() first"
        if "rng.cpu" in tensors:
            torch.random.set_rng_state(torch.from_numpy(tensors["rng.cpu"].copy()))
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(torch.from_numpy(tensors["rng.cuda"].copy()), self.device)
        current = self.optimizer.state_dict()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("rng."):
                continue
            index, slot = key.split(".", 1)
            # Moment buffers have their parameter's shape; "step" is a scalar.
            shape = () if slot == "step" else params[int(index)].shape
            state.setdefault(int(index), {})[slot] = torch.from_numpy(value.copy()).reshape(shape)
        current["state"] = state
        self.optimizer.load_state_dict(current)
