"""The retry policy both clients share: exponential backoff with jitter, on UNAVAILABLE.

UNAVAILABLE means the call did not reach a working server (connection refused, server
shutting down, store down), so repeating it is safe when the call is idempotent. A unary
call is also retried on CANCELLED: the clients never cancel one themselves, so it was cut
off by the server's side, which gRPC does to a call that arrives at the instant a server
stops listening. Every other status is an answer and is never retried. Streams are retried
while they have yielded nothing yet, or at any point when ``resume`` rebuilds the request to
continue after the last message (WatchTrainingJob with ``after_event_id``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

T = TypeVar("T")

STREAM_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE,)
UNARY_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


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

    def should_retry(
        self, err: grpc.RpcError, attempt: int, codes: tuple = STREAM_RETRY_CODES
    ) -> bool:
        """Retry ``err`` after ``attempt`` failed retries? One of ``codes``, within budget."""
        code = getattr(err, "code", None)
        return attempt < self.retries and callable(code) and code() in codes


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    idempotent: bool,
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """``fn()``, repeated on UNAVAILABLE or CANCELLED when ``idempotent``; other errors
    propagate at once."""
    attempt = 0
    while True:
        try:
            return fn()
        except grpc.RpcError as err:
            if not idempotent or not policy.should_retry(err, attempt, UNARY_RETRY_CODES):
                raise
        sleep(policy.delay(attempt))
        attempt += 1


async def acall_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    idempotent: bool,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> T:
    """The asyncio twin of :func:`call_with_retry`."""
    attempt = 0
    while True:
        try:
            return await fn()
        except grpc.RpcError as err:
            if not idempotent or not policy.should_retry(err, attempt, UNARY_RETRY_CODES):
                raise
        await sleep(policy.delay(attempt))
        attempt += 1


def stream_with_retry(
    open_stream: Callable[[Any], Any],
    policy: RetryPolicy,
    *,
    resumable: bool,
    sleep: Callable[[float], Any] = time.sleep,
) -> Iterator[Any]:
    """Yield a server stream's messages, reopening it on UNAVAILABLE.

    ``open_stream(last)`` starts the call; ``last`` is the last message received (``None``
    before the first). Without ``resumable`` a stream that has yielded is never reopened,
    since the caller would see messages twice. The call is cancelled in ``finally``, so
    closing this iterator early (``break``, garbage collection) stops the server's work.
    """
    attempt, last, received = 0, None, False
    while True:
        call = open_stream(last)
        try:
            for msg in call:
                last, received, attempt = msg, True, 0  # progress resets the retry budget
                yield msg
            return
        except grpc.RpcError as err:
            if (received and not resumable) or not policy.should_retry(err, attempt):
                raise
        finally:
            call.cancel()
        sleep(policy.delay(attempt))
        attempt += 1


async def astream_with_retry(
    open_stream: Callable[[Any], Any],
    policy: RetryPolicy,
    *,
    resumable: bool,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> AsyncIterator[Any]:
    """The asyncio twin of :func:`stream_with_retry` (``open_stream`` returns a grpc.aio
    call, which is an async iterator of messages)."""
    attempt, last, received = 0, None, False
    while True:
        call = open_stream(last)
        try:
            async for msg in call:
                last, received, attempt = msg, True, 0
                yield msg
            return
        except grpc.RpcError as err:
            if (received and not resumable) or not policy.should_retry(err, attempt):
                raise
        finally:
            call.cancel()
        await sleep(policy.delay(attempt))
        attempt += 1
