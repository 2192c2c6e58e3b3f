"""The most probable tokens at each position of a sentence: what the OpenAI API calls
``top_logprobs``. They come from the distribution ``LanguageModel.score`` takes its
log-probabilities from (the network's, the n-gram model's, or their mixture, chosen as
``scoring_setup`` chooses), so a scored token and its alternatives are comparable.

The network's distribution is read step by step (``Engine.step``), one sentence at a time,
in the calling thread. The n-gram model's is its probability of every vocabulary word after
each context, ``V x position`` n-grams looked up at once: under a millisecond a position
for 2,000 words, about 20 ms for 50,000.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnnlm.model.interpolation import mix
from rnnlm.model.lm import LanguageModel
from rnnlm.model.stopping import ShouldStop, check
from rnnlm.model.vocab import SPECIAL_TOKENS, START_ID

# (token, ln p) pairs at one position, most probable first.
Alternatives = list[tuple[str, float]]


def top_alternatives(
    lm: LanguageModel,
    words: Sequence[str],
    k: int,
    *,
    bos: bool = True,
    eos: bool = False,
    scorer: str | None = None,
    neural_weight: float | None = None,
    should_stop: ShouldStop | None = None,
) -> list[Alternatives]:
    """For each token that ``lm.score([words], bos=bos, eos=eos, ...)`` scores, the ``k``
    most probable tokens at its position with their ln p. ``words`` are the model's words
    (``lm.words``). ``SENTENCE_START`` is never among them (it is never predicted);
    ``SENTENCE_END`` and ``UNKNOWN_TOKEN`` can be."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scorer, weight = lm.scoring_setup(scorer, neural_weight)
    ids = lm.vocab.frame(list(words), bos=bos, eos=eos)  # (T,): targets are ids[1:]
    positions = len(ids) - 1
    if positions <= 0:
        return []
    logps = []  # (V,) per position
    if scorer != "ngram":
        logps = _network(lm, ids, should_stop)
    if scorer != "neural":
        ngram = _ngram(lm, list(words), bos, eos, should_stop)
        logps = ngram if scorer == "ngram" else [mix(a, b, weight) for a, b in zip(logps, ngram)]
    k = min(k, len(lm.vocab) - 1)
    out = []
    for logp in logps:
        logp = np.array(logp, dtype=np.float64)
        logp[START_ID] = -np.inf
        top = np.argpartition(-logp, k - 1)[:k]
        top = top[np.argsort(-logp[top], kind="stable")]
        out.append([(lm.vocab.tokens[i], float(logp[i])) for i in top])
    return out


def _network(lm: LanguageModel, ids: np.ndarray, should_stop: ShouldStop | None) -> list:
    """The network's (V,) log-probs after each of ``ids[:-1]``."""
    state = lm.engine.initial_state(1)
    logps = []
    for token in ids[:-1]:
        check(should_stop)
        logp, state = lm.engine.step(np.array([token], dtype=np.int64), state)  # (1, V)
        logps.append(logp[0])
    return logps


def _ngram(
    lm: LanguageModel, words: list[str], bos: bool, eos: bool, should_stop: ShouldStop | None
) -> list:
    """The n-gram part's (V,) log-probs, over the network's vocabulary, at each position."""
    part = lm.ngram
    assert part is not None  # scoring_setup refused a scorer that needs it
    model = part.model
    if part.shares_vocab:
        framed, candidates = lm.vocab.frame(words, bos=bos, eos=eos), np.arange(len(lm.vocab))
    else:  # an attached ARPA model: words by spelling, the special tokens by their ids
        framed = part.frame(words, bos=bos, eos=eos)
        ordinary = model.ids(lm.vocab.tokens[len(SPECIAL_TOKENS) :])
        candidates = np.concatenate([np.arange(len(SPECIAL_TOKENS)), ordinary])
    logps = []
    for t in range(len(framed) - 1):
        check(should_stop)
        # The n-gram looks back order - 1 tokens at most: each candidate after them.
        context = framed[max(0, t + 2 - model.order) : t + 1]
        rows = np.empty((len(candidates), len(context) + 1), dtype=np.int64)  # (V, n)
        rows[:, :-1] = context
        rows[:, -1] = candidates
        # token_log_probs's own lookup, on the rows end to end (its list of V arrays would
        # cost ~6x as much: 71 ms against 11 ms a sentence of 16 words for 2,000 words).
        pos = np.tile(np.arange(rows.shape[1]), len(rows))  # (V * n,): position in its row
        logp, _ = model._score_flat(rows.ravel(), pos)
        logps.append(logp[rows.shape[1] - 1 :: rows.shape[1]])  # (V,): each row's last
    return logps
