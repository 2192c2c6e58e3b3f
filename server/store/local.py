"""``LocalStore``: the store in a directory, the default when no Redis URL is given.

Layout under the root::

    docs/{kind}/{id}.json                  one JSON document per file
    blobs/{quoted key}/manifest.json       written last; names the chunks' generation
    blobs/{quoted key}/{generation}.{n}.chunk
    events/{log_id}.log                    one event a line: "{20-digit id} {json}"
    locks/                                 flock files for documents and events
    expiry/                                deadlines (``local_housekeeping.py``)

Several processes may share one directory on a local file system (``flock`` is not to be
trusted over NFS). Every file that is replaced is written to a temporary name, fsynced and
renamed over the old one, so a reader without a lock sees the old file or the new one.
"""

from __future__ import annotations

import builtins  # in the store classes, ``list`` names the method ``list``
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rnnlm.server.errors import DataLoss, Unavailable
from rnnlm.server.errors import quote as quote_value
from rnnlm.server.ids import LOCAL_EVENT_DIGITS, LOCAL_EVENT_ID, matches
from rnnlm.server.store.base import (
    DEFAULT_CHUNK_BYTES,
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
    encode_doc,
    encode_manifest,
    new_generation,
    split_chunks,
)
from rnnlm.server.store.files import (
    PathLocks,
    os_errors_unavailable,
    read_or_none,
    unlink_durably,
    write_atomic,
    write_file,
)
from rnnlm.server.store.local_housekeeping import MANIFEST, LocalHousekeeping, remove_blob_folder

# How often a blocked ``read_events`` looks at the file for appends by other processes.
_POLL_S = 0.05


class LocalStore(LocalHousekeeping, Store):
    """A ``Store`` in the directory ``root`` (created when missing)."""

    def __init__(self, root: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        root = Path(root).expanduser()
        if root.exists() and not root.is_dir():
            raise ValueError(f"store directory {root} exists and is not a directory")
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be positive, not {chunk_bytes}")
        for sub in ("docs", "blobs", "events", "locks"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self._chunk_bytes = chunk_bytes
        # A write that holds several locks takes them in one order, so that no two wait
        # for each other: a blob's lock, then document locks (sorted), then the events lock.
        self._locks = PathLocks()
        self._locked = self._locks.hold
        # Wakes readers blocked in read_events when this object appends; appends by other
        # processes (or other LocalStore objects) are found by polling.
        self._appended = threading.Condition()

    # -- documents -----------------------------------------------------------------------

    @os_errors_unavailable
    def get(self, kind: str, doc_id: str) -> Document | None:
        check_id(kind, doc_id)
        return self._read(kind, doc_id)

    @os_errors_unavailable
    def create(self, kind: str, doc_id: str, doc: Document) -> Document:
        check_id(kind, doc_id)
        body = encode_doc(doc)
        path = self._doc_path(kind, doc_id)
        with self._locked(self._doc_lock(kind)):
            existing = self._read(kind, doc_id)
            if existing is not None:
                return existing
            write_atomic(path, body)
        return decode_doc(f"{kind} {doc_id}", body)

    @os_errors_unavailable
    def update(
        self, kind: str, doc_id: str, fn: Updater, fence: Fence | None = None
    ) -> Document | None:
        check_id(kind, doc_id)
        path = self._doc_path(kind, doc_id)
        locks = {self._doc_lock(kind)} | ({self._doc_lock(fence.kind)} if fence else set())
        with self._locks.hold_all(locks):
            if fence is not None:
                self._require(fence)
            current = self._read(kind, doc_id)
            new = fn(current)
            if new is None:
                if current is not None:
                    unlink_durably(path)
                return None
            body = encode_doc(new)
            write_atomic(path, body)
        return decode_doc(f"{kind} {doc_id}", body)

    @os_errors_unavailable
    def delete(self, kind: str, doc_id: str) -> bool:
        check_id(kind, doc_id)
        path = self._doc_path(kind, doc_id)
        # Under the lock, so that a concurrent update cannot write the document back.
        with self._locked(self._doc_lock(kind)):
            if not path.exists():
                return False
            unlink_durably(path)
            return True

    def _read(self, kind: str, doc_id: str) -> Document | None:
        raw = read_or_none(self._doc_path(kind, doc_id))
        return None if raw is None else decode_doc(f"{kind} {doc_id}", raw)

    def _doc_path(self, kind: str, doc_id: str) -> Path:
        return self.root / "docs" / kind / f"{doc_id}.json"

    def _doc_lock(self, kind: str) -> Path:
        return self.root / "locks" / f"doc-{kind}.lock"

    def _require(self, fence: Fence) -> None:
        """``StaleWrite`` unless the fence holds; call it holding its document's lock."""
        check_id(fence.kind, fence.doc_id)
        fence.check(self._read(fence.kind, fence.doc_id))

    @contextmanager
    def _fenced(self, fence: Fence | None) -> Iterator[None]:
        """Hold the fence's document lock and check the fence (no fence: nothing)."""
        if fence is None:
            yield
            return
        with self._locked(self._doc_lock(fence.kind)):
            self._require(fence)
            yield

    # -- blobs ---------------------------------------------------------------------------

    @os_errors_unavailable
    def put_blob(self, key: str, data: bytes, fence: Fence | None = None) -> BlobInfo:
        check_blob_key(key)
        chunks, info = split_chunks(bytes(data), self._chunk_bytes)
        generation = new_generation()
        folder = self._blob_dir(key)
        # Writers of one blob take turns, so each removes exactly what it replaced.
        with self._locked(folder / ".lock"):
            ours = [self._chunk_path(key, generation, n) for n in range(len(chunks))]
            for path, chunk in zip(ours, chunks):
                write_file(path, chunk)
            try:
                with self._fenced(fence):
                    write_atomic(folder / MANIFEST, encode_manifest(info, generation))
            except StaleWrite:
                for path in ours:  # never reachable
                    path.unlink(missing_ok=True)
                raise
            _remove_chunks(folder, keep=generation)
        return info

    @os_errors_unavailable
    def delete_blob(self, key: str, fence: Fence | None = None) -> bool:
        check_blob_key(key)
        folder = self._blob_dir(key)
        with self._locked(folder / ".lock"):
            existed = (folder / MANIFEST).exists()
            # Manifest first: a reader then sees no blob rather than missing chunks.
            with self._fenced(fence):
                unlink_durably(folder / MANIFEST)
            _remove_chunks(folder, keep=None)
            remove_blob_folder(folder)
        return existed

    def _blob_dir(self, key: str) -> Path:
        # Quoting keeps nested keys ("a/b") in one flat folder each, so no blob's folder is
        # inside another's and removing one never disturbs another.
        return self.root / "blobs" / quote(key, safe="")

    def _chunk_path(self, key: str, generation: str, n: int) -> Path:
        return self._blob_dir(key) / f"{generation}.{n}.chunk"

    @os_errors_unavailable
    def _manifest_bytes(self, key: str) -> bytes | None:
        return read_or_none(self._blob_dir(key) / MANIFEST)

    @os_errors_unavailable
    def _read_chunks(
        self, key: str, info: BlobInfo, generation: str
    ) -> builtins.list[bytes | None]:
        paths = [self._chunk_path(key, generation, n) for n in range(len(info.chunk_sizes))]
        return [read_or_none(path) for path in paths]

    # -- event logs ----------------------------------------------------------------------

    @os_errors_unavailable
    def append_event(self, log_id: str, event: Document, fence: Fence | None = None) -> str:
        check_log_id(log_id)
        body = encode_doc(event)
        path = self._log_path(log_id)
        with self._fenced(fence), self._locked(self._events_lock()), open(path, "a+b") as f:
            last = _drop_torn_tail(f)
            event_id = f"{_parse_seq(last, log_id) + 1:0{LOCAL_EVENT_DIGITS}d}"
            f.write(event_id.encode() + b" " + body + b"\n")
            f.flush()
            os.fsync(f.fileno())
        with self._appended:
            self._appended.notify_all()
        return event_id

    @os_errors_unavailable
    def read_events(
        self, log_id: str, after: str | None = None, timeout: float = 0.0
    ) -> builtins.list[tuple[str, Document]]:
        check_log_id(log_id)
        if after is not None and not matches(LOCAL_EVENT_ID, after):
            digits = LOCAL_EVENT_DIGITS
            raise ValueError(f"invalid event id {quote_value(after)}: expected {digits} digits")
        path = self._log_path(log_id)
        deadline = time.monotonic() + timeout
        seen: tuple[int, int] | None = None
        while True:
            # Re-read only when the file changed: a blocked reader polls cheaply.
            stamp = _stamp(path)
            if stamp != seen:
                events = _read_log(path, log_id, after or "")
                if events:
                    return events
                seen = stamp
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with self._appended:
                self._appended.wait(min(remaining, _POLL_S))

    @os_errors_unavailable
    def delete_events(self, log_id: str) -> None:
        check_log_id(log_id)
        with self._locked(self._events_lock()):
            self._log_path(log_id).unlink(missing_ok=True)

    def _log_path(self, log_id: str) -> Path:
        return self.root / "events" / f"{log_id}.log"

    def _events_lock(self) -> Path:
        return self.root / "locks" / "events.lock"

    # -- health --------------------------------------------------------------------------

    @os_errors_unavailable
    def ping(self) -> None:
        if not self.root.is_dir() or not os.access(self.root, os.W_OK | os.X_OK):
            raise Unavailable(
                "store unavailable: the store directory is not writable",
                detail=f"directory {self.root} is not writable",
            )

    def describe(self) -> str:
        return f"directory {self.root}"


def _remove_chunks(folder: Path, keep: str | None) -> None:
    """Remove every chunk not of generation ``keep``, and temporary files a crash left."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        name = path.name
        stale_chunk = name.endswith(".chunk") and (keep is None or not name.startswith(keep + "."))
        if stale_chunk or name.endswith(".tmp"):
            path.unlink(missing_ok=True)


# -- event log files -------------------------------------------------------------------


def _drop_torn_tail(f: Any) -> bytes:
    """The last complete line; a line left unfinished by a crash is cut off."""
    end = f.seek(0, os.SEEK_END)
    block = 4096
    while True:
        start = max(0, end - block)
        f.seek(start)
        data = f.read(end - start)
        cut = data.rfind(b"\n")
        prev = data.rfind(b"\n", 0, max(cut, 0))
        if cut < 0 and start == 0:
            last, complete_end = b"", 0
            break
        if prev >= 0 or start == 0:
            last, complete_end = data[prev + 1 : cut], start + cut + 1
            break
        block *= 2  # one line longer than the block: look further back
    if complete_end < end:
        f.truncate(complete_end)
    return last


def _parse_seq(line: bytes, log_id: str) -> int:
    if not line:
        return 0
    head = line[:LOCAL_EVENT_DIGITS]
    if not head.isdigit():
        raise DataLoss(f"event log {log_id!r} is damaged: a line starts with {head!r}")
    return int(head)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size


def _read_log(path: Path, log_id: str, after: str) -> list[tuple[str, Document]]:
    """Events with ids above ``after`` (fixed-width digits compare as strings)."""
    data = read_or_none(path) or b""
    data = data[: data.rfind(b"\n") + 1]  # an append in progress is not an event yet
    events = []
    for line in data.splitlines():
        event_id = line[:LOCAL_EVENT_DIGITS].decode("ascii", "replace")
        if event_id > after:
            body = line[LOCAL_EVENT_DIGITS + 1 :]  # after the id and a space
            events.append((event_id, decode_event(log_id, event_id, body)))
    return events
