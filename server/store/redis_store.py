"""``RedisStore``: the store in Redis (6.2 or later), shared by any number of servers.

Keys, all under a prefix (``base.DEFAULT_PREFIX`` unless configured)::

    {p}:doc:{kind}:{id}               string   a JSON document
    {p}:docs:{kind}                   set      the ids of a kind, for ``list``
    {p}:blob:{key}                    string   a blob's manifest (JSON), written last
    {p}:blob:{key}:{generation}:{n}   string   chunk n of one write of the blob
    {p}:events:{log_id}               stream   one entry an event, field ``data`` (JSON)

Blob keys may hold ``/`` but never ``:``, so a manifest's name is never a chunk's.
"""

from __future__ import annotations

import builtins  # in the store classes, ``list`` names the method ``list``
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.client import Pipeline
from redis.retry import Retry
from redis.typing import EncodableT, FieldT

from rnnlm.server.errors import DataLoss, quote
from rnnlm.server.store.base import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_PREFIX,
    Fence,
    StaleWrite,
    Store,
    Updater,
    check_blob_key,
    check_id,
    check_log_id,
)
from rnnlm.server.store.codec import (
    BlobInfo,
    Document,
    decode_doc,
    decode_event,
    decode_manifest,
    encode_doc,
    encode_manifest,
    new_generation,
    split_chunks,
)
from rnnlm.server.store.redis_common import redis_errors_unavailable
from rnnlm.server.store.redis_housekeeping import RedisHousekeeping
from rnnlm.server.store.redis_sentinel import (
    SentinelUrl,
    close_sentinels,
    is_sentinel_url,
    sentinel_where,
)

# Client settings for from_url: fail within seconds when Redis is gone, and retry a few
# times quickly so that a pooled connection broken by a Redis restart is replaced unseen.
_SOCKET_TIMEOUT_S = 5.0
_HEALTH_CHECK_INTERVAL_S = 10
_RETRY = Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.01), retries=3)
# A blocking XREAD waits in slices shorter than any sane socket timeout.
_BLOCK_SLICE_S = 1.0
# Chunks are sent in pipelines of about this many bytes: bounded client-side buffering.
_PIPELINE_BYTES = 32 * 1024 * 1024


class RedisStore(RedisHousekeeping, Store):
    """A ``Store`` in Redis through a redis-py client made with ``decode_responses=False``."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = DEFAULT_PREFIX,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        if client.get_encoder().decode_responses:
            raise ValueError("the Redis client must not decode replies (decode_responses=False)")
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be positive, not {chunk_bytes}")
        if not prefix or ":" in prefix:
            raise ValueError(f"invalid key prefix {prefix!r}: it must be non-empty, without ':'")
        self._client = client
        self._prefix = prefix
        self._chunk_bytes = chunk_bytes

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        **client_kwargs: Any,
    ) -> RedisStore:
        """A store on ``redis://[:password@]host:port/db`` (``rediss://``, ``unix://``), or on
        the primary that Sentinels name, ``redis+sentinel://[:password@]host:port[,...]/
        service_name[/db]`` (``redis_sentinel.py``); ``client_kwargs`` go to redis-py and
        override this module's timeouts and retry policy."""
        settings: dict[str, Any] = {
            "socket_timeout": _SOCKET_TIMEOUT_S,
            "socket_connect_timeout": _SOCKET_TIMEOUT_S,
            "health_check_interval": _HEALTH_CHECK_INTERVAL_S,
            "retry": _RETRY,
            **client_kwargs,
            "decode_responses": False,  # chunks are bytes
        }
        if is_sentinel_url(url):
            return cls(SentinelUrl.parse(url).client(settings), prefix, chunk_bytes)
        return cls(redis.Redis.from_url(url, **settings), prefix, chunk_bytes)

    @property
    def address(self) -> str:
        """``host:port`` (or the socket path, or the sentinels) for messages."""
        sentinels = sentinel_where(self._client)
        if sentinels is not None:
            return sentinels
        kw = self._client.connection_pool.connection_kwargs
        if "path" in kw:
            return str(kw["path"])
        return f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"

    # -- documents -----------------------------------------------------------------------

    @redis_errors_unavailable
    def get(self, kind: str, doc_id: str) -> Document | None:
        check_id(kind, doc_id)
        return self._read_doc(self._client, kind, doc_id)

    @redis_errors_unavailable
    def create(self, kind: str, doc_id: str, doc: Document) -> Document:
        check_id(kind, doc_id)
        body = encode_doc(doc)
        key = self._doc_key(kind, doc_id)
        while True:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.set(key, body, nx=True)
                pipe.sadd(self._index_key(kind), doc_id)
                created, _ = pipe.execute()
            if created:
                return decode_doc(f"{kind} {doc_id}", body)
            existing = self._client.get(key)
            if existing is not None:  # None: deleted since our SET; try again
                return decode_doc(f"{kind} {doc_id}", existing)

    @redis_errors_unavailable
    def update(
        self, kind: str, doc_id: str, fn: Updater, fence: Fence | None = None
    ) -> Document | None:
        check_id(kind, doc_id)
        key, index = self._doc_key(kind, doc_id), self._index_key(kind)

        def attempt(pipe: Pipeline) -> Document | None:
            # WATCHing (see below), the pipeline runs commands at once until multi().
            current = self._read_doc(pipe, kind, doc_id)
            if fence is not None:
                same = (fence.kind, fence.doc_id) == (kind, doc_id)
                fence.check(current if same else self._read_doc(pipe, fence.kind, fence.doc_id))
            new = fn(current)
            pipe.multi()
            if new is None:
                if current is not None:
                    pipe.delete(key)
                    pipe.srem(index, doc_id)
                return None
            body = encode_doc(new)
            pipe.set(key, body)
            pipe.sadd(index, doc_id)
            return decode_doc(f"{kind} {doc_id}", body)

        # redis-py's optimistic transaction: WATCH the documents, run ``attempt``, EXEC; when
        # one changed before EXEC, Redis drops the transaction and ``attempt`` runs again, so
        # ``fn`` sees the new value and the fence is checked again. (redis-py types ``func``
        # as returning None, but value_from_callable returns what it returned.)
        watched = [key] + ([self._fence_key(fence)] if fence is not None else [])
        run = cast(Callable[[Pipeline], None], attempt)
        return cast(
            "Document | None", self._client.transaction(run, *watched, value_from_callable=True)
        )

    @redis_errors_unavailable
    def delete(self, kind: str, doc_id: str) -> bool:
        check_id(kind, doc_id)
        with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(self._doc_key(kind, doc_id))
            pipe.srem(self._index_key(kind), doc_id)
            deleted, _ = pipe.execute()
        return bool(deleted)

    def _fenced(
        self, fence: Fence | None, queue: Callable[[Pipeline], object]
    ) -> builtins.list[Any]:
        """The replies of the commands ``queue`` adds to a pipeline. With a fence they run
        in one MULTI/EXEC, only while it holds: its document is WATCHed, so a change between
        our check and EXEC makes Redis drop the transaction, and we check again."""
        if fence is None:
            with self._client.pipeline(transaction=False) as pipe:
                queue(pipe)
                return pipe.execute()

        def attempt(pipe: Pipeline) -> None:
            fence.check(self._read_doc(pipe, fence.kind, fence.doc_id))
            pipe.multi()
            queue(pipe)

        # EXEC's replies (typed loosely by redis-py: its result may also be func's value).
        return cast(builtins.list[Any], self._client.transaction(attempt, self._fence_key(fence)))

    def _fence_key(self, fence: Fence) -> str:
        check_id(fence.kind, fence.doc_id)
        return self._doc_key(fence.kind, fence.doc_id)

    def _read_doc(self, client: redis.Redis, kind: str, doc_id: str) -> Document | None:
        """A document, read at once: by the client, or a pipeline that WATCHes it."""
        body = client.get(self._doc_key(kind, doc_id))
        return None if body is None else decode_doc(f"{kind} {doc_id}", body)

    def _doc_key(self, kind: str, doc_id: str) -> str:
        return f"{self._prefix}:doc:{kind}:{doc_id}"

    def _index_key(self, kind: str) -> str:
        return f"{self._prefix}:docs:{kind}"

    # -- blobs ---------------------------------------------------------------------------

    @redis_errors_unavailable
    def put_blob(self, key: str, data: bytes, fence: Fence | None = None) -> BlobInfo:
        check_blob_key(key)
        chunks, info = split_chunks(bytes(data), self._chunk_bytes)
        generation = new_generation()
        self._set_chunks(key, generation, chunks)
        # SET ... GET swaps the manifest atomically and tells us which write we replaced,
        # so of two concurrent writers each removes exactly the chunks it made unreachable.
        manifest, name = encode_manifest(info, generation), self._manifest_key(key)
        try:
            (old,) = self._fenced(fence, lambda p: p.set(name, manifest, get=True))
        except StaleWrite:
            self._delete_chunks(key, manifest)  # ours, never reachable
            raise
        if old is not None:
            self._delete_chunks(key, old)
        return info

    @redis_errors_unavailable
    def delete_blob(self, key: str, fence: Fence | None = None) -> bool:
        check_blob_key(key)
        # Manifest first, as in put_blob.
        (old,) = self._fenced(fence, lambda p: p.getdel(self._manifest_key(key)))
        if old is None:
            return False
        self._delete_chunks(key, old)
        return True

    def _set_chunks(self, key: str, generation: str, chunks: builtins.list[bytes]) -> None:
        with self._client.pipeline(transaction=False) as pipe:
            pending = 0
            for n, chunk in enumerate(chunks):
                pipe.set(self._chunk_key(key, generation, n), chunk)
                pending += len(chunk)
                if pending >= _PIPELINE_BYTES:
                    pipe.execute()
                    pending = 0
            pipe.execute()

    def _delete_chunks(self, key: str, raw_manifest: bytes | str) -> None:
        """Remove the chunks an old manifest names. A malformed one names none we can trust:
        its chunks stay behind rather than failing the write that replaced it."""
        try:
            info, generation = decode_manifest(key, raw_manifest)
        except DataLoss:
            return
        names = [self._chunk_key(key, generation, n) for n in range(len(info.chunk_sizes))]
        self._client.delete(*names)

    @redis_errors_unavailable
    def _manifest_bytes(self, key: str) -> bytes | str | None:
        return self._client.get(self._manifest_key(key))

    @redis_errors_unavailable
    def _read_chunks(
        self, key: str, info: BlobInfo, generation: str
    ) -> builtins.list[bytes | None]:
        with self._client.pipeline(transaction=False) as pipe:
            for n in range(len(info.chunk_sizes)):
                pipe.get(self._chunk_key(key, generation, n))
            return pipe.execute()

    def _manifest_key(self, key: str) -> str:
        return f"{self._prefix}:blob:{key}"

    def _chunk_key(self, key: str, generation: str, n: int) -> str:
        return f"{self._prefix}:blob:{key}:{generation}:{n}"

    # -- event logs ----------------------------------------------------------------------

    @redis_errors_unavailable
    def append_event(self, log_id: str, event: Document, fence: Fence | None = None) -> str:
        check_log_id(log_id)
        fields: dict[FieldT, EncodableT] = {"data": encode_doc(event)}
        (event_id,) = self._fenced(fence, lambda p: p.xadd(self._stream_key(log_id), fields))
        return event_id.decode()

    @redis_errors_unavailable
    def read_events(
        self, log_id: str, after: str | None = None, timeout: float = 0.0
    ) -> builtins.list[tuple[str, Document]]:
        check_log_id(log_id)
        start = "0-0" if after is None else _check_stream_id(after)
        stream = self._stream_key(log_id)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            # XREAD BLOCK 0 would wait forever, so never ask for less than 1 ms.
            block = int(min(remaining, _BLOCK_SLICE_S) * 1000) + 1 if remaining > 0 else None
            reply = self._client.xread({stream: start}, block=block)
            if reply or block is None:
                entries = [(i.decode(), fields.get(b"data", b"")) for i, fields in _entries(reply)]
                return [(i, decode_event(log_id, i, data)) for i, data in entries]

    @redis_errors_unavailable
    def delete_events(self, log_id: str) -> None:
        check_log_id(log_id)
        self._client.delete(self._stream_key(log_id))

    def _stream_key(self, log_id: str) -> str:
        return f"{self._prefix}:events:{log_id}"

    # -- health --------------------------------------------------------------------------

    @redis_errors_unavailable
    def ping(self) -> None:
        self._client.ping()

    def describe(self) -> str:
        kw = self._client.connection_pool.connection_kwargs
        if "path" in kw:
            where = f"unix://{kw['path']}?db={kw.get('db', 0)}"
        elif is_sentinel_url(self.address):
            where = self.address
        else:
            tls = issubclass(self._client.connection_pool.connection_class, redis.SSLConnection)
            scheme = "rediss" if tls else "redis"
            where = f"{scheme}://{self.address}/{kw.get('db', 0)}"
        return f"{where} (prefix {self._prefix!r})"

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()
        close_sentinels(self._client)


def _check_stream_id(after: str) -> str:
    """A Redis stream id ("<ms>-<seq>"); anything else is the caller's mistake."""
    ms, dash, seq = after.partition("-") if isinstance(after, str) else ("", "", "")
    if not (dash and ms.isdigit() and seq.isdigit() and ms.isascii() and seq.isascii()):
        raise ValueError(f"invalid event id {quote(after)}: expected '<milliseconds>-<sequence>'")
    if int(ms) >= 2**64 or int(seq) >= 2**64:  # Redis refuses these with a ResponseError
        raise ValueError(f"invalid event id {quote(after)}: both parts must be below 2**64")
    return after


def _entries(reply: Any) -> Iterable[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of a one-stream XREAD reply (a list under RESP2, a dict under RESP3)."""
    if not reply:
        return []
    if not isinstance(reply, dict):
        return reply[0][1]
    (entries,) = reply.values()
    # Some redis-py versions wrap a RESP3 reply's entries (tuples) in one more list.
    return entries[0] if entries and isinstance(entries[0], list) else entries
