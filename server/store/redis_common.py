"""What ``redis_store.py`` and its housekeeping mixin (``redis_housekeeping.py``) share: the
mapping of Redis errors to the service's, and replies as bytes. A module of its own, so
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

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, BusyLoadingError)

F = TypeVar("F", bound=Callable[..., Any])


class _HasAddress(Protocol):
    @property
    def address(self) -> str: ...


def redis_errors_unavailable(method: F) -> F:
    """Turn "cannot reach Redis" into ``Unavailable``; other Redis errors are bugs."""

    @functools.wraps(method)
    def wrapper(self: _HasAddress, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        # The messages reach clients: the address and Redis' words go in ``detail`` (the log).
        except AuthenticationError as exc:
            raise StoreMisconfigured(
                "the store (redis) refused the credentials of the Redis URL; the operator "
                "must fix the server's --redis-url",
                detail=f"redis at {self.address}: {exc}",
            ) from exc
        except ReadOnlyError as exc:  # a replica, e.g. mid-failover: writes come back soon
            raise Unavailable(
                "store unavailable: redis is read-only (a replica); retry later",
                detail=f"redis at {self.address}: {exc}",
            ) from exc
        except _UNREACHABLE as exc:
            if _caused_by(exc, ssl.SSLCertVerificationError):
                raise StoreMisconfigured(
                    "the store's (redis) TLS certificate failed verification; the operator "
                    "must give its CA in the Redis URL: rediss://...?ssl_ca_certs=/path/ca.pem",
                    detail=f"redis at {self.address}: {exc}",
                ) from exc
            raise Unavailable(
                "store unavailable: redis does not answer; retry later",
                detail=f"redis at {self.address}: {exc}",
            ) from exc

    return cast(F, wrapper)


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


# The store's client decodes nothing (``decode_responses=False``, checked by ``RedisStore``),
# so every reply is bytes; redis-py's types also allow the str of a decoding client.


def as_bytes(reply: bytes | str) -> bytes:
    """A reply as bytes."""
    return reply if isinstance(reply, bytes) else reply.encode()


def as_bytes_or_none(reply: bytes | str | None) -> bytes | None:
    """A reply that may be nil (a missing key) as bytes."""
    return None if reply is None else as_bytes(reply)


def as_texts(replies: Iterable[bytes | str]) -> list[str]:
    """Replies that are key names or ids, as text."""
    return [r if isinstance(r, str) else r.decode() for r in replies]
