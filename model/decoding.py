"""Continuous batching for generation: one decoding loop per model advances every request
being decoded (sampled sentences, greedy ones, beam hypotheses) in one batched step.

Each request is a ``SampleDecoding`` or ``BeamDecoding`` (generation.py) owning some rows
of the batch: one for a sentence being sampled, one per live hypothesis for a beam. A step
of the loop (``Decoder._step``):

1. new requests join: their prompts are read (one row each) and appended to the batch;
2. requests whose caller went away (``should_stop``, or the event iterator closed) leave;
3. every sampling row picks its token in one vectorised pass (the engine's
   ``choose_tokens``, in torch for the torch engines, each request drawing from its own
   generator), every beam picks its hypotheses;
4. the rows that go on are gathered (``select_state``) and fed in one ``engine.step``;
   a request starting its next sampled sentence rejoins from its prompt's state.

A request decoded beside others produces what it produces alone: the same code, the same
draws from its own generator (tested). The loop runs in a thread of its own while there is
work (``submit``); ``sample_events`` and ``beam_search`` drive it in the caller's thread for
one request.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnlm.model.engines import Engine
from rnnlm.model.generation import (
    CONTINUE,
    RESTART,
    BeamDecoding,
    GenerationConfig,
    GenerationEvent,
    Hypotheses,
    SampleDecoding,
    beam_events,
)
from rnnlm.model.stopping import ShouldStop, Stopped
from rnnlm.model.vocab import START_ID, Vocabulary

log = logging.getLogger("rnnlm.model")

# How long an idle loop thread waits for new requests before it ends (a new one starts it).
IDLE_SECONDS = 5.0
CLOSE_SECONDS = 5.0  # how long the exit waits for a loop's step to end
# The decoders whose loop has run: closed at exit (``Decoder.close``).
_RUNNING: weakref.WeakSet[Decoder] = weakref.WeakSet()
_END = object()  # the last item of a request's queue


@dataclass(eq=False)
class _Request:
    """One request in the loop: its decoding, its rows, and where its events go."""

    decoding: SampleDecoding | BeamDecoding
    prompt_ids: np.ndarray
    should_stop: ShouldStop | None
    out: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)
    abandoned: bool = False  # the caller closed its iterator
    prompt: tuple[Any, Any] | None = None  # the prompt's (1, V) log-probs (the engine's) and state

    ended: bool = False  # its last item (the end, or an error) is in ``out``
    # A reader waiting for ``count`` items in ``out`` (``EventStream.wait_ready``).
    waiting: tuple[threading.Event, int] | None = None
    woken: threading.Event = field(default_factory=threading.Event)  # what ``waiting`` holds

    def stopped(self) -> bool:
        return self.abandoned or (self.should_stop is not None and self.should_stop())

    def put(self, item: Any) -> None:
        """Hand ``item`` (an event, the end, an error) to the reader; wake a waiting one
        once it has what it waits for."""
        self.out.put(item)
        if item is _END or isinstance(item, BaseException):
            self.ended = True
        waiting = self.waiting
        if waiting is not None and (self.ended or self.out.qsize() >= waiting[1]):
            waiting[0].set()


class EventStream(Iterator[GenerationEvent]):
    """One request's events as the loop produces them: ``next`` waits for the next one,
    ``ready()`` counts those already there (the end or an error counting as one), which
    ``next`` hands over without waiting: a front end paying per message can send them
    together. Closing the stream, or dropping it, drops the request at the loop's next step."""

    def __init__(self, request: _Request, events: Iterator[GenerationEvent]) -> None:
        self._request, self._events = request, events

    def __next__(self) -> GenerationEvent:
        return next(self._events)

    def ready(self) -> int:
        return self._request.out.qsize()

    def wait_ready(self, count: int, timeout: float) -> None:
        """Wait until ``count`` events are ready, the request has ended (its last event is
        there) or ``timeout`` seconds have passed, whichever comes first; now and then
        sooner (a wake-up meant for the previous wait): a hint for how many to send
        together, never a guarantee of ``count``."""
        request = self._request
        if request.ended or request.out.qsize() >= count:
            return
        # One event a request, not a message (a loop that read ``waiting`` just before it
        # was cleared may still set it: this wait then ends early, the message smaller).
        woken = request.woken
        woken.clear()
        request.waiting = (woken, count)
        try:  # asked again: the loop may have put what was waited for in between
            if not (request.ended or request.out.qsize() >= count):
                woken.wait(timeout)
        finally:
            request.waiting = None

    def through(
        self, transform: Callable[[Iterator[GenerationEvent]], Iterator[GenerationEvent]]
    ) -> EventStream:
        """This stream's events passed through ``transform``, a generator that gives one
        event for each it takes, as it takes it (``with_text``): ``ready`` still holds."""
        return EventStream(self._request, transform(self._events))

    def close(self) -> None:
        self._request.abandoned = True


class Decoder:
    """The decoding loop of one engine (a loaded model); thread-safe ``submit``."""

    def __init__(self, engine: Engine, vocab: Vocabulary) -> None:
        self.engine, self.vocab = engine, vocab
        self._lock = threading.Condition()
        self._closed = False  # the interpreter is exiting: the loop ends at its next step
        self._pending: list[_Request] = []  # submitted, not yet in the batch
        self._thread: threading.Thread | None = None
        # The batch (touched by the thread that runs the loop only): the requests in row
        # order with their row counts, the rows' next-token log-probs (R, V) in the engine's
        # own array (``Engine.decoding_step``), their state.
        self._active: list[tuple[_Request, int]] = []
        self._joining: list[_Request] = []  # taken from _pending, their prompts being read
        self._logp: Any = None
        self._state: Any = None

    # -- the callers' side ---------------------------------------------------------------

    def submit(
        self,
        prompt_ids: np.ndarray,
        config: GenerationConfig,
        should_stop: ShouldStop | None = None,
    ) -> EventStream:
        """Decode in the shared loop; the events as they come (``Stopped`` when
        ``should_stop`` says so; closing the stream drops the request)."""
        request = self._request(prompt_ids, config, should_stop)
        with self._lock:
            self._pending.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="decoding", daemon=True)
                self._thread.start()
                _RUNNING.add(self)
            self._lock.notify()
        return EventStream(request, self._events(request))

    def _request(
        self, prompt_ids: np.ndarray, config: GenerationConfig, should_stop: ShouldStop | None
    ) -> _Request:
        kind = BeamDecoding if config.method == "beam" else SampleDecoding
        return _Request(kind(self.vocab, config), prompt_ids, should_stop)

    @staticmethod
    def _events(request: _Request) -> Iterator[GenerationEvent]:
        try:
            while (item := request.out.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            request.abandoned = True  # the loop drops it at its next step

    def run_alone(
        self,
        prompt_ids: np.ndarray,
        config: GenerationConfig,
        should_stop: ShouldStop | None = None,
    ) -> tuple[list[GenerationEvent], _Request]:
        """Decode one request in the caller's thread, by the same steps as the loop."""
        request = self._request(prompt_ids, config, should_stop)
        self._pending.append(request)
        events: list[GenerationEvent] = []
        while self._active or self._pending:
            self._step()
            while not request.out.empty():
                item = request.out.get()
                if isinstance(item, BaseException):
                    raise item
                if item is not _END:
                    events.append(item)
        return events, request

    # -- the loop ------------------------------------------------------------------------

    def close(self) -> None:
        """End the loop and wait for its thread (at most ``timeout``): called at exit, so
        that no daemon thread is inside a torch operation while the interpreter finalises
        (its return there aborts the process: "terminate called without an active
        exception")."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._lock.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_SECONDS)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    self._thread = None
                    return
                if not self._active and not self._pending:
                    self._lock.wait(IDLE_SECONDS)
                    if not self._pending:
                        self._thread = None
                        return
            try:
                self._step()
            except Exception as err:  # the engine failed: every request hears of it
                log.exception("decoding step failed")
                self._fail_all(err)

    def _fail_all(self, err: Exception) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for request in [r for r, _ in self._active] + self._joining + pending:
            request.put(err)
        self._active, self._logp, self._state = [], None, None
        self._joining = []

    def _step(self) -> None:
        with self._lock:
            self._joining, self._pending = self._pending, []
        self._read_prompts(self._joining)
        for request in self._joining:
            self._join(request)
        self._joining = []
        parents: list[int] = []  # rows of the batch that go on
        tokens: list[int] = []
        going_on: list[tuple[Any, int]] = []
        restarting: list[_Request] = []
        # Asked once a step, before the step's tokens are chosen.
        stopped = {id(request) for request, _ in self._active if request.stopped()}
        chosen, chosen_logp = self._sample_all(stopped)
        start = 0
        for request, rows in self._active:
            here = slice(start, start + rows)
            start += rows
            if id(request) in stopped:
                request.put(Stopped("stopped early: the caller no longer wants the result"))
                continue
            decoding = request.decoding
            if isinstance(decoding, SampleDecoding):
                token = int(chosen[here.start])
                event, then = decoding.take(token, float(chosen_logp[here.start]))
                request.put(event)
                if then == CONTINUE:
                    parents.append(here.start)
                    tokens.append(token)
                    going_on.append((request, 1))
                elif then == RESTART:
                    restarting.append(request)
                else:
                    request.put(_END)
                continue
            step = decoding.advance(self.engine.numpy_log_probs(self._logp[here]))
            if step is None:
                for event in beam_events(decoding.found, self.vocab):
                    request.put(event)
                request.put(_END)
                continue
            parents.extend(here.start + parent for parent in step[0])
            tokens.extend(step[1])
            going_on.append((request, len(step[0])))
        self._active = going_on
        if parents:
            state = self._state  # every row goes on, in order: no rows to gather
            if parents != list(range(start)):
                state = self.engine.select_state(state, np.array(parents, dtype=np.int64))
            tokens_in = np.array(tokens, dtype=np.int64)
            self._logp, self._state = self.engine.decoding_step(tokens_in, state)
        else:
            self._logp, self._state = None, None
        for request in restarting:
            self._join(request)

    def _read_prompts(self, requests: list[_Request]) -> None:
        """Feed SENTENCE_START and each prompt, the prompts of one length in one batch:
        each request keeps its rows' log-probs (1, V) and state for its sentences."""
        by_length: dict[int, list[_Request]] = {}
        for request in requests:
            by_length.setdefault(len(request.prompt_ids), []).append(request)
        for length, group in by_length.items():
            columns = np.full((len(group), length + 1), START_ID, dtype=np.int64)  # (n, L + 1)
            for row, request in enumerate(group):
                columns[row, 1:] = request.prompt_ids
            state = self.engine.initial_state(len(group))
            for column in columns.T:  # one step per position, every prompt of the group
                logp, state = self.engine.decoding_step(column, state)
            for row, request in enumerate(group):
                rows = np.array([row], dtype=np.int64)
                request.prompt = logp[row : row + 1], self.engine.select_state(state, rows)

    def _sample_all(self, stopped: set[int]) -> tuple[np.ndarray, np.ndarray]:
        """The sampling rows' tokens and their log-probs, all at once (beam rows get -1:
        beams choose their own; the requests in ``stopped`` draw nothing)."""
        rows, produced, configs, uniforms = [], [], [], []
        start = 0
        for request, count in self._active:
            decoding = request.decoding
            if isinstance(decoding, SampleDecoding) and id(request) not in stopped:
                rows.append(start)
                produced.append(decoding.produced)
                configs.append(decoding.config)
                uniforms.append(decoding.draw())
            start += count
        chosen = np.full(start, -1, dtype=np.int64)
        chosen_logp = np.zeros(start)
        if rows:
            logp = self._logp[rows] if len(rows) < start else self._logp  # (n, V)
            chosen[rows], chosen_logp[rows] = self.engine.choose_tokens(
                logp, np.array(produced), configs, np.array(uniforms)
            )
        return chosen, chosen_logp

    def _join(self, request: _Request) -> None:
        """Append a request's prompt rows to the batch (a new request, or the next sampled
        sentence of one). A beam's one row is its root hypothesis."""
        assert request.prompt is not None
        logp, state = request.prompt
        if not self._active:
            self._logp, self._state = logp, state
        else:
            self._logp = self.engine.concat_log_probs([self._logp, logp])
            self._state = self.engine.concat_states([self._state, state])
        self._active.append((request, 1))


def sample_events(
    engine: Engine,
    vocab: Vocabulary,
    prompt_ids: np.ndarray,
    config: GenerationConfig,
    should_stop: ShouldStop | None = None,
) -> Iterator[GenerationEvent]:
    """Sampling or greedy decoding of one request in the caller's thread (the loop's steps);
    ``should_stop`` is checked before each step (``Stopped``)."""
    events, _ = Decoder(engine, vocab).run_alone(prompt_ids, config, should_stop)
    return iter(events)


def beam_search(
    engine: Engine,
    vocab: Vocabulary,
    prompt_ids: np.ndarray,
    config: GenerationConfig,
    should_stop: ShouldStop | None = None,
) -> Hypotheses:
    """The ``num_sentences`` most probable continuations found, best first (see
    ``BeamDecoding``), in the caller's thread; ``should_stop`` is checked before every
    step (``Stopped``): nothing comes out before the search ends."""
    beam = dataclasses.replace(config, method="beam")
    _, request = Decoder(engine, vocab).run_alone(prompt_ids, beam, should_stop)
    assert isinstance(request.decoding, BeamDecoding)
    return request.decoding.found


@atexit.register
def _close_running() -> None:
    for decoder in list(_RUNNING):
        decoder.close()
