"""The ``Store`` interface: everything the service keeps, behind one API with two backends
(``RedisStore``, ``LocalStore``) that pass one shared test suite.

Three kinds of data:

- **documents**: small JSON objects by (kind, id): models, jobs, corpora, train-request ids.
  ``update`` is an atomic read-modify-write, so two servers sharing one store never lose
  each other's updates.
- **blobs**: checkpoints and corpora, stored in bounded chunks with a manifest that holds the
  size and sha256 of every chunk and of the whole. Writing stores the chunks first and the
  manifest last, so a reader sees the old blob or the new one, never half of one; reading
  verifies every checksum and raises ``DataLoss`` on a mismatch.
- **event logs**: per-job append-only logs (progress, checkpoints, state changes) that a
  reader can follow with a blocking read, from any process sharing the store.

Every method raises ``Unavailable`` when the backend cannot be reached.

Writes may carry a ``Fence`` on a job's lease generation: a writer whose lease was taken
over gets ``StaleWrite`` and has changed nothing, so it never overwrites what a newer run wrote.
"""

from __future__ import annotations

import builtins  # in the store classes, ``list`` names the method ``list``
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from rnnlm.server.errors import DataLoss, Unavailable, quote
from rnnlm.server.ids import BLOB_KEY, ID, matches
from rnnlm.server.store.codec import BlobInfo, Document, decode_doc, decode_manifest, join_verified

# The kinds of documents.
MODEL, JOB, CORPUS, TRAIN_REQUEST = "model", "job", "corpus", "train-request"
DOC_KINDS = (MODEL, JOB, CORPUS, TRAIN_REQUEST)

DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
# Redis keys start with it (the server's --redis-prefix).
DEFAULT_PREFIX = "rnnlm"
# A reader that finds a chunk gone re-reads the manifest: the blob was replaced under it.
# It gives up after this many replacements in a row (a writer far faster than a reader).
MAX_READ_ATTEMPTS = 10

Updater = Callable[[Document | None], Document | None]


@dataclass(frozen=True)
class Fence:
    """A write's condition: document ``(kind, doc_id)`` exists and its ``field`` equals
    ``value``. Backends check it in the same transaction (Redis) or under the same lock
    (directory) as the write, so nothing can change the document in between."""

    kind: str
    doc_id: str
    field: str
    value: Any

    def check(self, doc: Document | None) -> None:
        """``StaleWrite`` unless ``doc``, the fence's document as it is now, satisfies it."""
        if doc is None or doc.get(self.field) != self.value:
            now = "is gone" if doc is None else f"has {self.field}={doc.get(self.field)!r}"
            raise StaleWrite(
                f"write refused: {self.kind} {self.doc_id} {now}, not {self.value!r} "
                "(a newer writer took over)"
            )


class StaleWrite(Exception):
    """A fenced write was refused: its fence no longer holds. Nothing was written. Not a
    ``ServiceError``: it never reaches a client; the writer (a job run) just stops."""


# Ids and keys are restricted so that both backends can use them as file or key names (the
# patterns, matched whole, are in ``rnnlm.server.ids``). The service validates user input
# first, with clearer messages.


def check_kind(kind: str) -> None:
    if kind not in DOC_KINDS:
        raise ValueError(f"unknown document kind {kind!r}; known: {', '.join(DOC_KINDS)}")


def check_id(kind: str, doc_id: str) -> None:
    check_kind(kind)
    if not matches(ID, doc_id):
        raise ValueError(f"invalid {kind} id {quote(doc_id)}")


def check_log_id(log_id: str) -> None:
    """Event logs belong to jobs, so their ids follow the job id rules."""
    check_id(JOB, log_id)


def check_blob_key(key: str) -> None:
    if not matches(BLOB_KEY, key) or ".." in key:
        raise ValueError(f"invalid blob key {quote(key, 200)}")


@dataclass(frozen=True)
class Scan:
    """What ``Store.scan`` found: documents by id, and why each unreadable one is."""

    docs: dict[str, Document]
    unreadable: dict[str, str]


def decode_scan(kind: str, found: Iterable[tuple[str, bytes | str | None]]) -> Scan:
    """The ``Scan`` of stored documents by id; None is one deleted since it was listed."""
    docs, unreadable = {}, {}
    for doc_id, raw in found:
        if raw is None:
            continue
        try:
            docs[doc_id] = decode_doc(f"{kind} {doc_id}", raw)
        except DataLoss as err:
            unreadable[doc_id] = str(err)
    return Scan(docs, unreadable)


class Store(ABC):
    """See the module docstring. Implementations are safe to share between threads."""

    # -- documents -----------------------------------------------------------------------

    @abstractmethod
    def get(self, kind: str, doc_id: str) -> Document | None:
        """The document, or None when there is none."""

    def list(self, kind: str) -> list[Document]:
        """All documents of a kind, in no particular order; ``DataLoss`` if one does not decode."""
        found = self.scan(kind)
        if found.unreadable:
            raise DataLoss(next(iter(found.unreadable.values())))
        return builtins.list(found.docs.values())

    @abstractmethod
    def create(self, kind: str, doc_id: str, doc: Document) -> Document:
        """Store ``doc`` unless one exists already; returns the stored one (the existing one
        when there was one). Atomic: of two concurrent creates, one wins and both return it."""

    @abstractmethod
    def update(
        self, kind: str, doc_id: str, fn: Updater, fence: Fence | None = None
    ) -> Document | None:
        """Atomically replace the document with ``fn(current)`` (current is None when absent);
        ``fn`` returning None deletes it. ``fn`` may run more than once under contention and
        may raise to abort without a change; ``fence`` is checked before it runs."""

    @abstractmethod
    def delete(self, kind: str, doc_id: str) -> bool:
        """Remove the document; False when there was none."""

    # -- blobs ---------------------------------------------------------------------------

    @abstractmethod
    def put_blob(self, key: str, data: bytes, fence: Fence | None = None) -> BlobInfo:
        """Write (or replace) a blob; a refused ``fence`` leaves none of its chunks behind."""

    def get_blob(self, key: str) -> bytes | None:
        """The blob; None when absent; ``DataLoss`` when a chunk is missing or does not match
        the manifest."""
        check_blob_key(key)
        raw = self._manifest_bytes(key)
        for _ in range(MAX_READ_ATTEMPTS):
            if raw is None:
                return None
            info, generation = decode_manifest(key, raw)
            chunks = self._read_chunks(key, info, generation)
            if None not in chunks:
                return join_verified(key, info, cast("builtins.list[bytes]", chunks))
            # A writer may have replaced the blob since we read the manifest and removed the
            # old chunks: then the manifest has changed and we read the new blob. A chunk
            # missing under an unchanged manifest is lost data.
            again = self._manifest_bytes(key)
            if again == raw:
                n = chunks.index(None)
                raise DataLoss(f"blob {key!r}: chunk {n} of {len(chunks)} is missing")
            raw = again
        raise Unavailable(
            f"blob {key!r} was replaced {MAX_READ_ATTEMPTS} times while being read; try again"
        )

    def blob_info(self, key: str) -> BlobInfo | None:
        """The manifest without reading the chunks."""
        check_blob_key(key)
        raw = self._manifest_bytes(key)
        return None if raw is None else decode_manifest(key, raw)[0]

    @abstractmethod
    def delete_blob(self, key: str, fence: Fence | None = None) -> bool:
        """Remove the blob and its chunks; False when there was none."""

    # What ``get_blob`` and ``blob_info`` read through (raising ``Unavailable`` as above).

    @abstractmethod
    def _manifest_bytes(self, key: str) -> bytes | str | None:
        """The blob's stored manifest; None when there is none."""

    @abstractmethod
    def _read_chunks(
        self, key: str, info: BlobInfo, generation: str
    ) -> builtins.list[bytes | None]:
        """The chunks of one write of the blob, in order; None for each one that is gone."""

    # -- event logs ----------------------------------------------------------------------

    @abstractmethod
    def append_event(self, log_id: str, event: Document, fence: Fence | None = None) -> str:
        """Append to the log; returns the event's id (opaque, increasing within the log)."""

    @abstractmethod
    def read_events(
        self, log_id: str, after: str | None = None, timeout: float = 0.0
    ) -> builtins.list[tuple[str, Document]]:
        """Events after the id ``after`` (None: from the start), oldest first. When there
        are none yet, waits up to ``timeout`` seconds for one. Invalid ``after`` ids raise
        ``ValueError``."""

    @abstractmethod
    def delete_events(self, log_id: str) -> None:
        """Remove the whole log."""

    # -- housekeeping (retention and the orphan sweep, ``rnnlm.server.sweeper``) ----------

    @abstractmethod
    def scan(self, kind: str) -> Scan:
        """What ``list`` reads, but one damaged document does not hide the others."""

    @abstractmethod
    def list_blobs(self, prefix: str = "") -> dict[str, float]:
        """Blob keys that start with ``prefix``, each with when it was written (Unix time)."""

    @abstractmethod
    def list_event_logs(self) -> dict[str, float]:
        """Event log ids, each with the time of its last append (Unix time)."""

    @abstractmethod
    def expire_at(self, kind: str, doc_id: str, when: float) -> None:
        """Remove the document at Unix time ``when`` (Redis: by itself; the directory store:
        at the first ``collect_garbage`` after it). Writing the document again keeps the
        deadline on the directory store, drops it on Redis: set it after the last write."""

    @abstractmethod
    def expire_events_at(self, log_id: str, when: float | None) -> None:
        """Remove the event log at Unix time ``when`` (as ``expire_at``); None keeps it."""

    @abstractmethod
    def collect_garbage(self, stray_before: float) -> builtins.list[str]:
        """Remove what passed its deadline, and pieces no reader can reach that were written
        before ``stray_before`` (chunks of an interrupted write, stale index entries,
        temporary files). Returns what it removed, for the log."""

    # -- health --------------------------------------------------------------------------

    @abstractmethod
    def ping(self) -> None:
        """Return when the backend answers; raise ``Unavailable`` otherwise."""

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, for the log (no passwords)."""

    def close(self) -> None:  # noqa: B027 - optional for backends with nothing to release
        """Release connections and files."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
