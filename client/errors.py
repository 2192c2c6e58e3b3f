"""The client's exceptions: one class per gRPC status code, all rooted in :class:`RnnlmError`.

Every client method turns a ``grpc.RpcError`` into one of these, so callers can write
``except NotFound:`` instead of comparing status codes::

    try:
        client.model("news")
    except NotFound as err:
        print(err.details)  # "model 'news' does not exist ..."
"""

from __future__ import annotations

from typing import Any

import grpc


class RnnlmError(Exception):
    """Base of every error a client method raises for a failed call.

    Attributes:
        code: the ``grpc.StatusCode`` the server (or the channel) answered.
        details: the server's message: what was wrong and what is allowed.
        method: the RPC that failed, e.g. ``"GetModel"``.
    """

    #: The status code a subclass stands for (``class NotFound(RnnlmError, code=...)``);
    #: the catch-all keeps the code it was given.
    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init_subclass__(cls, code: grpc.StatusCode | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.default_code = code

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


class InvalidArgument(RnnlmError, code=grpc.StatusCode.INVALID_ARGUMENT):
    """A malformed or out-of-range field; the message names it and what is allowed."""


class NotFound(RnnlmError, code=grpc.StatusCode.NOT_FOUND):
    """An unknown model, model version, corpus, job or server-side corpus file."""


class AlreadyExists(RnnlmError, code=grpc.StatusCode.ALREADY_EXISTS):
    """The thing to create exists already."""


class FailedPrecondition(RnnlmError, code=grpc.StatusCode.FAILED_PRECONDITION):
    """Valid request, wrong moment: no model version ready, job already ended, job running."""


class PermissionDenied(RnnlmError, code=grpc.StatusCode.PERMISSION_DENIED):
    """Outside what the operator allowed, e.g. a server path outside the corpus directory."""


class ResourceExhausted(RnnlmError, code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """Over a server limit: sentences, tokens, concurrent jobs, corpus or message size."""


class Unavailable(RnnlmError, code=grpc.StatusCode.UNAVAILABLE):
    """The server or its store cannot be reached; the client already retried."""


class DataLoss(RnnlmError, code=grpc.StatusCode.DATA_LOSS):
    """A stored checkpoint or corpus failed its sha256 check."""


class Cancelled(RnnlmError, code=grpc.StatusCode.CANCELLED):
    """The call was cancelled (by this client, or the server saw the client go away)."""


class DeadlineExceeded(RnnlmError, code=grpc.StatusCode.DEADLINE_EXCEEDED):
    """The call ran past its deadline (the client's ``timeout``)."""


class Unauthenticated(RnnlmError, code=grpc.StatusCode.UNAUTHENTICATED):
    """Missing or wrong credentials (the ``api_key``)."""


class Aborted(RnnlmError, code=grpc.StatusCode.ABORTED):
    """Overtaken by a concurrent change, e.g. a model that got a new version between the
    requests of a long scoring call: doing it again gives a consistent answer."""


class Internal(RnnlmError, code=grpc.StatusCode.INTERNAL):
    """A server bug, or any status without a class of its own (``code`` keeps which)."""


# The classes above (read once, here: a caller's own subclasses never change it).
_BY_CODE: dict[grpc.StatusCode, type[RnnlmError]] = {
    cls.default_code: cls for cls in RnnlmError.__subclasses__()
}


def from_rpc_error(err: grpc.RpcError, method: str) -> RnnlmError:
    """The :class:`RnnlmError` subclass for a failed call's status code (read defensively:
    ``grpc.RpcError`` itself has no ``code()``, the errors that grpc raises have)."""
    code_fn = getattr(err, "code", None)
    details_fn = getattr(err, "details", None)
    code = code_fn() if callable(code_fn) else None
    details = details_fn() if callable(details_fn) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    cls = _BY_CODE.get(code, Internal)
    return cls(details or code.name.lower().replace("_", " "), code=code, method=method)
