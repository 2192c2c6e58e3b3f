"""int8 dynamic quantization of a gru/lstm network for CPU serving
(``TorchRNNEngine.quantize``; docs/model.md "int8 serving")."""

from __future__ import annotations

import warnings
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def int8_refusal(model: nn.Module) -> str | None:
    """Why ``model`` cannot be served int8, or None: the int8 layers run on the CPU and take
    float32 activations only (a float64 model failed at its first score)."""
    weight = next(model.parameters())
    if weight.device.type != "cpu":
        return f"int8 quantization serves on the CPU; this model is on {weight.device}"
    if weight.dtype != torch.float32:
        name = str(weight.dtype).removeprefix("torch.")
        return f"int8 quantization serves float32 models; this one is {name}"
    return None


def quantized_for_serving(model: M) -> M:
    """A copy of ``model`` (an ``RNNModel``) with int8 weights in its recurrent layers and
    output layers, activations quantized on the fly: with a class softmax the word part
    stays float (it is used by class, in slices); the adaptive softmax's head and cluster
    projections are Linear layers and are quantized. ``model`` itself is left as it is."""
    if getattr(model, "adaptive", None) is not None:
        names = ["rnn", "adaptive"]
    else:
        names = ["rnn", "decoder" if getattr(model, "classes", None) is None else "classes.layer"]
    model.eval()
    # torch.ao.quantization (still in torch 2.13) warns of its move to torchao, whose int8
    # API does not cover recurrent layers; the warnings would reach every caller.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
        from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

        spec = dict.fromkeys(names, default_dynamic_qconfig)
        quantized: M = quantize_dynamic(model, spec, dtype=torch.qint8)  # a copy, same class
        return quantized
