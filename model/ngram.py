"""An interpolated modified Kneser-Ney n-gram model (Chen & Goodman 1998), in NumPy.

Estimation is that of KenLM's lmplz: the highest order is estimated on raw counts, lower
orders on continuation counts (how many distinct words precede the n-gram), except that
n-grams starting with SENTENCE_START keep their raw counts (nothing can precede them), and
the unigram level is interpolated with the uniform distribution over the vocabulary
(SENTENCE_START excluded: it is never predicted). Each order has three discounts D1, D2,
D3+ from its count-of-counts.

The result is kept in backoff form, as ARPA files and KenLM keep it. Order k holds the
n-grams seen in training as sorted int64 keys built hierarchically,

    key_1(w) = w                                      (every word of the vocabulary)
    key_k(w1 .. wk) = index_{k-1}(w1 .. w(k-1)) * V + wk

where ``index_{k-1}`` is the position of the prefix among the sorted keys of order k-1,
with the interpolated log-probability ln p(wk | w1 .. w(k-1)) and the backoff weight ln
bow(w1 .. wk) of the n-gram as a context. A lookup is then
p(w | h) = p_k(h w) if h w is stored, else bow(h) * p(w | h without its first word).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from rnnlm.model import arpa
from rnnlm.model.config import MAX_NGRAM_ORDER
from rnnlm.model.vocab import SPECIAL_TOKENS, START_ID, lookup

# SENTENCE_START is never predicted; like KenLM's <s> it gets log10 probability -99.
START_LOGP = -99.0 * arpa.LN10
# KenLM's --discount_fallback values, for an order whose count-of-counts are degenerate.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


def kn_discounts(adjusted_counts: np.ndarray) -> np.ndarray:
    """Modified Kneser-Ney discounts (D1, D2, D3+) of one order, shape (3,).

    From the count-of-counts n_r = #{n-grams with (adjusted) count r}:
    Y = n1 / (n1 + 2 n2), D1 = 1 - 2Y n2/n1, D2 = 2 - 3Y n3/n2, D3+ = 3 - 4Y n4/n3.
    On tiny corpora some n_r are zero and the formulas divide by zero or leave [0, r]. Then
    the whole order falls back to KenLM's ``--discount_fallback`` values (0.5, 1, 1.5). A
    discount of exactly 0 also falls back: it would leave no mass to back off with, so
    every unseen word after some context would get probability 0.
    """
    n = np.bincount(adjusted_counts[(adjusted_counts >= 1) & (adjusted_counts <= 4)], minlength=5)
    n1, n2, n3, n4 = (float(x) for x in n[1:5])
    if min(n1, n2, n3) == 0:
        return np.array(FALLBACK_DISCOUNTS)
    y = n1 / (n1 + 2 * n2)
    d = np.array([1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
    if not (np.all(d > 0) and np.all(d <= [1, 2, 3])):
        return np.array(FALLBACK_DISCOUNTS)
    return d


def _discount_of(counts: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The discount each count gets: 0 for 0, D1 for 1, D2 for 2, D3+ for 3 and more."""
    return np.concatenate([[0.0], d])[np.minimum(counts, 3)]


def _flatten(sequences: Iterable[np.ndarray], vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All sequences end to end, shape (T,), and their lengths, shape (S,); checks the ids."""
    seqs = [np.asarray(s, dtype=np.int64) for s in sequences]
    for i, seq in enumerate(seqs):
        if seq.ndim != 1:
            raise ValueError(f"sequence {i} has shape {seq.shape}; expected 1-D word ids")
    lengths = np.array([s.size for s in seqs], dtype=np.int64)
    flat = np.concatenate(seqs) if seqs else np.zeros(0, dtype=np.int64)
    bad = np.flatnonzero((flat < 0) | (flat >= vocab_size))
    if bad.size:
        i = np.searchsorted(np.cumsum(lengths), bad[0], side="right")
        raise ValueError(f"sequence {i} has id {flat[bad[0]]}, outside [0, {vocab_size})")
    return flat, lengths


@dataclass
class _Counts:
    """The distinct n-grams of one order seen in training, each array of shape (n,)."""

    keys: np.ndarray  # sorted hierarchical keys
    raw: np.ndarray  # how often each occurs
    prefix: np.ndarray  # index at order k-1 of w1 .. w(k-1) (the context; unigrams: 0)
    suffix: np.ndarray  # index at order k-1 of w2 .. wk (where it backs off to; unigrams: 0)
    first: np.ndarray  # w1, the word id it starts with


def _count(
    flat: np.ndarray, seq_end: np.ndarray, vocab_size: int, order: int
) -> dict[int, _Counts]:
    """Count every order's n-grams with np.unique, by order; ``flat`` holds all sequences
    end to end and ``seq_end[i]`` is where the sequence of position i ends."""
    size = flat.size
    n_words = np.arange(vocab_size, dtype=np.int64)
    raw = np.bincount(flat, minlength=vocab_size)
    empty_context = np.zeros(vocab_size, dtype=np.int64)  # a unigram's context: the empty one
    levels = {1: _Counts(n_words, raw, empty_context, empty_context, n_words)}
    at = flat.copy()  # (T,) index of the (k-1)-gram starting at each position, -1: none
    for k in range(2, order + 1):
        lower = levels[k - 1]
        if len(lower.keys) and len(lower.keys) > np.iinfo(np.int64).max // vocab_size:
            raise ValueError(f"too many {k - 1}-grams for int64 keys of order {k}")
        start = np.flatnonzero((at >= 0) & (np.arange(size) + k <= seq_end))  # (n,)
        keys = at[start] * vocab_size + flat[start + k - 1]
        uniq, first_pos, inverse = np.unique(keys, return_index=True, return_inverse=True)
        at_next = np.full(size, -1, dtype=np.int64)
        at_next[start] = inverse
        # Any occurrence names the suffix: the (k-1)-gram starting one position later.
        suffix = at[start[first_pos] + 1]
        prefix = uniq // vocab_size
        raw = np.bincount(inverse, minlength=len(uniq))
        levels[k] = _Counts(uniq, raw, prefix, suffix, lower.first[prefix])
        at = at_next
    return levels


def _adjusted_counts(levels: dict[int, _Counts], order: int) -> dict[int, np.ndarray]:
    """Raw counts at the highest order; below, the number of distinct words seen before the
    n-gram, except for n-grams that start with SENTENCE_START (raw counts, as in KenLM)."""
    adjusted = {order: levels[order].raw}
    for k in range(1, order):
        left = np.bincount(levels[k + 1].suffix, minlength=len(levels[k].keys))
        adjusted[k] = np.where(levels[k].first == START_ID, levels[k].raw, left)
    return adjusted


def _estimate(
    levels: dict[int, _Counts], vocab_size: int, order: int
) -> tuple[list[np.ndarray | None], list[np.ndarray | None], list[np.ndarray | None]]:
    """Interpolate from the unigrams up; returns per order (keys, ln p, ln backoff)."""
    adjusted = _adjusted_counts(levels, order)
    # Unigrams: SENTENCE_START is not a word to predict, so it takes no part.
    a1 = adjusted[1].copy()
    a1[START_ID] = 0
    d = kn_discounts(a1)
    total = a1.sum()
    if total > 0:
        prob = (a1 - _discount_of(a1, d)) / total
        gamma = _discount_of(a1, d).sum() / total
    else:  # no words at all: the uniform distribution
        prob, gamma = np.zeros(vocab_size), 1.0
    prob = prob + gamma / (vocab_size - 1)
    prob[START_ID] = 0.0
    probs = {1: prob}
    backoffs: dict[int, np.ndarray] = {}
    for k in range(2, order + 1):
        level, a = levels[k], adjusted[k]
        d = kn_discounts(a)
        n_ctx = len(levels[k - 1].keys)
        discount = _discount_of(a, d)
        total = np.bincount(level.prefix, weights=a, minlength=n_ctx)  # (n_ctx,)
        mass = np.bincount(level.prefix, weights=discount, minlength=n_ctx)
        is_ctx = total > 0
        gamma = np.ones(n_ctx)  # a context with no continuation backs off with weight 1
        gamma[is_ctx] = mass[is_ctx] / total[is_ctx]
        backoffs[k - 1] = gamma
        backed_off = probs[k - 1][level.suffix]  # (n,) p(wk | w2 .. w(k-1))
        probs[k] = (a - discount) / total[level.prefix] + gamma[level.prefix] * backed_off
    # Lists indexed by order, as NgramModel keeps them (nothing at 0, nor keys at 1).
    with np.errstate(divide="ignore"):
        logs = {k: np.log(probs[k]) for k in range(1, order + 1)}
    logs[1][START_ID] = START_LOGP
    logp: list[np.ndarray | None] = [None] + [logs[k] for k in range(1, order + 1)]
    logbow: list[np.ndarray | None] = [None] + [np.log(backoffs[k]) for k in range(1, order)]
    keys: list[np.ndarray | None] = [None, None] + [levels[k].keys for k in range(2, order + 1)]
    return keys, logp, logbow


class NgramModel:
    """The model in backoff form (see the module doc). ``vocab[i]`` is the token of id i (the
    special tokens first); lists by order k: ``_keys[k]`` (none at order 1), ``_logp[k]`` and,
    below the highest order, ``_backoff[k]`` (0 for an n-gram that is no context)."""

    def __init__(self, order: int, vocab: list[str], keys, logp, backoff):
        self.order = order
        self.vocab = list(vocab)
        self._keys, self._logp, self._backoff = keys, logp, backoff
        self._index = {w: i for i, w in enumerate(self.vocab)}

    def __repr__(self) -> str:
        counts = ", ".join(str(len(p)) for p in self._logp[1:])
        return f"NgramModel(order={self.order}, vocab={len(self.vocab)}, ngrams=[{counts}])"

    @classmethod
    def estimate(
        cls, sequences: Iterable[np.ndarray], vocab: list[str], order: int = 4
    ) -> NgramModel:
        """Estimate from framed id sequences ``[SENTENCE_START, w1 .. wn, SENTENCE_END]``."""
        _check_order(order, vocab)
        flat, lengths = _flatten(sequences, len(vocab))
        # Continuation counts assume that every n-gram not starting a sequence has a word
        # before it, and SENTENCE_START none.
        starts = (np.cumsum(lengths) - lengths)[lengths > 0]
        opened = np.zeros(flat.size, dtype=bool)
        opened[starts] = True
        wrong = np.flatnonzero(opened != (flat == START_ID))
        if wrong.size:
            i = np.searchsorted(np.cumsum(lengths), wrong[0], side="right")
            raise ValueError(
                f"sequence {i} must start with SENTENCE_START ({START_ID}) and hold it "
                "nowhere else; frame sentences first"
            )
        lengths = lengths[lengths > 0]
        seq_end = np.repeat(np.cumsum(lengths), lengths)  # (T,)
        levels = _count(flat, seq_end, len(vocab), order)
        return cls(order, vocab, *_estimate(levels, len(vocab), order))

    def ids(self, words: Sequence[str]) -> np.ndarray:
        """Ids in this model's vocabulary, UNK_ID for unknown words (see ``vocab.lookup``)."""
        return lookup(self._index, words)

    def token_log_probs(
        self, sequences: Sequence[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """For each sequence s: ln p(s[t] | s[:t]) for t >= 1, shape (len(s)-1,), and the
        order of the longest stored n-gram that matched each target (as KenLM reports)."""
        flat, lengths = _flatten(sequences, len(self.vocab))
        if not lengths.size:
            return [], []
        pos = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # (T,)
        logp, matched = self._score_flat(flat, pos)
        keep = pos >= 1  # s[0] of each sequence is context only
        bounds = np.cumsum(np.maximum(lengths - 1, 0))[:-1]
        return np.split(logp[keep], bounds), np.split(matched[keep], bounds)

    def _score_flat(self, flat: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vocab_size = len(self.vocab)
        # end[k][t]: index of the k-gram ending at t among the order-k keys, -1 if not stored.
        end = {1: flat}
        for k in range(2, self.order + 1):
            ctx = _shift(end[k - 1], pos)
            hit = np.flatnonzero(ctx >= 0)
            query = ctx[hit] * vocab_size + flat[hit]
            keys = self._keys[k]
            found = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
            ok = keys[found] == query if len(keys) else np.zeros(len(hit), dtype=bool)
            end_k = np.full(flat.size, -1, dtype=np.int64)
            end_k[hit[ok]] = found[ok]
            end[k] = end_k
        logp = self._logp[1][flat].copy()  # (T,)
        matched = np.ones(flat.size, dtype=np.int64)
        for k in range(2, self.order + 1):
            stored = end[k] >= 0
            logp[stored] = self._logp[k][end[k][stored]]
            matched[stored] = k
        # Back off through every stored context longer than the matched n-gram's context.
        for j in range(1, self.order):
            ctx = _shift(end[j], pos)
            use = (ctx >= 0) & (matched <= j)
            logp[use] += self._backoff[j][ctx[use]]
        return logp, matched

    def to_tensors(self) -> dict[str, np.ndarray]:
        """Plain arrays named ``keys.k`` (k >= 2), ``logp.k`` and ``backoff.k`` (k < order)."""
        tensors = {}
        for k in range(1, self.order + 1):
            if k >= 2:
                tensors[f"keys.{k}"] = self._keys[k]
            tensors[f"logp.{k}"] = self._logp[k]
            if k < self.order:
                tensors[f"backoff.{k}"] = self._backoff[k]
        return tensors

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], vocab: list[str], order: int):
        """Inverse of ``to_tensors``; checks names, shapes and dtypes (ValueError)."""
        _check_order(order, vocab)
        keys: list[np.ndarray | None] = [None, None]
        logp: list[np.ndarray | None] = [None]
        backoff: list[np.ndarray | None] = [None]
        n_prev = n = len(vocab)
        for k in range(1, order + 1):
            if k >= 2:
                keys_k = _tensor(tensors, f"keys.{k}", np.int64, None)
                if np.any(np.diff(keys_k) <= 0) or np.any(keys_k < 0):
                    raise ValueError(f"keys.{k} must be strictly increasing and non-negative")
                if len(keys_k) and keys_k[-1] >= n_prev * len(vocab):
                    raise ValueError(f"keys.{k} names {k - 1}-grams that are not stored")
                keys.append(keys_k)
                n = len(keys_k)
            logp.append(_tensor(tensors, f"logp.{k}", np.float64, n))
            if k < order:
                backoff.append(_tensor(tensors, f"backoff.{k}", np.float64, n))
            n_prev = n
        return cls(order, vocab, keys, logp, backoff)

    def to_arpa(self, out: TextIO) -> None:
        """Write the model as an ARPA file (log10; specials as <unk>, <s>, </s>)."""
        arpa.write(out, self.vocab, self._keys, self._logp, self._backoff)

    @classmethod
    def from_arpa(cls, lines: Iterable[str] | TextIO, *, max_order: int = MAX_NGRAM_ORDER):
        """Read an ARPA file; <unk>, <s>, </s> become ids 0, 1, 2 (ValueError on problems)."""
        return cls(*arpa.read(lines, max_order=max_order))


def _shift(end: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``end`` one position later: what ends at t-1, seen from t; -1 at a sequence start."""
    out = np.empty_like(end)
    out[1:] = end[:-1]
    out[pos == 0] = -1
    return out


def _check_order(order: int, vocab: list[str]) -> None:
    if not 1 <= order <= MAX_NGRAM_ORDER:
        raise ValueError(f"n-gram order must be 1..{MAX_NGRAM_ORDER}, got {order}")
    if tuple(vocab[:3]) != SPECIAL_TOKENS:
        raise ValueError(f"an n-gram vocabulary starts with {', '.join(SPECIAL_TOKENS)}")


def _tensor(tensors: dict[str, np.ndarray], name: str, dtype, size: int | None) -> np.ndarray:
    if name not in tensors:
        raise ValueError(f"n-gram tensors lack {name!r}")
    arr = np.asarray(tensors[name])
    if arr.dtype != dtype or arr.ndim != 1 or (size is not None and arr.size != size):
        want = f"({size},)" if size is not None else "1-D"
        raise ValueError(f"{name} is {arr.dtype}{arr.shape}; expected {np.dtype(dtype)} {want}")
    return arr
