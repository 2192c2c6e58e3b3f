"""The service's exceptions. Each names a gRPC status; ``interceptors.py`` maps them (and the
model's ``ValueError``/``CheckpointError``) to status codes in one place.

Messages say what was wrong and what is allowed: they go to the client as they are. So they
quote what a client sent only through ``quote`` (a short prefix: a 20,000-character id must
not come back whole, nor fill the log), and they never carry what only the operator should
see (store addresses, server paths): that goes in ``detail``, which only the log shows.
"""

from __future__ import annotations

# How much of a value a client sent an error message repeats.
QUOTE_CHARS = 40
# The longest status message sent (UTF-8 bytes). gRPC percent-encodes non-ASCII bytes of it
# into a header, and clients refuse headers over 8-16 KiB ("metadata size exceeds limit").
MAX_MESSAGE_BYTES = 1024


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr`` of a value a client sent, cut to its first ``limit`` characters (or bytes),
    with the full length after a cut. Control characters come escaped: no log injection."""
    if not isinstance(value, (str, bytes)):
        value = str(value)
    if len(value) <= limit:
        return repr(value)
    unit = "characters" if isinstance(value, str) else "bytes"
    return f"{value[:limit]!r}... ({len(value):,} {unit})"


def cap(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``message`` cut to at most ``limit`` UTF-8 bytes: the last line of defence for a
    message that quoted something whole."""
    data = message.encode("utf-8", "replace")
    if len(data) <= limit:
        return message
    return data[: limit - 20].decode("utf-8", "ignore") + "... (message cut)"


class ServiceError(Exception):
    """Base of the errors a client can cause or meet. ``detail`` is for the server log only
    (an address, a path, the underlying error): the client gets the message."""

    def __init__(self, message: str = "", *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class InvalidArgument(ServiceError, ValueError):
    """A malformed or out-of-range field."""


class NotFound(ServiceError):
    """An unknown model, version, corpus, job or server-side file."""


class FailedPrecondition(ServiceError):
    """The request is valid but the target is not in a state that allows it."""


class PermissionDenied(ServiceError):
    """The request reaches outside what the operator allowed."""


class ResourceExhausted(ServiceError):
    """Over a configured limit."""


class Unavailable(ServiceError):
    """The store cannot be reached, or the server is shutting down; retrying may help."""


class StoreMisconfigured(Unavailable):
    """The store refused our credentials or its certificate failed verification: a
    configuration error rather than an outage (the server refuses to start with it)."""


class DataLoss(ServiceError):
    """Stored data failed its integrity check."""


class Cancelled(ServiceError):
    """The client cancelled the call (or went away) before it was complete."""


class Unauthenticated(ServiceError):
    """Missing or wrong credentials."""
