"""Retries: gRPC's own for every call that is safe to repeat, ours only to resume a watch.

UNAVAILABLE means the call did not reach a working server (connection refused, server
shutting down, store down), so repeating it is safe when the call is idempotent. A unary
call is also repeated on CANCELLED: the clients never cancel one themselves, so it was cut
off by the server's side, which gRPC does to a call that arrives at the instant a server
stops listening. Every other status is an answer and is never retried.

gRPC repeats a call by the channel's service config (``retryPolicy``) until the response
has begun; it caps the attempts at 5 and replays a client stream (UploadCorpus) from a
buffer, so an upload larger than ``RETRY_BUFFER_BYTES`` is repeated only while what it sent
still fits. WatchTrainingJob is left to :class:`Resumption`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from rnnlm.client._calls import ServerStream
from rnnlm.client.errors import RnnlmError, Unavailable, from_rpc_error

T = TypeVar("T")

SERVICE = "rnnlm.v1.LanguageModelService"
#: gRPC's ceiling on the attempts of one call; more are treated as this many.
MAX_ATTEMPTS = 5
#: A client stream is repeatable while what it sent fits in this (gRPC's default: 256 KiB).
RETRY_BUFFER_BYTES = 16 << 20
#: Repeated on UNAVAILABLE or CANCELLED: reads and cancel by nature, Train through its
#: request_id, UploadCorpus because corpora are content addressed. Not the deletes, Resume
#: or AttachNgramModel: a repeat after a lost reply would fail on, or redo, the first effect.
UNARY_RETRIED = (
    "UploadCorpus",
    "ListCorpora",
    "Train",
    "GetTrainingJob",
    "ListTrainingJobs",
    "CancelTrainingJob",
    "ScoreSentence",
    "ListModels",
    "GetModel",
    "MeasureGradientFlow",
)
#: Server streams repeated on UNAVAILABLE while they have received nothing: once a message
#: has arrived, a repeat would show the caller tokens (or bytes) twice.
STREAMS_RETRIED = ("Generate", "ExportArpa")


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts after the first; the n-th waits about ``backoff * 2**n``
    seconds (capped at ``max_backoff``), jittered so that many clients do not retry in step."""

    retries: int = 3
    backoff: float = 0.2
    max_backoff: float = 5.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): half fixed, half random."""
        ceiling = min(self.max_backoff, self.backoff * 2**attempt)
        return ceiling / 2 + ceiling / 2 * rng()

    def channel_options(self, lb_policy: str = "round_robin") -> list[tuple[str, Any]]:
        """The channel options that make gRPC retry as this policy says, and balance the
        calls over the target's addresses by ``lb_policy``."""
        return [
            ("grpc.enable_retries", 1),
            ("grpc.per_rpc_retry_buffer_size", RETRY_BUFFER_BYTES),
            ("grpc.service_config", json.dumps(self.service_config(lb_policy))),
        ]

    def service_config(self, lb_policy: str = "round_robin") -> dict[str, Any]:
        """A gRPC service config with a ``retryPolicy`` for each method safe to repeat
        (none when ``retries`` is 0: gRPC wants at least 2 attempts in a policy), and the
        load-balancing policy. ``round_robin`` sends each call to the next ready address of
        the target (every address of a ``dns:///`` name or of a list; with one address it is
        gRPC's default ``pick_first`` in effect); a connection that fails is skipped. A
        service config's policy beats the ``grpc.lb_policy_name`` channel option, so the
        client passes that option's value here."""
        balancing: dict[str, Any] = {"loadBalancingConfig": [{lb_policy: {}}]}
        if self.retries < 1:
            return {"methodConfig": [], **balancing}

        def config(methods: tuple[str, ...], codes: list[str]) -> dict[str, Any]:
            policy = {
                "maxAttempts": min(self.retries + 1, MAX_ATTEMPTS),
                "initialBackoff": _duration(self.backoff),
                "maxBackoff": _duration(max(self.max_backoff, self.backoff)),
                "backoffMultiplier": 2,
                "retryableStatusCodes": codes,
            }
            names = [{"service": SERVICE, "method": m} for m in methods]
            return {"name": names, "retryPolicy": policy}

        return {
            "methodConfig": [
                config(UNARY_RETRIED, ["UNAVAILABLE", "CANCELLED"]),
                config(STREAMS_RETRIED, ["UNAVAILABLE"]),
            ],
            **balancing,
        }


def _duration(seconds: float) -> str:
    """A protobuf JSON Duration; gRPC wants a positive backoff."""
    return f"{max(seconds, 1e-3):.3f}s"


class Resumption(Generic[T]):
    """The attempts of one server stream (the clients' ``_server_stream`` loops over them).
    A resumable stream (WatchTrainingJob) is reopened after UNAVAILABLE, asking for what
    comes after the last message received; progress resets the retry budget. Any other
    stream ends at its first error (gRPC has already repeated it while that was safe). A
    failure that ends the stream is raised as the matching ``RnnlmError``; the call is
    cancelled on the way out, so closing the iterator early stops the server's work.
    """

    def __init__(self, source: ServerStream[T], policy: RetryPolicy) -> None:
        self.source, self.policy = source, policy
        self.pending, self.delay = True, 0.0
        self._failures, self._last = 0, None

    @contextmanager
    def attempt(self, rpc: Callable[..., Any], metadata: Any) -> Iterator[Any]:
        """Open the call (``rpc`` is the stub's method) for the ``with`` block to read."""
        source = self.source
        call = rpc(source.request(self._last), timeout=source.timeout, metadata=metadata)
        try:
            yield call
            self.pending = False
        except grpc.RpcError as err:
            error = from_rpc_error(err, source.method)
            if not self._retry(error):
                raise error from err
        finally:
            call.cancel()

    def received(self, msg: Any) -> Sequence[T]:
        """The items ``msg`` carries, in order."""
        self._last, self._failures = msg, 0
        return self.source.convert(msg)

    def _retry(self, error: RnnlmError) -> bool:
        if not self.source.resumable or not isinstance(error, Unavailable):
            return False
        if self._failures >= self.policy.retries:
            return False
        self.delay = self.policy.delay(self._failures)
        self._failures += 1
        return True
