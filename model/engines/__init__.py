"""Engine registry: cell name -> engine class, imported on first use.

The torch engines are only imported when asked for, so that ``cell="rnn"`` works on a
machine where PyTorch is not installed.
"""

from __future__ import annotations

import importlib

import numpy as np

from rnnlm.model.config import ModelConfig
from rnnlm.model.engines.base import Engine, StepStats

__all__ = ["ENGINES", "Engine", "StepStats", "create_engine", "torch_available"]

# cell -> (module, class, needs torch)
ENGINES: dict[str, tuple[str, str, bool]] = {
    "rnn": ("numpy_rnn", "NumpyRNNEngine", False),
    "gru": ("torch_rnn", "TorchRNNEngine", True),
    "lstm": ("torch_rnn", "TorchRNNEngine", True),
}


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


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
    of ``config.output_classes`` (torch cells); a loaded checkpoint brings its own."""
    module_name, class_name, needs_torch = ENGINES[config.cell]
    if needs_torch and not torch_available():
        raise ValueError(
            f"cell {config.cell!r} needs PyTorch, which is not installed here; "
            "install it (pip install 'rnnlm[server]') or use cell 'rnn'"
        )
    cls = getattr(importlib.import_module(f".{module_name}", __name__), class_name)
    if needs_torch:
        return cls(config, vocab_size, seed=seed, device=device, word_counts=word_counts)
    if device not in ("auto", "cpu"):
        raise ValueError(f"cell 'rnn' runs on the CPU only (NumPy); got device {device!r}")
    return cls(config, vocab_size, seed=seed)
