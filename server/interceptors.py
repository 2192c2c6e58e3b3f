"""What every call of our service goes through, in one interceptor:

- while the server drains for shutdown, new calls are refused with UNAVAILABLE;
- the API key check of the calls that change state, or of every call (``security.py``);
- requests that do not decode (not a valid message, e.g. a string field that is not UTF-8)
  are INVALID_ARGUMENT naming the RPC: each handler's deserializer is wrapped so that it
  never raises (gRPC would answer INTERNAL and log a traceback on every such call) and
  returns an ``Undecodable`` marker instead, which the call meets after the key check; in a
  client stream (UploadCorpus) the bad message may be any one of them;
- exceptions become gRPC status codes (DESIGN.md section 3): servicer methods raise, and the
  call is aborted with the specific code and the exception's message, cut to
  ``errors.MAX_MESSAGE_BYTES``. Anything unexpected is logged with its traceback and
  reported as INTERNAL with a reference to the log line, never as UNKNOWN;
- metrics: calls by method and status code, their duration, calls in flight; and the calls
  gRPC itself refuses over its concurrency limit (``watch_overload``), which no handler sees.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from rnnlm.model.checkpoint import CheckpointError
from rnnlm.model.interpolation import NoNgramPart
from rnnlm.server import errors
from rnnlm.server.errors import cap
from rnnlm.server.metrics import Metrics
from rnnlm.server.security import ApiKeyCheck

log = logging.getLogger("rnnlm.server")

# First match wins, so subclasses come before their bases (CheckpointError is a ValueError).
STATUS_OF: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.DataLoss, grpc.StatusCode.DATA_LOSS),
    (CheckpointError, grpc.StatusCode.DATA_LOSS),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (NoNgramPart, grpc.StatusCode.FAILED_PRECONDITION),  # a ValueError: before it
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.Cancelled, grpc.StatusCode.CANCELLED),
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),  # the model's validation errors
)


def status_of(err: BaseException) -> grpc.StatusCode | None:
    for cls, code in STATUS_OF:
        if isinstance(err, cls):
            return code
    return None


def _abort(context: grpc.ServicerContext, method: str, err: Exception) -> None:
    if not context.is_active():  # the client cancelled, or its deadline passed: not our error
        log.debug("%s ended with the call (%s): %s", method, _gone(context), cap(repr(err)))
        context.abort(getattr(grpc.StatusCode, _gone(context)), "the call ended")
    code = status_of(err)
    if code is None:
        ref = uuid.uuid4().hex[:8]
        log.exception("%s failed unexpectedly [ref %s]", method, ref)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error [ref {ref}]; see the server log")
    message = cap(str(err))
    detail = getattr(err, "detail", None)
    if detail:  # what only the operator may see: a store address, a path
        log.warning("%s -> %s: %s (%s)", method, code.name, message, cap(detail))
    else:
        log.info("%s -> %s: %s", method, code.name, message)
    context.abort(code, message)


@dataclass(frozen=True)
class Undecodable:
    """What a wrapped deserializer returns for bytes that are not a valid request."""

    error: str


def _lenient(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as err:  # DecodeError, mostly; never let gRPC see it
            return Undecodable(str(err))

    return deserialize


def _decoded(method: str, request: Any) -> Any:
    """The request, or InvalidArgument when it did not decode."""
    if isinstance(request, Undecodable):
        raise errors.InvalidArgument(
            f"the {method} request could not be decoded ({cap(request.error, 200)}): send a "
            "rnnlm.v1 message built from the service's .proto (string fields must be UTF-8)"
        )
    return request


def _decoded_stream(method: str, requests: Iterator[Any]) -> Iterator[Any]:
    """A request stream, checked message by message as the servicer reads it."""
    for request in requests:
        yield _decoded(method, request)


class ServiceInterceptor(grpc.ServerInterceptor):
    """Wraps every handler of our service; health and reflection pass untouched."""

    def __init__(
        self,
        metrics: Metrics | None = None,
        api_key: ApiKeyCheck | None = None,
        service_prefix: str = "/rnnlm.",
    ) -> None:
        self._prefix = service_prefix
        self.metrics = metrics or Metrics()
        self._auth = api_key or ApiKeyCheck(None)
        self._draining = False
        self._in_flight = 0
        self._idle = threading.Condition()
        self._overloaded: Callable[[], bool] = lambda: False
        # method -> (gRPC's handler, ours): wrapped once, not on every call. Only methods
        # that have a handler get here, so the names of unknown ones never pile up.
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    def watch_overload(self, overloaded: Callable[[], bool]) -> None:
        """``overloaded()``, asked as a call is intercepted, says whether gRPC will refuse
        it (RESOURCE_EXHAUSTED, its ``maximum_concurrent_rpcs``): such a call never reaches
        a handler, so it is counted here."""
        self._overloaded = overloaded

    # -- shutdown ------------------------------------------------------------------------

    def start_draining(self) -> None:
        """From now on new calls get UNAVAILABLE; calls in flight go on."""
        with self._idle:
            self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is in flight; False if some still are after ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    # -- one call --------------------------------------------------------------------------

    def _enter(self, method: str, context: grpc.ServicerContext) -> None:
        """Count the call in; refuse it while draining or without the key it needs."""
        with self._idle:
            self._in_flight += 1
            draining = self._draining
        # Counted out when gRPC has finished the call (its reply sent, or it was cancelled),
        # not when the handler returns: a shutdown that waited only for the handlers would
        # cancel replies still on their way.
        if not context.add_callback(self._call_ended):
            self._call_ended()  # it had ended already
        self.metrics.in_flight.labels(method).inc()
        if draining:
            raise errors.Unavailable(
                "this server is shutting down; retry the call on another replica"
            )
        self._auth.check(method, context.invocation_metadata())

    def _call_ended(self) -> None:
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def _exit(self, method: str, code: str, started: float) -> None:
        # Counted before it leaves the in-flight gauge: a scrape never sees it in neither.
        self.metrics.observe_call(method, code, time.perf_counter() - started)
        self.metrics.in_flight.labels(method).dec()

    @contextmanager
    def _call(self, method: str, context: grpc.ServicerContext) -> Iterator[None]:
        """One call of a handler: counted in and out, what it raises turned into its status."""
        started, code = time.perf_counter(), "OK"
        try:
            self._enter(method, context)
            yield
            if not context.is_active():  # the reply goes nowhere: the client went away
                code = _gone(context)
        except GeneratorExit:  # a stream closed at a yield: the client cancelled or went away
            code = _gone(context)
            raise
        except Exception as err:
            code = _code_name(err, context)
            _abort(context, method, err)
        finally:
            self._exit(method, code, started)

    def _wrap(self, method: str, handler: Any) -> Any:
        """``handler`` (grpc's ``RpcMethodHandler``, a namedtuple) with its behaviour wrapped:
        the one of its fields ``unary_unary`` ... ``stream_stream`` named by how it streams."""
        field = "_".join(
            "stream" if streams else "unary"
            for streams in (handler.request_streaming, handler.response_streaming)
        )
        behavior = getattr(handler, field)
        decoded = _decoded_stream if handler.request_streaming else _decoded

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            with self._call(method, context):
                return behavior(decoded(method, request), context)

        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with self._call(method, context):
                yield from behavior(decoded(method, request), context)

        return handler._replace(**{field: stream if handler.response_streaming else unary})

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler  # health, reflection: theirs
        name = method.rsplit("/", 1)[-1]
        if self._overloaded():
            # gRPC answers this call RESOURCE_EXHAUSTED once we return, without a handler.
            log.debug("%s refused: the server's concurrent call limit is reached", name)
            self.metrics.observe_call(name, "RESOURCE_EXHAUSTED", 0.0)
            return handler  # never runs
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        ours = handler
        if handler.request_deserializer is not None:
            ours = handler._replace(request_deserializer=_lenient(handler.request_deserializer))
        ours = self._wrap(name, ours)
        self._wrapped[method] = (handler, ours)
        return ours


def _code_name(err: BaseException, context: grpc.ServicerContext) -> str:
    if not context.is_active():
        return _gone(context)
    code = status_of(err)
    return code.name if code is not None else "INTERNAL"


def _gone(context: grpc.ServicerContext) -> str:
    """Why a call is no longer active: its deadline passed, or the client cancelled."""
    remaining = context.time_remaining()
    return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"
