"""Redis behind Sentinel: the store finds the current primary through the sentinels and
follows it across a failover (redis-py's ``Sentinel.master_for``).

The URL (no standard exists; this is the form kombu and others use)::

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service_name[/db]
        [?sentinel_password=...&sentinel_username=...]

``host:port`` are the sentinels (port 26379 when left out), ``service_name`` the name they
monitor the primary under (``sentinel monitor NAME ...``), ``db`` the database (0). The
user and password are the primary's; a sentinel that wants a password of its own gets it
from ``sentinel_password``. Percent-encode anything not URL-safe. TLS to Redis is not
offered here: use a ``rediss://`` URL to a single Redis, or a TLS proxy.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

import redis
from redis.sentinel import Sentinel, SentinelConnectionPool

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
FORM = "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service_name[/db]"
QUERY_KEYS = ("sentinel_password", "sentinel_username")
# The client settings the sentinels get too; the rest (retries, health checks, the
# database, credentials) are the primary's. A sentinel that fails is skipped for the next.
_SENTINEL_SETTINGS = ("socket_timeout", "socket_connect_timeout")
_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d+))?$")


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith(SCHEME + "://")


@dataclass(frozen=True)
class SentinelUrl:
    """A ``redis+sentinel://`` URL, parsed; ``parse`` says what is wrong with a bad one
    (without repeating the URL: it may hold a password)."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        if not is_sentinel_url(url):
            raise _invalid(f"it must start with {SCHEME}://")
        parts = urllib.parse.urlsplit(url)
        userinfo, _, hosts = parts.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        path = [urllib.parse.unquote(p) for p in parts.path.strip("/").split("/")]
        if not path[0] or len(path) > 2:
            raise _invalid(f"the path {parts.path!r} must be /service_name or /service_name/db")
        if len(path) == 2 and not path[1].isdigit():
            raise _invalid(f"the database {path[1]!r} must be a whole number")
        query = urllib.parse.parse_qs(parts.query)
        unknown = sorted(set(query) - set(QUERY_KEYS))
        if unknown:
            raise _invalid(f"unknown option {unknown[0]!r}; allowed: {', '.join(QUERY_KEYS)}")
        return cls(
            sentinels=tuple(_sentinel(h) for h in hosts.split(",")),
            service_name=path[0],
            db=int(path[1]) if len(path) == 2 else 0,
            username=urllib.parse.unquote(username) or None,
            password=urllib.parse.unquote(password) or None,
            sentinel_username=query.get("sentinel_username", [None])[-1],
            sentinel_password=query.get("sentinel_password", [None])[-1],
        )

    def client(self, settings: dict[str, Any]) -> redis.Redis:
        """A client of the primary, with ``settings`` (``RedisStore.from_url``'s) for it
        and its timeouts for the sentinels."""
        to_sentinels = {k: settings[k] for k in _SENTINEL_SETTINGS if k in settings}
        if self.sentinel_password is not None:
            to_sentinels["password"] = self.sentinel_password
            to_sentinels["username"] = self.sentinel_username
        manager = Sentinel(self.sentinels, sentinel_kwargs=to_sentinels)
        credentials = {"username": self.username, "password": self.password, "db": self.db}
        return manager.master_for(self.service_name, **{**credentials, **settings})


def sentinel_where(client: redis.Redis) -> str | None:
    """``redis+sentinel://host:port,.../service_name/db`` (no password) for a client made
    by ``SentinelUrl.client``; None for any other client."""
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return None
    hosts = ",".join(_host_port(s.connection_pool.connection_kwargs) for s in _sentinels(pool))
    return f"{SCHEME}://{hosts}/{pool.service_name}/{pool.connection_kwargs.get('db', 0)}"


def close_sentinels(client: redis.Redis) -> None:
    """Close the connections to the sentinels of a client made by ``SentinelUrl.client``."""
    if isinstance(client.connection_pool, SentinelConnectionPool):
        for sentinel in _sentinels(client.connection_pool):
            sentinel.close()


def _sentinels(pool: SentinelConnectionPool) -> list[redis.Redis]:
    return list(pool.sentinel_manager.sentinels)


def _host_port(kwargs: dict[str, Any]) -> str:
    host = str(kwargs.get("host", "localhost"))
    return f"[{host}]:{kwargs.get('port')}" if ":" in host else f"{host}:{kwargs.get('port')}"


def _sentinel(text: str) -> tuple[str, int]:
    match = _HOST_PORT.match(text)
    port = int(match["port"]) if match and match["port"] else DEFAULT_SENTINEL_PORT
    if not match or not 0 < port <= 65535:
        raise _invalid(f"sentinel {text!r} is not host[:port] with a port in 1-65535")
    return match["v6"] or match["host"], port


def _invalid(problem: str) -> ValueError:
    return ValueError(f"invalid Sentinel URL: {problem} (the form: {FORM})")
