"""The client's exceptions: one class per gRPC status code, all rooted in :class:`RnnlmError`.

Every client method turns a ``grpc.RpcError`` into one of these, so callers can write
``except NotFound:`` instead of comparing status codes::

    try:
        client.model("news")
    except NotFound as err:
        print(err.details)  # "model 'news' does not exist ..."
"""

from __future__ import annotations

import grpc


class RnnlmError(Exception):
    """Base of every error a client method raises for a failed call.

    Attributes:
        code: the ``grpc.StatusCode`` the server (or the channel) answered.
        details: the server's message: what was wrong and what is allowed.
        method: the RPC that failed, e.g. ``"GetModel"``.
    """

    #: The status code a subclass stands for; the catch-all keeps the code it was given.
    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self, details: str, *, code: grpc.StatusCode | None = None, method: str = ""
    ) -> None:
        super().__init__(details)
        self.details = details
        self.code = code if code is not None else self.default_code
        self.method = method

    def __str__(self) -> str:
        where = f" ({self.method})" if self.method else ""
        return f"{type(self).__name__}: {self.details}{where}"


class InvalidArgument(RnnlmError):
    """A malformed or out-of-range field; the message names it and what is allowed."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RnnlmError):
    """An unknown model, model version, corpus, job or server-side corpus file."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RnnlmError):
    """The thing to create exists already."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(RnnlmError):
    """Valid request, wrong moment: no model version ready, job already ended, job running."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(RnnlmError):
    """Outside what the operator allowed, e.g. a server path outside the corpus directory."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(RnnlmError):
    """Over a server limit: sentences, tokens, concurrent jobs, corpus or message size."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(RnnlmError):
    """The server or its store cannot be reached; the client already retried."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DataLoss(RnnlmError):
    """A stored checkpoint or corpus failed its sha256 check."""

    default_code = grpc.StatusCode.DATA_LOSS


class Cancelled(RnnlmError):
    """The call was cancelled (by this client, or the server saw the client go away)."""

    default_code = grpc.StatusCode.CANCELLED


class DeadlineExceeded(RnnlmError):
    """The call ran past its deadline (the client's ``timeout``)."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(RnnlmError):
    """Missing or wrong credentials (the ``api_key``)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class Internal(RnnlmError):
    """A server bug, or any status without a class of its own (``code`` keeps which)."""

    default_code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[RnnlmError]] = {
    cls.default_code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        ResourceExhausted,
        Unavailable,
        DataLoss,
        Cancelled,
        DeadlineExceeded,
        Unauthenticated,
        Internal,
    )
}


def from_rpc_error(err: grpc.RpcError, method: str) -> RnnlmError:
    """The :class:`RnnlmError` subclass for a failed call's status code.

    ``grpc.RpcError`` itself has no ``code()``; the errors grpc raises (and ``grpc.aio``'s
    ``AioRpcError``) do, so this reads them defensively.
    """
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else None
    details = details_fn() if callable(details_fn) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    cls = _BY_CODE.get(code, Internal)
    return cls(details or code.name.lower().replace("_", " "), code=code, method=method)
