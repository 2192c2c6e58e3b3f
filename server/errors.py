"""The service's exceptions. Each names a gRPC status; ``interceptors.py`` maps them (and the
model's ``ValueError``/``CheckpointError``) to status codes in one place.

Messages say what was wrong and what is allowed: they go to the client as they are.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the errors a client can cause or meet."""


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
