"""Errors as the HTTP API answers them: the status, and OpenAI's JSON shape
``{"error": {"message", "type", "param", "code"}}``.

Which error is which is decided once, for both front ends: ``interceptors.STATUS_OF`` maps an
exception class to its gRPC status code, and here each code has its HTTP status (Google's
mapping of ``google.rpc.Code`` to HTTP, the one grpc-gateway uses). ``code`` in the body is
that gRPC code's name, so a message reads the same whichever front end answered.
"""

from __future__ import annotations

import logging
import uuid

import grpc

from rnnlm.server.errors import InvalidArgument, ResourceExhausted, cap
from rnnlm.server.interceptors import status_of

log = logging.getLogger("rnnlm.server.http")

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# OpenAI's error types, by status; the SDK raises a matching exception class for each.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


class BadField(InvalidArgument):
    """A request field with a value this server cannot take; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class BodyTooLarge(ResourceExhausted):
    """A request body over --max-message-bytes: 413, where the other limits answer 429 (a
    body that size is refused however long one waits)."""


def http_status(err: BaseException) -> int:
    if isinstance(err, BodyTooLarge):
        return 413
    code = status_of(err)
    return 500 if code is None else HTTP_STATUS.get(code, 500)


def error_body(status: int, message: str, param: str | None = None, code: str | None = None):
    kind = ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": cap(message), "type": kind, "param": param, "code": code}}


def error_of(err: Exception, where: str) -> tuple[int, dict]:
    """The status and body for ``err``, raised while answering ``where`` (a method and
    path). What the client may not see is logged, as the gRPC interceptor does: the
    ``detail`` of an error, and the traceback of anything unexpected (500, with a reference
    to the log line)."""
    status = http_status(err)
    code = status_of(err)
    if code is None:
        ref = uuid.uuid4().hex[:8]
        log.error("%s failed unexpectedly [ref %s]", where, ref, exc_info=err)
        return 500, error_body(
            500, f"internal error [ref {ref}]; see the server log", None, "internal"
        )
    detail = getattr(err, "detail", None)
    if detail:
        log.warning("%s -> %d: %s (%s)", where, status, cap(str(err)), cap(detail))
    else:
        log.info("%s -> %d: %s", where, status, cap(str(err)))
    name = "request_too_large" if status == 413 else code.name.lower()
    return status, error_body(status, str(err), getattr(err, "param", None), name)
