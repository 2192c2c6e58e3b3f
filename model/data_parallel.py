"""Data-parallel training on torch.distributed: what every rank of a run does.

Each rank holds a full copy of the model (``DistributedDataParallel`` averages the
gradients), trains on its share of the rows of every global batch and sees the same batch
order, so ``batch_size`` keeps its meaning: N processes with the same global batch and seed
take the same steps as one process (up to the order of floating-point sums; dropout masks
differ, since each rank draws its own).

Rank 0 owns the run: it prepares the model (or loads the checkpoint it resumes), sends the
other ranks everything they need in one broadcast (``share_start``: corpus, configurations,
a resumable checkpoint), reports progress, writes checkpoints and publishes. The other
ranks call ``follow``. Collectives per step: the stop flag (so that a cancel stops every
rank at the same step), the gradients (DDP) and the loss; per epoch, the validation sums.

Processes come from ``torchrun`` (``init_from_env``: several machines, see
docs/deployment.md) or from ``local_launch`` (the ``processes`` training option: one host).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from rnnlm.model.batching import Batch
from rnnlm.model.config import ModelConfig, TrainConfig
from rnnlm.model.corpus import Corpus
from rnnlm.model.state import WorkerLost

log = logging.getLogger("rnnlm.model")
T = TypeVar("T")

# How long a collective waits for a rank that neither answers nor drops its connection (a
# rank that dies drops it, and the others fail at once). It covers rank 0's checkpoint and
# progress writes between steps, which the other ranks wait out at the next collective.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass
class DataParallel:
    """This process's place in the default process group (``dist.init_process_group``)."""

    rank: int
    world: int
    device: torch.device  # this rank's device: cuda:LOCAL_RANK, or the CPU
    shared: bool = False  # rank 0 has sent the others their start (share_start)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    # -- the work of one step --------------------------------------------------------------

    def part(self, batch: Batch) -> tuple[Batch, float]:
        """This rank's contiguous share of the rows (B,) of a global batch, and the weight of
        its summed loss: ``world`` (DDP averages the gradients over ranks, so the sum over
        ranks of world * part_loss / world is the global batch's loss), or 0.0 when the batch
        has fewer rows than ranks and this rank has none (it then runs row 0 with no weight:
        every rank must take part in the gradient average)."""
        rows = len(batch.lengths)
        start, stop = rows * self.rank // self.world, rows * (self.rank + 1) // self.world
        weight = float(self.world)
        if start == stop:
            start, stop, weight = 0, 1, 0.0
        lengths = batch.lengths[start:stop]
        width = int(lengths.max())  # (b, width): padding only as long as this part needs
        part = Batch(
            batch.inputs[start:stop, :width],
            batch.targets[start:stop, :width],
            batch.mask[start:stop, :width],
            lengths,
        )
        return part, weight

    def sum(self, *values: float) -> list[float]:
        """Each value summed over the ranks (float64)."""
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        self._collective(dist.all_reduce, total)
        return total.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on one (a stop asked for on rank 0)."""
        return self.sum(float(flag))[0] > 0

    # -- the start of a run ----------------------------------------------------------------

    def share_start(
        self,
        corpus: Corpus | None,
        model_config: ModelConfig | None = None,
        train_config: TrainConfig | None = None,
        checkpoint: bytes = b"",
    ) -> None:
        """Rank 0: send the other ranks what they train with (``follow`` receives it); None
        tells them there is nothing to train (the run failed before it started)."""
        self.shared = True
        if corpus is None or model_config is None or train_config is None:
            self._broadcast_bytes(b"")
            return
        self._broadcast_bytes(pack_start(corpus, model_config, train_config, checkpoint))

    def receive_start(self) -> bytes:
        """A rank other than 0: what rank 0's ``share_start`` sent (``unpack_start``)."""
        return self._broadcast_bytes(None)

    def _broadcast_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's ``data`` on every rank: its length, then the bytes, as uint8 tensors."""
        size = torch.tensor([len(data) if data is not None else 0], device=self.device)
        self._collective(dist.broadcast, size, src=0)
        if self.leader and data:
            buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
        else:
            buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=self.device)
        if len(buffer):
            self._collective(dist.broadcast, buffer, src=0)
        return bytes(buffer.cpu().numpy().tobytes())

    def _collective(self, op: Any, *args: Any, **kwargs: Any) -> None:
        try:
            op(*args, **kwargs)
        except RuntimeError as err:  # torch's DistBackendError and friends
            raise lost(err) from err


def lost(err: BaseException) -> WorkerLost:
    """The error a rank sees when another one is gone, in words a job record can show."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return WorkerLost(f"a training process of the data-parallel run stopped ({first[:120]})")


def rank_device(train_device: str, local_rank: int) -> torch.device:
    """Rank r trains on GPU ``local_rank`` when the run is on CUDA, else on the CPU."""
    cuda = train_device.startswith("cuda") or (train_device == "auto" and torch.cuda.is_available())
    return torch.device("cuda", local_rank) if cuda else torch.device("cpu")


def init_from_env(train_device: str = "auto") -> DataParallel:
    """Join the process group that ``torchrun`` (or ``local_launch``) describes in the
    environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT): NCCL between
    GPUs, gloo on the CPU."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = rank_device(train_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)
    return DataParallel(dist.get_rank(), dist.get_world_size(), device)


def leave_group() -> None:
    """Destroy the process group, if one was joined, before the process exits (the local
    launch and torchrun alike) rather than leave it to the interpreter's exit."""
    if dist.is_initialized():
        dist.destroy_process_group()


def pack_start(
    corpus: Corpus,
    model_config: ModelConfig,
    train_config: TrainConfig,
    checkpoint: bytes,
    *,
    own_ngram: bool = True,
) -> bytes:
    """What a rank starts from, as bytes: a JSON line (the corpus, the configurations,
    whether rank 0 adds the n-gram part itself), then a resumable checkpoint (or none)."""
    header = {
        "paragraphs": list(corpus.paragraphs),
        "layout": corpus.layout,
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "own_ngram": own_ngram,
    }
    return json.dumps(header).encode("utf-8") + b"\n" + checkpoint


Start = tuple[Corpus, ModelConfig, TrainConfig, bytes, bool]


def unpack_start(data: bytes) -> Start | None:
    """What ``pack_start`` packed: None for no bytes (nothing to train)."""
    if not data:
        return None
    header_line, checkpoint = data.split(b"\n", 1)
    header = json.loads(header_line)
    corpus = Corpus(tuple(header["paragraphs"]), header["layout"])
    model_config = ModelConfig.from_stored(header["model_config"])
    train_config = TrainConfig.from_dict(header["train_config"])
    return corpus, model_config, train_config, checkpoint, bool(header["own_ngram"])


def step_seed(seed: int, rank: int, step: int) -> int:
    """The dropout seed of a rank other than 0 from ``step`` on: its own stream, which a
    resumed run derives again (rank 0's stream is the one checkpoints keep)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def run_as_rank(run: Callable[[], T]) -> T:
    """Run a rank's training; another rank's death (a collective that fails) is WorkerLost."""
    try:
        return run()
    except WorkerLost:
        raise
    except RuntimeError as err:
        if isinstance(err, dist.DistError):
            raise lost(err) from err
        raise
