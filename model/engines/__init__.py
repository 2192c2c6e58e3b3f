"""Engine factory. The torch engines are only imported when asked for, so that
``cell="rnn"`` works on a machine where PyTorch is not installed."""

from __future__ import annotations

import os

import numpy as np

from rnnlm.model.config import ModelConfig
from rnnlm.model.engines.base import Engine, StepStats

__all__ = [
    "Engine",
    "StepStats",
    "check_device_available",
    "create_engine",
    "torch_available",
    "usable_cores",
]


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (a container's cpuset, ``taskset``),
    not the host's count. A CPU quota (``docker --cpus``) is not seen: size it by hand."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def check_device_available(cell: str, device: str, processes: int = 1) -> None:
    """Refuse, before any work, a device this machine cannot train ``cell`` on: a GPU for
    the NumPy ``rnn``, PyTorch missing for ``gru``/``lstm``, CUDA (or GPU N) not there, or
    more data-parallel ``processes`` than cores (CPU) or GPUs (CUDA: one each)."""
    if cell == "rnn":
        if device not in ("auto", "cpu"):
            raise ValueError(f"cell 'rnn' runs on the CPU only (NumPy); got device {device!r}")
        return
    if not torch_available():
        raise ValueError(
            f"cell {cell!r} needs PyTorch, which is not installed here; "
            "install it (pip install 'rnnlm[server]') or use cell 'rnn'"
        )
    import torch

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not cuda:
        if processes > (cores := usable_cores()):
            raise ValueError(
                f"train_config.processes ({processes}) is more than the {cores} cores this "
                f"machine lets training use: at most {cores}"
            )
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if processes > 1 and processes > count:
        raise ValueError(
            f"train_config.processes ({processes}) needs one GPU each; this machine has "
            f"{count}: at most {count}"
        )
    index = int(device[5:]) if device.startswith("cuda:") else 0
    if index >= count:
        has = f"{count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})" if count else "no CUDA GPU"
        raise ValueError(
            f"device {device!r} was asked for but this machine has {has}; use 'auto' or 'cpu'"
        )


def create_engine(
    config: ModelConfig,
    vocab_size: int,
    *,
    seed: int = 0,
    device: str = "auto",
    word_counts: np.ndarray | None = None,
) -> Engine:
    """A freshly initialised engine for ``config.cell`` with ``vocab_size`` outputs.
    ``word_counts`` (V,), each id's count as a training target, places the word classes
    of ``config.output_classes``; a loaded checkpoint brings its own."""
    check_device_available(config.cell, device)
    if config.cell == "rnn":
        from rnnlm.model.engines.numpy_rnn import NumpyRNNEngine

        return NumpyRNNEngine(config, vocab_size, seed=seed, word_counts=word_counts)
    from rnnlm.model.engines.torch_rnn import TorchRNNEngine

    return TorchRNNEngine(config, vocab_size, seed=seed, device=device, word_counts=word_counts)
