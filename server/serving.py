"""The service core: scoring and generation as plain-Python calls on domain objects.

A front end (the gRPC servicer; later an HTTP or OpenAI-style one) converts a request into the
objects below, calls ``Serving`` and converts what comes back. What every front end must do
alike lives here: the server's limits, the model cache with its batchers, and the counts of
scored sentences and generated tokens. Language itself (tokenising, ranking, the generation
defaults) is model/'s: nothing here restates it.

Long calls take ``should_stop`` (the gRPC front end passes its ``CallWatch``) and raise
``stopping.Stopped`` once it says the caller left. Errors are ``errors.ServiceError``s or the
model's ``ValueError``s, which a front end maps to its own status codes. Option names are the
API's (``max_tokens``, not ``max_length``), so that limit messages read the same everywhere.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rnnlm.model import LanguageModel
from rnnlm.model.generation import DEFAULT_MAX_LENGTH, GenerationEvent
from rnnlm.model.gradient_flow import DEFAULT_MAX_DISTANCE, DISTANCE, GradientFlow, gradient_flow
from rnnlm.model.scoring import RankedScore, SentenceInput, Words, rank_scores
from rnnlm.model.stopping import ShouldStop, check
from rnnlm.server.cache import ModelCache
from rnnlm.server.config import ServerConfig
from rnnlm.server.errors import InvalidArgument, ResourceExhausted
from rnnlm.server.ids import check_model_id
from rnnlm.server.metrics import Metrics

# NLTK tokenises at ~0.4 us a character, and a text's word count is known only afterwards:
# a sentence or prompt text longer than this many characters per allowed word is refused
# before it is tokenised, so that one request cannot buy seconds of tokenising only to be
# refused (a 15 MB sentence took 6.6 s). 64 is far above any language's mean word length.
MAX_CHARS_PER_WORD = 64
# The most generated tokens one message may carry (GenerateRequest.max_tokens_per_message).
MAX_TOKENS_PER_MESSAGE = 256
# How long a Generate message after the first waits for more tokens (up to the request's
# max_tokens_per_message, or the end of the stream). Each message costs the server ~0.25 ms
# of Python under the one interpreter lock and a thread's wake-up; 16 streams sending a
# message a token got 2.4-3.0x one stream's tokens/s, with a 5 ms wait 2.6-3.0x, with
# 20 ms 3.2-4.8x (bench_generate.py, 3 and 7 runs). 20 ms: 50 updates a second still.
MESSAGE_LINGER_SECONDS = 0.02


def _given(**options: Any) -> dict[str, Any]:
    """The options that were set (None: leave it to the model's default)."""
    return {name: value for name, value in options.items() if value is not None}


@dataclass(frozen=True)
class ScoreOptions:
    """How to score and rank; None: the model's default."""

    scorer: str | None = None  # 'neural', 'ngram' or 'interpolated'
    neural_weight: float | None = None  # overrides the tuned weight of the network
    bos: bool | None = None  # score the first word after SENTENCE_START
    eos: bool | None = None  # score SENTENCE_END after the last word
    length_norm: str | None = None  # what ranking sorts by: 'none', 'average', 'gnmt'
    length_alpha: float | None = None  # GNMT's alpha
    rank: bool = False  # most probable first; False: in input order
    allow_empty: bool = False  # score a sentence without words instead of refusing it


@dataclass(frozen=True)
class Scored:
    model_id: str
    model_version: int
    scorer: str  # the scorer used
    neural_weight: float  # the network's weight used
    scores: list[RankedScore]  # input order, or most probable first when ranked


@dataclass(frozen=True)
class MeasuredFlow:
    model_id: str
    model_version: int
    flow: GradientFlow  # the vanishing-gradient report (model/gradient_flow.py)


@dataclass(frozen=True)
class GenerateOptions:
    """How to generate. 0 or None: the model's default (max_tokens: that default, capped at
    this server's limit); method None: sample, or beam search when beam_width > 1."""

    num_sentences: int = 0
    min_tokens: int = 0
    max_tokens: int = 0
    temperature: float | None = None
    top_k: int = 0
    top_p: float | None = None
    seed: int | None = None
    method: str | None = None  # 'sample', 'greedy' or 'beam'
    beam_width: int = 0
    # ``generate_batches``: tokens handed over at once, at most (0 or 1: one at a time).
    max_tokens_per_message: int = 0


@dataclass(frozen=True)
class GeneratedToken:
    model_version: int  # the version generating
    event: GenerationEvent  # a sentence's last one carries its text


@dataclass
class Serving:
    """Score and generate with the models of one server, within its limits."""

    config: ServerConfig
    cache: ModelCache
    metrics: Metrics
    # A stream holds a worker thread for its whole life: bounded, so that watchers and
    # generators can never take every thread from the unary calls.
    _streams: threading.BoundedSemaphore = field(init=False)
    _reports: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._streams = threading.BoundedSemaphore(self.config.max_streams)

    def score(
        self,
        model_id: str,
        sentences: Sequence[SentenceInput],
        options: ScoreOptions = ScoreOptions(),
        should_stop: ShouldStop | None = None,
    ) -> Scored:
        """Score ``sentences`` (texts or word lists) with the model's current version."""
        self._check_count(sentences)
        model = self.cache.get(check_model_id(model_id))
        words = []
        for i, sentence in enumerate(sentences):
            check(should_stop)  # NLTK takes ~0.4 us a character: long texts add up
            words.append(self._words(model.lm, sentence, f"sentences[{i}]"))
            if not words[-1] and not options.allow_empty:
                raise InvalidArgument(
                    f"sentences[{i}] has no words; send sentences with at least one word "
                    "(allow_empty scores an empty one, as an n-best list's empty hypothesis)"
                )
            scored = len(words[-1]) - (options.bos is False) + (options.eos is not False)
            if scored <= 0:  # its perplexity would be 0/0
                raise InvalidArgument(
                    f"sentences[{i}] leaves nothing to score: without bos its first word is "
                    "context only, and without eos the end is not scored; give it more words"
                )
        scorer, weight = model.lm.scoring_setup(options.scorer, options.neural_weight)
        given = _given(
            scorer=options.scorer,
            neural_weight=options.neural_weight,
            bos=options.bos,
            eos=options.eos,
        )
        scores = model.score(words, should_stop=should_stop, **given)
        norm = _given(length_norm=options.length_norm, length_alpha=options.length_alpha)
        ranked = rank_scores(scores, **norm, sort=options.rank)
        self.metrics.scored.inc(len(scores))
        return Scored(model.model_id, model.version, scorer, weight, ranked)

    def gradient_flow(
        self,
        model_id: str,
        sentences: Sequence[SentenceInput],
        max_distance: int | None = None,
        should_stop: ShouldStop | None = None,
    ) -> MeasuredFlow:
        """The vanishing-gradient report of the model's current version on held-out
        ``sentences``, within the limits of scoring; ``max_distance`` None: the default.
        Rare and unbatched: it runs in the calling thread, not through the batcher, one
        report at a time (a few seconds of CPU each), so reports never starve scoring."""
        self._check_count(sentences)
        distance = DEFAULT_MAX_DISTANCE if max_distance is None else max_distance
        DISTANCE.check("max_distance", distance)  # before the model is loaded
        model = self.cache.get(check_model_id(model_id))
        words = []
        for i, sentence in enumerate(sentences):
            check(should_stop)
            words.append(self._words(model.lm, sentence, f"sentences[{i}]"))
        if not self._reports.acquire(blocking=False):
            raise ResourceExhausted(
                "another gradient-flow report is being computed on this server (one at a "
                "time); retry in a few seconds"
            )
        try:
            flow = gradient_flow(model.lm, words, distance, should_stop)
        finally:
            self._reports.release()
        return MeasuredFlow(model.model_id, model.version, flow)

    def generate(
        self,
        model_id: str,
        prompt: SentenceInput | None = None,
        options: GenerateOptions = GenerateOptions(),
        should_stop: ShouldStop | None = None,
    ) -> Generator[GeneratedToken, None, None]:
        """Generated tokens as they come, holding a stream slot until the last (or until
        the iterator is closed). ``should_stop`` is checked before every decoding step and
        before each token is handed on."""
        with contextlib.closing(
            self.generate_batches(model_id, prompt, options, should_stop)
        ) as batches:
            for batch in batches:
                yield from batch

    def generate_batches(
        self,
        model_id: str,
        prompt: SentenceInput | None = None,
        options: GenerateOptions = GenerateOptions(),
        should_stop: ShouldStop | None = None,
    ) -> Generator[list[GeneratedToken], None, None]:
        """``generate``'s tokens in lists, for a front end that pays per message: each list
        is the next token (waited for) and the tokens decoded after it, up to
        ``options.max_tokens_per_message`` in all. The first list goes out as soon as its
        token exists; a later one waits up to ``MESSAGE_LINGER_SECONDS`` for the list to
        fill or the stream to end."""
        decoding = self._decoding(options)  # the limits first: no slot for a refused call
        most = max(options.max_tokens_per_message, 1)
        with self.stream_slot():
            model = self.cache.get(check_model_id(model_id))
            where = "prompt_text" if isinstance(prompt, str) else "prompt_words"
            words = None if prompt is None else self._words(model.lm, prompt, where)
            events = model.lm.stream(words, should_stop=should_stop, **decoding)
            with contextlib.closing(events):
                for sent, event in enumerate(events):
                    if sent and most > 1:
                        events.wait_ready(most - 1, MESSAGE_LINGER_SECONDS)
                    batch, failed = [event], None
                    try:
                        while len(batch) < most and events.ready():
                            if (more := next(events, None)) is None:
                                break  # the end: the loop's next ``next`` ends too
                            batch.append(more)
                    except Exception as err:  # the tokens before it still go out first
                        failed = err
                    check(should_stop)  # the caller went away: stop decoding
                    self.metrics.generated.inc(len(batch))
                    yield [GeneratedToken(model.version, e) for e in batch]
                    if failed is not None:
                        raise failed

    @contextlib.contextmanager
    def stream_slot(self) -> Iterator[None]:
        """One of the server's --max-streams, for a call that streams (Generate, Watch)."""
        if not self._streams.acquire(blocking=False):
            raise ResourceExhausted(
                f"{self.config.max_streams} Watch/Generate streams are open on this server, "
                "its limit (--max-streams); retry later or on another replica"
            )
        self.metrics.streams_open.inc()
        try:
            yield
        finally:
            self.metrics.streams_open.dec()
            self._streams.release()

    def _check_count(self, sentences: Sequence[SentenceInput]) -> None:
        """Refuse no sentences, or more than --max-sentences-per-request."""
        limit = self.config.max_sentences_per_request
        if not sentences:
            raise InvalidArgument("sentences is empty; send at least one sentence")
        if len(sentences) > limit:
            raise ResourceExhausted(
                f"{len(sentences)} sentences in one request; the limit is {limit} "
                "(--max-sentences-per-request): split the request"
            )

    def _words(self, lm: LanguageModel, sentence: SentenceInput, where: str) -> Words:
        """The model's words for ``sentence``, within --max-tokens-per-sentence."""
        limit = self.config.max_tokens_per_sentence
        check_sentence_size(sentence, where, limit)  # bounds the tokenising
        words = lm.words(sentence, where)
        if len(words) > limit:
            raise ResourceExhausted(too_many_words(where, len(words), limit))
        return words

    def _decoding(self, options: GenerateOptions) -> dict[str, Any]:
        """``LanguageModel.stream``'s options for ``options`` (see ``GenerateOptions``),
        checked against this server's limits."""
        cfg = self.config
        for name, value, limit, flag in (
            ("num_sentences", options.num_sentences, cfg.max_generated_sentences, "sentences"),
            ("beam_width", options.beam_width, cfg.max_generated_sentences, "sentences"),
            ("max_tokens", options.max_tokens, cfg.max_generated_tokens, "tokens"),
        ):
            if value < 0:
                raise InvalidArgument(f"{name} must be >= 0 (0: the default), got {value}")
            if value > limit:
                raise ResourceExhausted(
                    f"{name} {value} is over this server's limit of {limit} "
                    f"(--max-generated-{flag})"
                )
        max_tokens = options.max_tokens or min(DEFAULT_MAX_LENGTH, cfg.max_generated_tokens)
        if not 0 <= options.min_tokens <= max_tokens:
            raise InvalidArgument(
                f"min_tokens must be in [0, max_tokens={max_tokens}], got {options.min_tokens}"
            )
        if options.top_k < 0:
            raise InvalidArgument(f"top_k must be >= 0 (0: no top-k filter), got {options.top_k}")
        per_message = options.max_tokens_per_message
        if not 0 <= per_message <= MAX_TOKENS_PER_MESSAGE:
            raise InvalidArgument(
                f"max_tokens_per_message must be in [0, {MAX_TOKENS_PER_MESSAGE}] (0 or 1: one "
                f"token per message), got {per_message}"
            )
        return _given(
            method=options.method or ("beam" if options.beam_width > 1 else None),
            num_sentences=options.num_sentences or None,
            min_length=options.min_tokens or None,
            max_length=max_tokens,
            temperature=options.temperature,
            top_k=options.top_k or None,
            top_p=options.top_p,
            seed=options.seed,
            beam_width=options.beam_width or None,
        )


def check_sentence_size(sentence: SentenceInput, where: str, max_words: int) -> None:
    """Refuse, before tokenising, a text that cannot be within ``max_words`` words (or a
    list of more words than that)."""
    if not isinstance(sentence, str):
        if len(sentence) > max_words:
            raise ResourceExhausted(too_many_words(where, len(sentence), max_words))
        return
    limit = max_words * MAX_CHARS_PER_WORD
    if len(sentence) > limit:
        raise ResourceExhausted(
            f"{where} is {len(sentence):,} characters; at most {limit:,} are accepted "
            f"({MAX_CHARS_PER_WORD} a word for the limit of {max_words} words, "
            "--max-tokens-per-sentence): split it"
        )


def too_many_words(where: str, count: int, max_words: int) -> str:
    return f"{where} has {count} words; the limit is {max_words} (--max-tokens-per-sentence)"
