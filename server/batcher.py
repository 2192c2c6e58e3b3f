"""Dynamic batching of concurrent scoring requests.

Callers hand in their sentences (already tokenised and validated) and block; a worker
thread of the model takes the first waiting request, gathers more until ``max_batch``
sentences or ``max_wait`` seconds, runs one length-sorted forward pass and hands each caller
its own results. With ``workers`` > 1 (``--batch-workers``) the next batch gathers and runs
while the last one's Python work (sorting, padding, splitting the results) is done: the
forward passes release the interpreter lock, so a second core is kept busy. The scoring
function pads and masks, so a sentence's score does not depend on what else shared its
batch (up to float rounding, about 1e-6 relative).

A caller may say when its result is no longer wanted (``should_stop``: the server passes
"the client's deadline passed or it cancelled"). Nobody else computes for it then: a request
whose caller left while it waited is dropped, never computed, and a batch in progress stops
between its sub-batches once every caller in it has left. The caller gets ``Stopped``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from rnnlm.model.stopping import ShouldStop, Stopped

log = logging.getLogger("rnnlm.server")

Item = TypeVar("Item")
Result = TypeVar("Result")

_STOP = object()
# How often a waiting caller asks its ``should_stop``: it bounds how long a request whose
# client left stays queued (and holds its gRPC worker thread) behind a long batch.
POLL_S = 0.05


@dataclass
class _Request:
    items: list
    should_stop: ShouldStop | None = None
    future: Future = field(default_factory=Future)


def _all_left(requests: list[_Request]) -> ShouldStop | None:
    """True once every caller in a batch has left (None: one of them never leaves)."""
    checks = [r.should_stop for r in requests if r.should_stop is not None]
    if len(checks) < len(requests):
        return None
    return lambda: all(c() for c in checks)


class DynamicBatcher(Generic[Item, Result]):
    def __init__(
        self,
        score_fn: Callable[..., list[Result]],
        max_batch: int,
        max_wait: float,
        name: str = "batcher",
        on_batch: Callable[[int], None] = lambda size: None,
        workers: int = 1,
    ) -> None:
        # Called as score_fn(items, should_stop=...): it checks should_stop between its
        # sub-batches and raises Stopped (LanguageModel.sequence_scorer does).
        self._score_fn = score_fn
        self._on_batch = on_batch  # told each forward pass' size (metrics)
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self.batches = 0  # forward passes run, for benchmarks and tests
        self.items = 0
        self.dropped = 0  # requests whose callers left before they were computed
        self.stopped = 0  # batches stopped part-way because all their callers left
        self._computing: dict[int, int] = {}  # items in each worker's forward pass
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def computing(self) -> int:
        """Items in the forward passes under way (0: idle)."""
        return sum(self._computing.values())

    def submit(self, items: Sequence[Item], should_stop: ShouldStop | None = None) -> Future:
        request = _Request(list(items), should_stop)
        with self._lock:
            if not self._closed:
                self._queue.put(request)
                return request.future
        self._run_alone(request)  # closed (model replaced): score in this thread
        return request.future

    def queued(self) -> int:
        """Requests waiting for a batch (approximate: the queue's own count)."""
        return self._queue.qsize()

    def __call__(self, items: Sequence[Item], should_stop: ShouldStop | None = None):
        """The results of ``items``; ``Stopped`` once ``should_stop`` says the caller left."""
        future = self.submit(items, should_stop)
        if should_stop is None:
            return future.result()
        while True:
            try:
                return future.result(timeout=POLL_S)
            except concurrent.futures.TimeoutError:
                # Cancelling succeeds only while it is queued; once in a batch, the batch
                # stops when all its callers have left (or ends and the result goes unread).
                if should_stop() and future.cancel():
                    raise Stopped("left the scoring queue: the caller no longer waits") from None
            except concurrent.futures.CancelledError:  # the worker found the caller gone
                raise Stopped("dropped from the scoring queue: the caller left") from None

    def close(self) -> None:
        """Stop after the requests already queued; later ones are scored in their caller."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)  # always the last item, so nothing queued is lost

    def _claim(self, request: _Request) -> bool:
        """Take a queued request into the batch; False (dropped) when its caller left."""
        if request.should_stop is not None and request.should_stop():
            request.future.cancel()
        if request.future.set_running_or_notify_cancel():
            return True
        with self._lock:
            self.dropped += 1
        return False

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` and whatever else arrives before the batch is full or the wait is over."""
        requests, size = [first], len(first.items)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            timeout = deadline - time.monotonic()
            try:
                nxt = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                self._queue.put(_STOP)  # for the other workers
                return requests, True
            if self._claim(nxt):
                requests.append(nxt)
                size += len(nxt.items)
        return requests, False

    def _run(self) -> None:
        stopping = False
        me = threading.get_ident()
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                self._queue.put(_STOP)  # for the other workers
                break
            if not self._claim(first):
                continue
            requests, stopping = self._gather(first)
            items = [item for r in requests for item in r.items]
            self._computing[me] = len(items)
            try:
                results = self._score_fn(items, should_stop=_all_left(requests))
            except Stopped as err:
                with self._lock:
                    self.stopped += 1
                for r in requests:
                    r.future.set_exception(Stopped(str(err)))
                continue
            except Exception as err:  # e.g. a bad input: each caller gets it separately
                if len(requests) == 1:
                    requests[0].future.set_exception(err)
                    continue
                for r in requests:  # retry alone, so one bad request fails alone
                    self._run_alone(r)
                continue
            finally:
                self._computing[me] = 0
            with self._lock:  # counters shared by the workers
                self.batches += 1
                self.items += len(items)
            self._on_batch(len(items))
            start = 0
            for r in requests:
                r.future.set_result(results[start : start + len(r.items)])
                start += len(r.items)

    def _run_alone(self, request: _Request) -> None:
        try:
            request.future.set_result(
                self._score_fn(request.items, should_stop=request.should_stop)
            )
        except Exception as err:
            request.future.set_exception(err)
