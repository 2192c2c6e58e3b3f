"""What ``redis_store.py`` and its housekeeping mixin (``redis_housekeeping.py``) share: the
mapping of Redis errors to the service's, and replies as text. A module of its own, so
that neither of the two imports the other's internals (no import cycle)."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar, cast

from redis.exceptions import AuthenticationError, BusyLoadingError, ReadOnlyError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rnnlm.server.errors import StoreMisconfigured, Unavailable

F = TypeVar("F", bound=Callable[..., Any])


class _HasAddress(Protocol):
    @property
    def address(self) -> str: ...


def redis_errors_unavailable(method: F) -> F:
    """Turn "cannot reach Redis" into ``Unavailable``, and a wrong password or CA into
    ``StoreMisconfigured``; other Redis errors are bugs."""

    @functools.wraps(method)
    def wrapper(self: _HasAddress, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError) as exc:
            # The message reaches clients: the address and Redis' words go in ``detail`` (the log).
            error, message = _service_error(exc)
            raise error(message, detail=f"redis at {self.address}: {exc}") from exc

    return cast(F, wrapper)


def _service_error(exc: Exception) -> tuple[type[Unavailable], str]:
    """The service's error for one of Redis' (``AuthenticationError`` is a ``ConnectionError``)."""
    if isinstance(exc, AuthenticationError):
        return StoreMisconfigured, (
            "the store (redis) refused the credentials of the Redis URL; the operator must fix "
            "the server's --redis-url"
        )
    if isinstance(exc, ReadOnlyError):  # a replica, e.g. mid-failover: writes come back soon
        return Unavailable, "store unavailable: redis is read-only (a replica); retry later"
    if _caused_by(exc, ssl.SSLCertVerificationError):
        return StoreMisconfigured, (
            "the store's (redis) TLS certificate failed verification; the operator must give "
            "its CA in the Redis URL: rediss://...?ssl_ca_certs=/path/ca.pem"
        )
    return Unavailable, "store unavailable: redis does not answer; retry later"


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def as_texts(replies: Iterable[bytes | str]) -> list[str]:
    """Key names or ids as text: the store's client decodes no reply (``decode_responses`` is
    False, checked by ``RedisStore``), but redis-py's types allow a decoding client's str."""
    return [r if isinstance(r, str) else r.decode() for r in replies]
