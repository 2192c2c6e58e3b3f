"""The dropout that suits recurrent language models (Gal & Ghahramani 2016; AWD-LSTM).

Plain dropout draws a new mask at every time step, which a recurrent net largely averages
away; variational ("locked") dropout draws one mask per sentence and keeps it for every
step, and embedding dropout removes whole words, so the model cannot lean on any one word
being there. Both are identities outside training and scale what they keep by 1/(1-p), so
that evaluation needs no rescaling. Masks come from torch's global generator, which the
engine seeds and whose state resumable checkpoints carry.
"""

from __future__ import annotations

import torch


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """(B, T, C) -> (B, T, C) with one (B, 1, C) mask shared by all T steps of a sentence."""
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1.0 - p) / (1.0 - p)  # (B, 1, C)
    return x * mask


def embedded_dropout(
    embedding: torch.nn.Embedding, inputs: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """(B, T) ids -> (B, T, E) embeddings with whole words dropped for this batch.

    The same as AWD-LSTM's ``embedded_dropout`` (a (V, 1) mask on the embedding matrix),
    but the mask is gathered at the ids read instead of multiplying all V rows: a dropped
    word is zero wherever it occurs in the batch. A tied decoder keeps the unmasked matrix.
    """
    out = embedding(inputs)  # (B, T, E)
    if not training or p == 0.0:
        return out
    keep = out.new_empty(embedding.num_embeddings).bernoulli_(1.0 - p) / (1.0 - p)  # (V,)
    return out * keep[inputs].unsqueeze(-1)  # (B, T, 1) broadcast over E
