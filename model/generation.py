"""Text generation: sampling (temperature, top-k, top-p), greedy decoding and beam search.

``UNKNOWN_TOKEN`` and ``SENTENCE_START`` are never produced; ``SENTENCE_END`` is held back
until ``min_length`` words exist. Reported log-probabilities are the model's own
(before temperature and filtering), so a generated sentence's log-probabilities add up to
what ``score`` gives for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnlm.model.checks import check_fields, integer, number, one_of, refuse_unknown
from rnnlm.model.engines import Engine
from rnnlm.model.stopping import ShouldStop, check
from rnnlm.model.text import detokenize
from rnnlm.model.vocab import END_ID, SENTENCE_END, START_ID, UNK_ID, Vocabulary

METHODS = ("sample", "greedy", "beam")
FINISH_END = "end"  # the model chose SENTENCE_END
FINISH_LENGTH = "length"  # max_length words were produced
# Words a sentence has at most unless asked otherwise (a server caps it at its own limit).
DEFAULT_MAX_LENGTH = 50
# Hypotheses beam search keeps unless asked otherwise (at least the sentences asked for).
DEFAULT_BEAM_WIDTH = 4
# What beam search finds, best first: (token ids without SENTENCE_END, per-token log-probs,
# finish reason) each.
Hypotheses = list[tuple[list[int], list[float], str]]


# Each option on its own; min_length is checked against max_length.
_RULES = {
    "method": one_of(METHODS),
    "num_sentences": integer(1),
    "temperature": number("(0, 100]").noting("use method='greedy' for temperature 0"),
    "top_k": integer(0).noting("0 disables it"),
    "top_p": number("(0, 1]").noting("1 disables it"),
    "seed": integer(0).passing(None),
    "max_length": integer(1),
    "beam_width": integer(0).noting("0: the default, max(4, num_sentences)"),
}


@dataclass(frozen=True)
class GenerationConfig:
    method: str = "sample"
    num_sentences: int = 1  # sentences returned, whatever the method (beam: the n best)
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0  # 1: no nucleus filter
    seed: int | None = None  # None: fresh randomness each call
    min_length: int = 1  # words before SENTENCE_END may be chosen
    max_length: int = DEFAULT_MAX_LENGTH  # words at most (prompt not counted)
    beam_width: int = 0  # 0: max(DEFAULT_BEAM_WIDTH, num_sentences)

    def __post_init__(self) -> None:
        check_fields(self, _RULES, "generate: ")
        integer(0, self.max_length).check("generate: min_length", self.min_length)
        if self.method == "greedy" and self.num_sentences > 1:
            raise ValueError(
                f"generate: greedy decoding gives one sentence, the same each time, and "
                f"{self.num_sentences} were asked for; use method 'beam' for the "
                f"{self.num_sentences} most probable or 'sample' for different ones"
            )
        if self.beam_width and self.beam_width < self.num_sentences:
            raise ValueError(
                f"generate: beam_width {self.beam_width} keeps fewer hypotheses than the "
                f"{self.num_sentences} sentences asked for; give beam_width >= num_sentences "
                "(or 0 for the default)"
            )

    @property
    def width(self) -> int:
        """The hypotheses beam search keeps."""
        return self.beam_width or max(DEFAULT_BEAM_WIDTH, self.num_sentences)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> GenerationConfig:
        """The config of ``generate``'s keyword options, refusing unknown ones by name."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        refuse_unknown("generate", "option", options, allowed)
        return cls(**options)


@dataclass(frozen=True)
class GenerationEvent:
    """One generated token, as a server would stream it."""

    sentence: int  # which sentence (0-based) the token belongs to
    token: str  # a word, or SENTENCE_END as the last token of a finished sentence
    logprob: float  # ln p(token | prompt and earlier tokens)
    finish_reason: str | None = None  # set on a sentence's last event: 'end' or 'length'
    text: str = ""  # on a sentence's last event: the prompt and its words, detokenised


@dataclass(frozen=True)
class GeneratedSentence:
    prompt: list[str]
    tokens: list[str]  # generated words, without SENTENCE_END
    logprobs: list[float]  # one per generated token, SENTENCE_END's last when it ended so
    finish_reason: str
    text: str = ""  # prompt and generated words, detokenised

    @property
    def logprob(self) -> float:
        return float(sum(self.logprobs))

    @classmethod
    def from_events(cls, prompt: list[str], events: Sequence[GenerationEvent]) -> GeneratedSentence:
        """One sentence's events (``with_text``'s, the last one finishing it) as a whole."""
        last = events[-1]
        assert last.finish_reason is not None, "the sentence is not finished"
        tokens = [e.token for e in events if e.token != SENTENCE_END]
        return cls(prompt, tokens, [e.logprob for e in events], last.finish_reason, last.text)


def with_text(
    events: Iterable[GenerationEvent], prompt: Sequence[str]
) -> Iterator[GenerationEvent]:
    """``events`` with each sentence's last one carrying the sentence's text: the prompt and
    the generated words, detokenised. The one place generated words become text."""
    words = list(prompt)
    for event in events:
        if event.token != SENTENCE_END:
            words.append(event.token)
        if event.finish_reason is not None:
            event = dataclasses.replace(event, text=detokenize(words))
            words = list(prompt)
        yield event


def _allowed(vocab_size: int, produced: int, config: GenerationConfig) -> np.ndarray:
    """(V,) bool: the tokens that may come after ``produced`` words (see the module doc)."""
    allowed = np.ones(vocab_size, dtype=bool)
    allowed[[UNK_ID, START_ID]] = False
    allowed[END_ID] = produced >= config.min_length
    return allowed


def _read_prompt(engine: Engine, prompt_ids: np.ndarray):
    """Feed SENTENCE_START and the prompt; returns the next-token log-probs (1, V) and state."""
    state = engine.initial_state(1)
    logp = None
    for token in np.concatenate([[START_ID], prompt_ids]):
        logp, state = engine.step(np.array([token], dtype=np.int64), state)
    return logp, state


def _choose(
    logp: np.ndarray, allowed: np.ndarray, config: GenerationConfig, rng: np.random.Generator
) -> int:
    """Pick the next token from one row of log-probs (V,)."""
    scores = np.where(allowed, logp, -np.inf)
    if config.method == "greedy":
        return int(np.argmax(scores))
    scores = scores / config.temperature
    if config.top_k and config.top_k < int(allowed.sum()):
        kth = np.partition(scores, -config.top_k)[-config.top_k]
        scores[scores < kth] = -np.inf
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    if config.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, config.top_p)) + 1]
        trimmed = np.zeros_like(probs)
        trimmed[keep] = probs[keep]
        probs = trimmed / trimmed.sum()
    cdf = np.cumsum(probs)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))


def sample_events(
    engine: Engine,
    vocab: Vocabulary,
    prompt_ids: np.ndarray,
    config: GenerationConfig,
    should_stop: ShouldStop | None = None,
) -> Iterator[GenerationEvent]:
    """Sampling or greedy decoding, one sentence after another, token by token;
    ``should_stop`` is checked before each step (``Stopped``)."""
    rng = np.random.default_rng(config.seed)
    # Decoding states are never modified in place, so the prompt is read once.
    prompt_logp, prompt_state = _read_prompt(engine, prompt_ids)
    for sentence in range(config.num_sentences):
        logp, state = prompt_logp, prompt_state
        for produced in range(config.max_length):
            check(should_stop)
            token = _choose(logp[0], _allowed(len(vocab), produced, config), config, rng)
            token_logp = float(logp[0, token])
            if token == END_ID:
                yield GenerationEvent(sentence, SENTENCE_END, token_logp, FINISH_END)
                break
            if produced + 1 == config.max_length:
                yield GenerationEvent(sentence, vocab.tokens[token], token_logp, FINISH_LENGTH)
                break
            yield GenerationEvent(sentence, vocab.tokens[token], token_logp)
            logp, state = engine.step(np.array([token], dtype=np.int64), state)


def beam_search(
    engine: Engine,
    vocab: Vocabulary,
    prompt_ids: np.ndarray,
    config: GenerationConfig,
    should_stop: ShouldStop | None = None,
) -> Hypotheses:
    """The ``num_sentences`` most probable continuations found, best first (distinct
    token sequences: each is a different path through the beam).

    Each step keeps the ``width`` best candidates; one that ends the sentence among
    them is set aside as finished (an ending ranked below them is not, as in Hugging
    Face's beam search), so width 1 is exactly greedy decoding. Stops once ``width``
    hypotheses have finished and no live one scores higher than the worst of them
    (log-probabilities only fall as a hypothesis grows, so none could overtake it).
    Nothing comes out before the search ends, so ``should_stop`` is checked before every
    step: a caller that left stops the search there (``Stopped``).
    """
    width = config.width
    logp, state = _read_prompt(engine, prompt_ids)
    alive: list[tuple[list[int], list[float]]] = [([], [])]
    scores = np.zeros(1)
    finished: list[tuple[float, list[int], list[float], str]] = []
    while True:
        check(should_stop)
        length = len(alive[0][0])
        allowed = _allowed(len(vocab), length, config)
        candidates = np.where(allowed[None, :], logp, -np.inf) + scores[:, None]  # (A, V)
        flat = candidates.ravel()
        top = np.argpartition(-flat, min(2 * width, flat.size) - 1)[: 2 * width]
        top = top[np.argsort(-flat[top], kind="stable")]
        parents: list[int] = []
        tokens: list[int] = []
        next_alive: list[tuple[list[int], list[float]]] = []
        for rank, index in enumerate(top):
            if not np.isfinite(flat[index]):
                break
            parent, token = divmod(int(index), logp.shape[1])
            ids, lps = alive[parent]
            step_lps = [*lps, float(logp[parent, token])]
            if token == END_ID:
                if rank < width:
                    finished.append((float(flat[index]), ids, step_lps, FINISH_END))
            elif len(next_alive) < width:
                parents.append(parent)
                tokens.append(token)
                next_alive.append(([*ids, token], step_lps))
        finished = sorted(finished, key=lambda f: -f[0])[:width]
        next_scores = np.array([sum(lps) for _, lps in next_alive])
        if length + 1 >= config.max_length:  # the new words reach the limit: stop here
            finished += [
                (float(s), ids, lps, FINISH_LENGTH)
                for s, (ids, lps) in zip(next_scores, next_alive)
            ]
            break
        if not next_alive or (len(finished) >= width and next_scores.max() <= finished[-1][0]):
            break
        state = engine.select_state(state, np.array(parents))
        logp, state = engine.step(np.array(tokens, dtype=np.int64), state)
        alive, scores = next_alive, next_scores
    finished.sort(key=lambda f: -f[0])
    return [(ids, lps, reason) for _, ids, lps, reason in finished[: config.num_sentences]]


def beam_events(found: Hypotheses, vocab: Vocabulary) -> Iterator[GenerationEvent]:
    """``beam_search``'s results as events, best hypothesis first."""
    for sentence, (ids, lps, reason) in enumerate(found):
        words = vocab.decode(ids) + ([SENTENCE_END] if reason == FINISH_END else [])
        for k, (word, lp) in enumerate(zip(words, lps)):
            yield GenerationEvent(sentence, word, lp, reason if k == len(words) - 1 else None)
