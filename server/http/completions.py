"""OpenAI-style completions on the service core, without HTTP: ``app.py`` routes and streams,
this converts and delegates, as ``servicer.py`` does for gRPC.

A prompt becomes the model's words, each with where it starts in the caller's text
(``Tokenizer.word_spans``); ``Serving.generate`` continues it and ``TextAssembler`` turns
the words into text that continues the prompt. Log-probabilities of a whole completion come
from one ``Serving.score`` of its prompt and generated words, so they are exactly what
ScoreSentence gives for the same words and options; the most probable alternatives come
from ``model/alternatives.py`` under the same scorer. A streamed completion carries each
word's log-probability as the generator reported it (the network's, as gRPC Generate
streams it), since it is sent before the completion is whole.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rnnlm.model.alternatives import top_alternatives
from rnnlm.model.scoring import SentenceScore, Words
from rnnlm.model.stopping import ShouldStop
from rnnlm.model.text import TextAssembler
from rnnlm.model.vocab import SENTENCE_END, UNKNOWN_TOKEN
from rnnlm.server.cache import LoadedModel
from rnnlm.server.errors import ResourceExhausted
from rnnlm.server.http.errors import BadField
from rnnlm.server.http.schema import MAX_STOP_STRINGS, CompletionRequest
from rnnlm.server.http.stops import Released, StopWatch, Token
from rnnlm.server.http.tokens import Prompt, prompt_of
from rnnlm.server.ids import check_model_id
from rnnlm.server.serving import GenerateOptions, ScoreOptions, Serving

FINISH = {"end": "stop", "length": "length"}  # the generator's reasons, in OpenAI's words


@dataclass
class Delta:
    """A piece of one completion (``index``): text, and the tokens that start in it."""

    index: int
    text: str
    tokens: list[Token] = field(default_factory=list)
    finish_reason: str | None = None
    echo: bool = False  # the prompt, echoed


@dataclass
class Choice:
    """One completion as it is put together from its deltas."""

    prompt: Prompt
    echoed: bool  # its text starts with the prompt's
    text: str = ""
    tokens: list[Token] = field(default_factory=list)  # the echoed prompt's, then generated
    finish_reason: str | None = None
    logprobs: dict | None = None

    def add(self, delta: Delta) -> None:
        self.text += delta.text
        self.tokens += delta.tokens
        self.finish_reason = delta.finish_reason or self.finish_reason

    @property
    def generated(self) -> list[Token]:
        return self.tokens[len(self.prompt.echo_tokens()) if self.echoed else 0 :]

    @property
    def ended(self) -> bool:
        """The model chose SENTENCE_END (the generator never produces it as a word)."""
        generated = self.generated
        return bool(generated) and generated[-1].word == SENTENCE_END

    def to_json(self, index: int) -> dict:
        return {
            "index": index,
            "text": self.text,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


@dataclass
class Completions:
    serving: Serving

    # -- requests ----------------------------------------------------------------------

    def model(self, request: CompletionRequest, path_model: str | None) -> LoadedModel:
        """The model a request names (its path's, if any), loaded; the request checked."""
        model_id = path_model or request.model
        if not model_id:
            raise BadField("model", "model is required: a model id (GET /v1/models lists them)")
        if path_model and request.model not in (None, path_model):
            raise BadField("model", f"model is {request.model!r}; the path names {path_model!r}")
        check_request(request)
        most = self.serving.config.max_generated_sentences
        if request.n > most:  # also when nothing is generated: n choices are made anyway
            raise ResourceExhausted(
                f"n {request.n} is over this server's limit of {most} (--max-generated-sentences)"
            )
        return self.serving.cache.get(check_model_id(model_id))

    def prompts(self, model: LoadedModel, request: CompletionRequest) -> list[Prompt]:
        raw: Any = request.prompt
        if isinstance(raw, str) or (raw and isinstance(raw[0], int)):
            raw = [raw]
        if not raw:
            raise BadField("prompt", "prompt is empty: send a text, texts, or token ids")
        cfg = self.serving.config
        if len(raw) * request.n > cfg.max_sentences_per_request:
            raise ResourceExhausted(
                f"{len(raw)} prompts x n {request.n} make {len(raw) * request.n} completions in "
                f"one request; the limit is {cfg.max_sentences_per_request} "
                "(--max-sentences-per-request): split the request"
            )
        limit = cfg.max_tokens_per_sentence
        where = "prompt" if len(raw) == 1 else "prompt[{}]"
        return [prompt_of(model, p, where.format(i), limit) for i, p in enumerate(raw)]

    # -- completing ----------------------------------------------------------------------

    def complete(self, request: CompletionRequest, path_model: str | None = None) -> dict:
        """A whole completion response (``schema.Completion``)."""
        model = self.model(request, path_model)
        prompts = self.prompts(model, request)
        choices = [Choice(p, request.echo) for p in prompts for _ in range(request.n)]
        for delta in self.deltas(model, request, prompts):
            choices[delta.index].add(delta)
        if request.logprobs is not None:
            self._add_logprobs(model, request, choices)
        out = [c.to_json(i) for i, c in enumerate(choices)]
        return response(model, out, usage(prompts, choices))

    def stream(
        self,
        request: CompletionRequest,
        path_model: str | None = None,
        should_stop: ShouldStop | None = None,
    ) -> Iterator[dict]:
        """The chunks of a streamed completion (``schema.Completion`` each), then one of
        usage when asked for. Nothing runs until the first is asked for."""
        model = self.model(request, path_model)
        if request.logprobs:
            raise BadField(
                "logprobs",
                f"logprobs {request.logprobs} asks for alternatives, which are not streamed: "
                "send logprobs 0 or null with stream, or stream false",
            )
        prompts = self.prompts(model, request)
        echoed: list[list[float | None]] = []
        if request.echo and request.logprobs is not None:
            scores = self._scores(model, request, [p.words for p in prompts], eos=False)
            echoed = [
                values_of(s, ended=False, eos=False, start=p.start) for p, s in zip(prompts, scores)
            ]
        choices = [Choice(p, request.echo) for p in prompts for _ in range(request.n)]
        for delta in self.deltas(model, request, prompts, should_stop):
            choices[delta.index].add(delta)
            logprobs = None
            if request.logprobs is not None:
                values: list[float | None] = [t.logprob for t in delta.tokens]
                if delta.echo:
                    values = echoed[delta.index // request.n]
                logprobs = logprobs_object(delta.tokens, values, None)
            item = {"index": delta.index, "text": delta.text, "logprobs": logprobs}
            yield response(model, [{**item, "finish_reason": delta.finish_reason}], None)
        if request.stream_options and request.stream_options.include_usage:
            yield response(model, [], usage(prompts, choices))

    def deltas(
        self,
        model: LoadedModel,
        request: CompletionRequest,
        prompts: Sequence[Prompt],
        should_stop: ShouldStop | None = None,
    ) -> Iterator[Delta]:
        """Each completion's pieces in order: prompt after prompt, for each its ``n``
        completions (index ``prompt * n + j``), each its echo, then its words."""
        n = request.n
        for i, prompt in enumerate(prompts):
            if request.echo:
                tokens = prompt.echo_tokens()
                yield from (Delta(i * n + j, prompt.text, tokens, echo=True) for j in range(n))
            if request.max_tokens == 0:
                yield from (Delta(i * n + j, "", [], "length") for j in range(n))
            else:
                yield from self._generated(model, request, prompt, i * n, should_stop)

    def _generated(
        self,
        model: LoadedModel,
        request: CompletionRequest,
        prompt: Prompt,
        first: int,
        should_stop: ShouldStop | None,
    ) -> Iterator[Delta]:
        """The deltas of one prompt's completions, a word at a time."""
        stops, start = stops_of(request), len(prompt.text) if request.echo else 0
        events = self.serving.generate(
            model.model_id, prompt.words, generate_options(request), should_stop
        )
        with contextlib.closing(events):
            sentence, done = -1, False
            assembler, watch = TextAssembler(prompt.words, prompt.text), StopWatch(stops)
            for generated in events:
                event = generated.event
                if event.sentence != sentence:
                    sentence, done = event.sentence, False
                    assembler, watch = TextAssembler(prompt.words, prompt.text), StopWatch(stops)
                if done:  # a stop string ended it: skip to the next sentence
                    continue
                if event.token == SENTENCE_END:
                    out = watch.finish()
                    out.tokens.append(Token(SENTENCE_END, watch.length, event.logprob))
                else:
                    out = watch.add(assembler.add(event.token), event.token, event.logprob)
                    if event.finish_reason and not out.stopped:
                        rest = watch.finish()
                        out = Released(out.text + rest.text, out.tokens + rest.tokens)
                done = out.stopped or event.finish_reason is not None
                reason = "stop" if out.stopped else FINISH.get(event.finish_reason or "")
                moved = [Token(t.word, t.offset + start, t.logprob) for t in out.tokens]
                yield Delta(first + sentence, out.text, moved, reason)

    # -- log-probabilities -------------------------------------------------------------

    def _scores(
        self, model: LoadedModel, request: CompletionRequest, sentences: list, eos: bool
    ) -> list[SentenceScore]:
        options = ScoreOptions(scorer=request.scorer, bos=request.bos, eos=eos, allow_empty=True)
        scored = self.serving.score(model.model_id, [Words(s) for s in sentences], options)
        return [ranked.score for ranked in scored.scores]

    def _add_logprobs(
        self, model: LoadedModel, request: CompletionRequest, choices: list[Choice]
    ) -> None:
        """Each choice's ``logprobs``, from one scoring of all of them (the prompt's words,
        the generated ones and, where the model ended it, SENTENCE_END)."""
        sentences = [
            (*c.prompt.words, *(t.word for t in c.generated if t.word != SENTENCE_END))
            for c in choices
        ]
        scores = self._scores(model, request, sentences, eos=True)
        for choice, words, score in zip(choices, sentences, scores):
            start = choice.prompt.start  # an echoed SENTENCE_START
            values = values_of(score, choice.ended, start=start)
            top = None
            if request.logprobs:
                alternatives = top_alternatives(
                    model.lm,
                    words,
                    request.logprobs,
                    bos=request.bos,
                    eos=True,
                    scorer=request.scorer,
                )
                top = top_of(score, alternatives, choice.ended, start)
            skip = 0 if request.echo else start + len(choice.prompt.words)
            choice.logprobs = logprobs_object(
                choice.tokens, values[skip:], None if top is None else top[skip:]
            )


def values_of(
    score: SentenceScore, ended: bool, eos: bool = True, start: bool = False
) -> list[float | None]:
    """ln p of each word of a sentence scored with ``eos`` and, if ``ended``, of its
    SENTENCE_END; None for a first word that was context only (``bos`` false) and, with
    ``start``, for an echoed SENTENCE_START before the words."""
    values: list[float | None] = [t.logprob for t in score.tokens]
    if eos and not ended:
        values = values[:-1]
    return pad(values, start + len(score.words) + ended)


def top_of(
    score: SentenceScore, alternatives: list, ended: bool, start: bool = False
) -> list[dict | None]:
    """The alternatives at each position as OpenAI's dicts, aligned as ``values_of``. The
    scored token's own entry takes its score's value, so that a token that is the most
    probable one compares equal to the best alternative (lm-eval's ``is_greedy``)."""
    tops: list[dict | None] = []
    for token, pairs in zip(score.tokens, alternatives):
        top = dict(pairs)
        key = UNKNOWN_TOKEN if token.unknown else token.token
        if key in top:
            top[key] = token.logprob
        tops.append(top)
    return pad(tops if ended or not tops else tops[:-1], start + len(score.words) + ended)


def pad(values: list, size: int) -> list:
    """``values`` with None before them up to ``size``: the first word of a fragment."""
    return [None] * (size - len(values)) + values


def logprobs_object(tokens: list[Token], values: list, top: list | None) -> dict:
    return {
        "tokens": [t.word for t in tokens],
        "token_logprobs": values,
        "top_logprobs": top,
        "text_offset": [t.offset for t in tokens],
    }


def response(model: LoadedModel, choices: list[dict], used: dict | None) -> dict:
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model.model_id,
        "system_fingerprint": f"{model.model_id}:{model.version}",
        "choices": choices,
        "usage": used,
    }


def usage(prompts: Sequence[Prompt], choices: Sequence[Choice]) -> dict:
    prompt_tokens = sum(len(p.words) for p in prompts)
    completion_tokens = sum(len(c.generated) for c in choices)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# -- converting requests -----------------------------------------------------------------


def check_request(request: CompletionRequest) -> None:
    """Refuse OpenAI's fields at values this server cannot honour, naming each."""
    neutral = (
        ("suffix", not request.suffix, "inserting text is not supported; send null"),
        ("presence_penalty", not request.presence_penalty, "penalties are not supported; send 0"),
        ("frequency_penalty", not request.frequency_penalty, "penalties are not supported; send 0"),
        ("best_of", request.best_of in (None, request.n), "best_of must be null or n"),
        ("logit_bias", not request.logit_bias, "logit_bias is not supported; send null"),
    )
    for name, ok, why in neutral:
        if not ok:
            raise BadField(name, f"{name} {getattr(request, name)!r}: {why}")
    if len(stops_of(request)) > MAX_STOP_STRINGS:
        raise BadField(
            "stop", f"stop has {len(stops_of(request))} strings; at most {MAX_STOP_STRINGS}"
        )


def stops_of(request: CompletionRequest) -> list[str]:
    stop = request.stop
    return [stop] if isinstance(stop, str) else list(stop or [])


def generate_options(request: CompletionRequest) -> GenerateOptions:
    """Temperature 0 is greedy decoding; null values leave the model's defaults."""
    greedy = request.temperature == 0
    return GenerateOptions(
        num_sentences=request.n,
        max_tokens=request.max_tokens or 0,
        temperature=None if greedy else request.temperature,
        top_p=request.top_p,
        seed=request.seed,
        method="greedy" if greedy else None,
    )
