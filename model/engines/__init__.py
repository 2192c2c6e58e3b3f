"""Engine factory. The torch engines are only imported when asked for, so that
``cell="rnn"`` works on a machine where PyTorch is not installed."""

from __future__ import annotations

import numpy as np

from rnnlm.model.config import ModelConfig
from rnnlm.model.engines.base import Engine, StepStats

__all__ = ["Engine", "StepStats", "create_engine", "torch_available"]


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
    if config.cell == "rnn":
        if device not in ("auto", "cpu"):
            raise ValueError(f"cell 'rnn' runs on the CPU only (NumPy); got device {device!r}")
        from rnnlm.model.engines.numpy_rnn import NumpyRNNEngine

        return NumpyRNNEngine(config, vocab_size, seed=seed)
    if not torch_available():
        raise ValueError(
            f"cell {config.cell!r} needs PyTorch, which is not installed here; "
            "install it (pip install 'rnnlm[server]') or use cell 'rnn'"
        )
    from rnnlm.model.engines.torch_rnn import TorchRNNEngine

    return TorchRNNEngine(config, vocab_size, seed=seed, device=device, word_counts=word_counts)
