"""``RedisStore``'s housekeeping: listing what the store holds for the orphan sweep, expiry
(Redis' own ``PEXPIREAT``: nothing has to run for it to happen) and the removal of pieces
no reader can reach. A mixin, so that ``redis_store.py`` keeps to reading and writing.

Key layout: see ``redis_store.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rnnlm.server.store.base import DOC_KINDS, Scan, check_id, check_kind, check_log_id, decode_scan
from rnnlm.server.store.codec import generation_time, manifest_generation, written_at
from rnnlm.server.store.redis_common import as_texts, redis_errors_unavailable

if TYPE_CHECKING:
    import redis

# Keys asked for per SCAN round trip.
_SCAN_COUNT = 1000

# Drops index entries whose document is gone (expired). One script, so that a document
# created again between the check and the SREM cannot lose its entry.
# KEYS[1]: the index set; ARGV[1]: the prefix of the documents' keys.
_DROP_STALE_INDEX_ENTRIES = """
local removed = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    redis.call('SREM', KEYS[1], id)
    removed[#removed + 1] = id
  end
end
return removed
"""


class RedisHousekeeping:
    _client: redis.Redis
    _doc_key: Callable[[str, str], str]
    _index_key: Callable[[str], str]
    _manifest_key: Callable[[str], str]
    _stream_key: Callable[[str], str]

    @redis_errors_unavailable
    def scan(self, kind: str) -> Scan:
        check_kind(kind)
        ids = sorted(as_texts(self._client.smembers(self._index_key(kind))))
        replies = self._client.mget([self._doc_key(kind, i) for i in ids]) if ids else []
        return decode_scan(kind, zip(ids, replies))

    @redis_errors_unavailable
    def list_blobs(self, prefix: str = "") -> dict[str, float]:
        base = self._manifest_key("")
        # A manifest's name has no ':' after the base; a chunk's has two.
        keys = [k for name in self._names(base + prefix) if ":" not in (k := name[len(base) :])]
        replies = self._client.mget([self._manifest_key(k) for k in keys]) if keys else []
        return {
            key: written_at(key, reply) for key, reply in zip(keys, replies) if reply is not None
        }

    @redis_errors_unavailable
    def list_event_logs(self) -> dict[str, float]:
        base = self._stream_key("")
        names = self._names(base)
        with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.xrevrange(name, count=1)
            lasts = pipe.execute()
        # A stream entry's id starts with the milliseconds of its append.
        return {
            name[len(base) :]: int(last[0][0].split(b"-")[0]) / 1000 if last else 0.0
            for name, last in zip(names, lasts)
        }

    @redis_errors_unavailable
    def expire_at(self, kind: str, doc_id: str, when: float) -> None:
        check_id(kind, doc_id)
        self._client.pexpireat(self._doc_key(kind, doc_id), int(when * 1000))

    @redis_errors_unavailable
    def expire_events_at(self, log_id: str, when: float | None) -> None:
        check_log_id(log_id)
        if when is None:
            self._client.persist(self._stream_key(log_id))
        else:
            self._client.pexpireat(self._stream_key(log_id), int(when * 1000))

    @redis_errors_unavailable
    def collect_garbage(self, stray_before: float) -> list[str]:
        # Expired documents leave their id in the kind's index set: drop those.
        removed = []
        drop = self._client.register_script(_DROP_STALE_INDEX_ENTRIES)
        for kind in DOC_KINDS:
            prefix = self._doc_key(kind, "")
            for doc_id in drop(keys=[self._index_key(kind)], args=[prefix]):
                removed.append(f"index entry of expired {kind} {doc_id.decode()}")
        return removed + self._remove_stray_chunks(stray_before)

    def _remove_stray_chunks(self, stray_before: float) -> list[str]:
        """Chunks of a write that never got its manifest (the writer died) or whose manifest
        was replaced without them being removed. A write in progress has its generation's
        chunks but not yet its manifest: the age spares it."""
        base = self._manifest_key("")
        generations: dict[tuple[str, str], list[str]] = {}
        for name in self._names(base):
            parts = name[len(base) :].split(":")
            if len(parts) == 3:  # key, generation, chunk number
                generations.setdefault((parts[0], parts[1]), []).append(name)
        removed = []
        for (key, generation), names in sorted(generations.items()):
            if generation_time(generation) >= stray_before:
                continue
            # Read now, not before the SCAN: the current generation is never stray.
            manifest = self._client.get(self._manifest_key(key))
            if manifest is not None and manifest_generation(key, manifest) == generation:
                continue
            self._client.delete(*names)
            removed.append(f"{len(names)} stray chunk(s) of blob {key!r}")
        return removed

    def _names(self, start: str) -> list[str]:
        """The names of the keys that start with ``start`` (glob characters in it escaped)."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in start) + "*"
        return as_texts(self._client.scan_iter(match=pattern, count=_SCAN_COUNT))
