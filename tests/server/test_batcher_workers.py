"""The dynamic batcher with several workers (``--batch-workers``): batches gathered and run
side by side, each caller getting its own results, and every worker stopping on close."""

from __future__ import annotations

import threading
import time

from rnnlm.server.batcher import DynamicBatcher


def test_two_workers_run_batches_side_by_side_and_stop_together():
    running, most = [0], [0]
    lock = threading.Lock()

    def score(items, should_stop=None):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)  # a forward pass: the interpreter lock is free meanwhile
        with lock:
            running[0] -= 1
        return [item * 10 for item in items]

    batcher = DynamicBatcher(score, max_batch=4, max_wait=0.001, name="t", workers=2)
    results: dict[int, list] = {}

    def call(i: int) -> None:
        results[i] = batcher([i, i + 100])

    callers = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)
    assert results == {i: [i * 10, (i + 100) * 10] for i in range(12)}
    assert most[0] == 2  # two forward passes at once
    assert batcher.items == 24 and batcher.computing == 0
    batcher.close()
    for thread in batcher._threads:
        thread.join(5)
        assert not thread.is_alive()
    assert batcher([7]) == [70]  # closed: scored in the caller's thread
