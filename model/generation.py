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
from rnnlm.model.detokenize import detokenize
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


def choose_tokens(
    logp: np.ndarray,
    produced: np.ndarray,
    configs: Sequence[GenerationConfig],
    uniforms: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The next token of each row of log-probs (n, V), all rows at once: row i has made
    ``produced[i]`` words under ``configs[i]`` and draws with ``uniforms[i]`` in [0, 1)
    (its stream's own generator: a stream samples the same whatever else is decoded beside
    it). Greedy rows take the best allowed token; sampling rows apply temperature, top-k and
    top-p, then invert the cumulative distribution at their uniform. Returns the tokens
    (n,) int64 and their log-probs (n,). The NumPy engine's; the torch engines choose in
    torch (engines/torch_sampling.py), by the same rules."""
    n, vocab_size = logp.shape
    scores = logp.copy()
    scores[:, [UNK_ID, START_ID]] = -np.inf  # never produced (see the module doc)
    min_length = np.array([c.min_length for c in configs])
    scores[produced < min_length, END_ID] = -np.inf
    greedy = np.array([c.method == "greedy" for c in configs])
    chosen = np.empty(n, dtype=np.int64)
    if greedy.any():
        chosen[greedy] = np.argmax(scores[greedy], axis=1)
    if greedy.all():
        return chosen, logp[np.arange(n), chosen]
    rows = np.flatnonzero(~greedy)
    picked = [configs[int(i)] for i in rows]
    scores = scores[rows]
    temperature = np.array([c.temperature for c in picked])
    if np.any(temperature != 1.0):
        scores /= temperature[:, None]
    allowed_count = np.isfinite(scores).sum(axis=1)
    for k in {c.top_k for c in picked if c.top_k}:  # one pass per distinct top_k
        these = np.array([c.top_k == k for c in picked]) & (k < allowed_count)
        if these.any():
            kth = np.partition(scores[these], -k, axis=1)[:, -k]
            part = scores[these]
            part[part < kth[:, None]] = -np.inf
            scores[these] = part
    # Unnormalised probabilities: the draw below scales by each row's total anyway.
    probs = np.exp(scores - scores.max(axis=1, keepdims=True))
    top_p = np.array([c.top_p for c in picked])
    nucleus = top_p < 1.0
    if nucleus.any():
        part = probs[nucleus]
        part /= part.sum(axis=1, keepdims=True)
        order = np.argsort(-part, axis=1, kind="stable")
        cumulative = np.cumsum(np.take_along_axis(part, order, axis=1), axis=1)
        keep = (cumulative < top_p[nucleus][:, None]).sum(axis=1) + 1  # searchsorted, left
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(vocab_size)[None, :], axis=1)
        part = np.where(ranks < keep[:, None], part, 0.0)
        probs[nucleus] = part / part.sum(axis=1, keepdims=True)
    cdf = np.cumsum(probs, axis=1)
    targets = uniforms[rows] * cdf[:, -1]
    index = [np.searchsorted(row, x, side="right") for row, x in zip(cdf, targets)]
    chosen[rows] = np.minimum(index, vocab_size - 1)
    return chosen, logp[np.arange(n), chosen]


class SampleDecoding:
    """One sampling (or greedy) request decoded a step at a time by a driver
    (``decoding.py``): one row, the sentence in progress; the sentences one after another,
    each from the prompt's state, with one generator for the request (``config.seed``)."""

    rows = 1

    def __init__(self, vocab: Vocabulary, config: GenerationConfig) -> None:
        self.vocab, self.config = vocab, config
        self.rng = np.random.default_rng(config.seed)
        self.sentence = 0
        self.produced = 0  # words of the sentence in progress

    def draw(self) -> float:
        """This step's uniform: greedy decoding draws none, so its generator stays put."""
        return 0.0 if self.config.method == "greedy" else float(self.rng.random())

    def take(self, token: int, token_logp: float) -> tuple[GenerationEvent, str]:
        """The event of choosing ``token``, and what comes next: CONTINUE (feed it),
        RESTART (the next sentence, from the prompt) or DONE."""
        vocab, config, sentence = self.vocab, self.config, self.sentence
        if token == END_ID:
            event = GenerationEvent(sentence, SENTENCE_END, token_logp, FINISH_END)
        elif self.produced + 1 == config.max_length:
            event = GenerationEvent(sentence, vocab.tokens[token], token_logp, FINISH_LENGTH)
        else:
            self.produced += 1
            return GenerationEvent(sentence, vocab.tokens[token], token_logp), CONTINUE
        self.sentence, self.produced = sentence + 1, 0
        return event, (RESTART if self.sentence < config.num_sentences else DONE)


# What a sampling request does after a token (SampleDecoding.take).
CONTINUE, RESTART, DONE = "continue", "restart", "done"


class BeamDecoding:
    """One beam search decoded a step at a time by a driver (``decoding.py``); its rows
    are the live hypotheses. ``found`` holds the result once ``advance`` returns None.

    Each step keeps the ``width`` best candidates; one that ends the sentence among them is
    set aside as finished (an ending ranked below them is not, as in Hugging Face's beam
    search), so width 1 is exactly greedy decoding. Stops once ``width`` hypotheses have
    finished and no live one scores higher than the worst of them (log-probabilities only
    fall as a hypothesis grows, so none could overtake it). The ``num_sentences`` most
    probable continuations found come out best first (distinct token sequences: each is a
    different path through the beam).
    """

    def __init__(self, vocab: Vocabulary, config: GenerationConfig) -> None:
        self.vocab, self.config = vocab, config
        self.width = config.width
        self.alive: list[tuple[list[int], list[float]]] = [([], [])]
        self.scores = np.zeros(1)
        self.finished: list[tuple[float, list[int], list[float], str]] = []
        self.found: Hypotheses = []

    @property
    def rows(self) -> int:
        return len(self.alive)

    def advance(self, logp: np.ndarray) -> tuple[list[int], list[int]] | None:
        """From the live hypotheses' next-token log-probs (A, V): the rows (parents) and
        tokens to feed for the next step, or None when the search is over."""
        width, config = self.width, self.config
        length = len(self.alive[0][0])
        allowed = _allowed(len(self.vocab), length, config)
        candidates = np.where(allowed[None, :], logp, -np.inf) + self.scores[:, None]  # (A, V)
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
            ids, lps = self.alive[parent]
            step_lps = [*lps, float(logp[parent, token])]
            if token == END_ID:
                if rank < width:
                    self.finished.append((float(flat[index]), ids, step_lps, FINISH_END))
            elif len(next_alive) < width:
                parents.append(parent)
                tokens.append(token)
                next_alive.append(([*ids, token], step_lps))
        self.finished = sorted(self.finished, key=lambda f: -f[0])[:width]
        next_scores = np.array([sum(lps) for _, lps in next_alive])
        over = False
        if length + 1 >= config.max_length:  # the new words reach the limit: stop here
            self.finished += [
                (float(s), ids, lps, FINISH_LENGTH)
                for s, (ids, lps) in zip(next_scores, next_alive)
            ]
            over = True
        elif not next_alive or (
            len(self.finished) >= width and next_scores.max() <= self.finished[-1][0]
        ):
            over = True
        if over:
            self.finished.sort(key=lambda f: -f[0])
            best = self.finished[: config.num_sentences]
            self.found = [(ids, lps, reason) for _, ids, lps, reason in best]
            return None
        self.alive, self.scores = next_alive, next_scores
        return parents, tokens


def beam_events(found: Hypotheses, vocab: Vocabulary) -> Iterator[GenerationEvent]:
    """``beam_search``'s results as events, best hypothesis first."""
    for sentence, (ids, lps, reason) in enumerate(found):
        words = vocab.decode(ids) + ([SENTENCE_END] if reason == FINISH_END else [])
        for k, (word, lp) in enumerate(zip(words, lps)):
            yield GenerationEvent(sentence, word, lp, reason if k == len(words) - 1 else None)
