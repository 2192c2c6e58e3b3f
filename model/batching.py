"""Padded, masked, length-bucketed minibatches of framed sentences.

A sequence is a framed id array ``[SENTENCE_START, w1, .., wn, SENTENCE_END]``; the model
reads ``seq[:-1]`` and predicts ``seq[1:]``. Sequences are right-padded, so a recurrent
model's outputs at real positions never see padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from rnnlm.model.vocab import END_ID


@dataclass(frozen=True)
class Batch:
    inputs: np.ndarray  # (B, T) int64, padded with END_ID
    targets: np.ndarray  # (B, T) int64, padded with END_ID
    mask: np.ndarray  # (B, T) bool, True at real target positions
    lengths: np.ndarray  # (B,) int64, number of real targets per row

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


def make_batch(sequences: Sequence[np.ndarray]) -> Batch:
    """Stack framed sequences (each at least two ids) into one right-padded batch."""
    lengths = np.array([len(s) - 1 for s in sequences], dtype=np.int64)
    if len(lengths) == 0 or lengths.min() < 1:
        raise ValueError("every sequence in a batch needs at least two ids")
    width = int(lengths.max())
    inputs = np.full((len(sequences), width), END_ID, dtype=np.int64)
    targets = np.full((len(sequences), width), END_ID, dtype=np.int64)
    for row, (seq, n) in enumerate(zip(sequences, lengths)):
        inputs[row, :n] = seq[:-1]
        targets[row, :n] = seq[1:]
    mask = np.arange(width)[None, :] < lengths[:, None]
    return Batch(inputs, targets, mask, lengths)


def split_long(sequences: Sequence[np.ndarray], max_length: int) -> list[np.ndarray]:
    """Cut sequences with more than ``max_length`` targets into consecutive windows that
    overlap by one id, so every target is predicted exactly once (each window after the
    first starts from a fresh state: long sentences lose context at the cut)."""
    out = []
    for seq in sequences:
        if len(seq) - 1 <= max_length:
            out.append(seq)
            continue
        for start in range(0, len(seq) - 1, max_length):
            out.append(seq[start : start + max_length + 1])
    return out


def length_sorted_batches(
    sequences: Sequence[np.ndarray],
    batch_size: int,
    rng: np.random.Generator | None = None,
    max_tokens: int | None = None,
) -> Iterator[tuple[np.ndarray, Batch]]:
    """Yield ``(indices, batch)`` over all sequences, grouped by length to minimise padding.

    With ``rng`` the grouping of equal lengths and the order of batches are shuffled
    (training); without it, batches come shortest first (scoring, evaluation).
    ``max_tokens`` (scoring) also caps a batch's padded size, rows x longest, so that long
    sentences come in fewer rows (at least one) and the (rows, V) output stays bounded.
    """
    lengths = np.array([len(s) for s in sequences])
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        perm = rng.permutation(len(sequences))
        order = perm[np.argsort(lengths[perm], kind="stable")]
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if max_tokens is not None:
        chunks = [piece for chunk in chunks for piece in _token_capped(chunk, lengths, max_tokens)]
    if rng is not None:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    for idx in chunks:
        yield idx, make_batch([sequences[i] for i in idx])


def _token_capped(chunk: np.ndarray, lengths: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Split a chunk sorted by ascending length so that rows x longest <= max_tokens."""
    pieces, start = [], 0
    for end in range(1, len(chunk) + 1):
        if end - start > 1 and (end - start) * lengths[chunk[end - 1]] > max_tokens:
            pieces.append(chunk[start : end - 1])
            start = end - 1
    pieces.append(chunk[start:])
    return pieces


def num_batches(num_sequences: int, batch_size: int) -> int:
    return -(-num_sequences // batch_size)
