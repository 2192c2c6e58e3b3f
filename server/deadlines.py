"""Work for a call stops once nobody waits for its answer: the client's deadline passed or
it cancelled. gRPC does not stop a handler by itself; it only marks the call inactive.

The servicer builds a ``CallWatch`` from the call's context and hands it on as a plain
callable: the batcher drops queued requests whose callers left, and model/ checks it between
sub-batches, prefix-tree chunks and decoding steps and raises ``Stopped``. ``abandoning``
counts what was stopped so in ``rnnlm_work_abandoned_total{method, reason}``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc

from rnnlm.model.stopping import Stopped
from rnnlm.server.errors import Cancelled
from rnnlm.server.metrics import Metrics

DEADLINE, CANCELLED = "deadline", "cancelled"
DEADLINE_SLACK_S = 0.25


class CallWatch:
    """Called: True once the call is over for gRPC: its deadline passed or its client
    cancelled. Not earlier by our own clock: a server that answered at its own reading of
    the deadline would beat the client's timer and send CANCELLED instead of letting the
    client see DEADLINE_EXCEEDED."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def __call__(self) -> bool:
        return not self._context.is_active()

    def reason(self) -> str:
        """Why the client no longer waits (or would not, once the call is over)."""
        remaining = self._context.time_remaining()  # None: the call has no deadline
        # The client's clock starts before the request reaches us, so a client whose
        # deadline passed cancels the call slightly before our copy of the deadline expires:
        # a call that ends this close to its deadline ran out of time.
        return DEADLINE if remaining is not None and remaining <= DEADLINE_SLACK_S else CANCELLED


@contextlib.contextmanager
def abandoning(metrics: Metrics, method: str, watch: CallWatch) -> Iterator[None]:
    """Count the work stopped inside because the client left; ``Cancelled`` then ends the
    call, which the interceptor records as DEADLINE_EXCEEDED or CANCELLED (the call is over:
    no status reaches the client, which has its own). A stream that gRPC closed at a
    ``yield`` (GeneratorExit) counts as well."""
    try:
        yield
    except Stopped:
        metrics.abandoned.labels(method, watch.reason()).inc()
        raise Cancelled(f"{method} stopped unfinished: the client no longer waits") from None
    except GeneratorExit:
        metrics.abandoned.labels(method, watch.reason()).inc()
        raise
