"""Dynamic batching of concurrent scoring requests.

Callers hand in their sentences (already tokenised and validated) and block; one worker
thread per model takes the first waiting request, gathers more until ``max_batch``
sentences or ``max_wait`` seconds, runs one length-sorted forward pass and hands each caller
its own results. The scoring function pads and masks, so a sentence's score does not depend
on what else shared its batch (up to float rounding, about 1e-6 relative).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger("rnnlm.server")

Item = TypeVar("Item")
Result = TypeVar("Result")

_STOP = object()


class DynamicBatcher(Generic[Item, Result]):
    def __init__(
        self,
        score_fn: Callable[[list[Item]], list[Result]],
        max_batch: int = 128,
        max_wait: float = 0.002,
        name: str = "batcher",
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._score_fn = score_fn
        self._on_batch = on_batch  # told each forward pass' size (metrics)
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.batches = 0  # forward passes run, for benchmarks and tests
        self.items = 0

    def submit(self, items: Sequence[Item]) -> Future:
        future: Future = Future()
        with self._lock:
            if not self._closed:
                self._queue.put((list(items), future))
                return future
        self._run_alone(list(items), future)  # closed (model replaced): score in this thread
        return future

    def queued(self) -> int:
        """Requests waiting for a batch (approximate: the queue's own count)."""
        return self._queue.qsize()

    def __call__(self, items: Sequence[Item]) -> list[Result]:
        return self.submit(items).result()

    def close(self) -> None:
        """Stop after the requests already queued; later ones are scored in their caller."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)  # always the last item, so nothing queued is lost

    def _gather(self, first) -> tuple[list, bool]:
        """``first`` and whatever else arrives before the batch is full or the wait is over."""
        requests, size = [first], len(first[0])
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            timeout = deadline - time.monotonic()
            try:
                nxt = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                return requests, True
            requests.append(nxt)
            size += len(nxt[0])
        return requests, False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            requests, stopping = self._gather(first)
            items = [item for batch, _ in requests for item in batch]
            try:
                results = self._score_fn(items)
            except Exception as err:  # e.g. a bad input: each caller gets it separately
                if len(requests) == 1:
                    requests[0][1].set_exception(err)
                    continue
                for batch, future in requests:  # retry alone, so one bad request fails alone
                    self._run_alone(batch, future)
                continue
            self.batches += 1
            self.items += len(items)
            self._on_batch(len(items))
            start = 0
            for batch, future in requests:
                future.set_result(results[start : start + len(batch)])
                start += len(batch)

    def _run_alone(self, batch: list, future: Future) -> None:
        try:
            future.set_result(self._score_fn(batch))
        except Exception as err:
            future.set_exception(err)
