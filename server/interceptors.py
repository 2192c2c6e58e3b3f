"""The one place where exceptions become gRPC status codes (DESIGN.md section 3).

Servicer methods raise; this interceptor catches and aborts the call with the specific code
and the exception's message. Anything unexpected is logged with its traceback and reported
as INTERNAL with a reference to the log line, never as UNKNOWN.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from rnnlm.model.checkpoint import CheckpointError

from . import errors

log = logging.getLogger("rnnlm.server")

# First match wins, so subclasses come before their bases (CheckpointError is a ValueError).
STATUS_OF: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.DataLoss, grpc.StatusCode.DATA_LOSS),
    (CheckpointError, grpc.StatusCode.DATA_LOSS),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),  # the model's validation errors
)


def status_of(err: BaseException) -> grpc.StatusCode | None:
    for cls, code in STATUS_OF:
        if isinstance(err, cls):
            return code
    return None


def _abort(context: grpc.ServicerContext, method: str, err: Exception) -> None:
    code = status_of(err)
    if code is None:
        ref = uuid.uuid4().hex[:8]
        log.exception("%s failed unexpectedly [ref %s]", method, ref)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error [ref {ref}]; see the server log")
    log.info("%s -> %s: %s", method, code.name, err)
    context.abort(code, str(err))


def _wrap_unary(method: str, behavior: Callable) -> Callable:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as err:
            _abort(context, method, err)

    return handler


def _wrap_stream(method: str, behavior: Callable) -> Callable:
    def handler(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from behavior(request, context)
        except Exception as err:
            _abort(context, method, err)

    return handler


class ErrorInterceptor(grpc.ServerInterceptor):
    """Wraps every handler of our service with the exception-to-status mapping."""

    def __init__(self, service_prefix: str = "/rnnlm.") -> None:
        self._prefix = service_prefix

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(self._prefix):
            return handler  # health, reflection: theirs
        name = method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            return handler._replace(unary_unary=_wrap_unary(name, handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=_wrap_unary(name, handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=_wrap_stream(name, handler.unary_stream))
        return handler._replace(stream_stream=_wrap_stream(name, handler.stream_stream))
