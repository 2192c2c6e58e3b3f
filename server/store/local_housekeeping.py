"""``LocalStore``'s housekeeping: listing what the store holds for the orphan sweep, expiry
and the removal of pieces no reader can reach. A mixin, so that ``local.py`` keeps to
reading and writing.

A directory cannot expire files by itself, so a deadline is a small file, the mark::

    expiry/doc/{kind}/{id}      the Unix time at which document (kind, id) goes
    expiry/events/{log_id}      the same for an event log

and ``collect_garbage`` (which the server's sweep calls) removes what is due. A mark is
written and acted on under the lock of what it names, so a mark never removes a document
or log that was written again after the mark was checked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from pathlib import Path
from urllib.parse import unquote

from rnnlm.server.store.base import DOC_KINDS, Scan, check_id, check_kind, check_log_id, decode_scan
from rnnlm.server.store.codec import generation_time, manifest_generation, written_at
from rnnlm.server.store.files import (
    os_errors_unavailable,
    read_or_none,
    unlink_durably,
    write_atomic,
)

# A blob's manifest in its folder (the layout: ``local.py``).
MANIFEST = "manifest.json"


class LocalHousekeeping:
    root: Path
    _locked: Callable[[Path], AbstractContextManager[None]]
    _doc_path: Callable[[str, str], Path]
    _doc_lock: Callable[[str], Path]
    _log_path: Callable[[str], Path]
    _events_lock: Callable[[], Path]

    @os_errors_unavailable
    def scan(self, kind: str) -> Scan:
        check_kind(kind)
        paths = sorted((self.root / "docs" / kind).glob("*.json"))
        return decode_scan(kind, ((path.stem, read_or_none(path)) for path in paths))

    @os_errors_unavailable
    def list_blobs(self, prefix: str = "") -> dict[str, float]:
        found = {}
        for folder in _children(self.root / "blobs"):
            key = unquote(folder.name)
            if key.startswith(prefix) and (raw := read_or_none(folder / MANIFEST)) is not None:
                found[key] = written_at(key, raw)
        return found

    @os_errors_unavailable
    def list_event_logs(self) -> dict[str, float]:
        found = {}
        for path in (self.root / "events").glob("*.log"):
            with suppress(FileNotFoundError):  # deleted since the glob
                found[path.stem] = path.stat().st_mtime
        return found

    @os_errors_unavailable
    def expire_at(self, kind: str, doc_id: str, when: float) -> None:
        check_id(kind, doc_id)
        with self._locked(self._doc_lock(kind)):
            _write_mark(self._doc_mark(kind, doc_id), when)

    @os_errors_unavailable
    def expire_events_at(self, log_id: str, when: float | None) -> None:
        check_log_id(log_id)
        with self._locked(self._events_lock()):
            mark = self._events_mark(log_id)
            if when is None:
                mark.unlink(missing_ok=True)
            else:
                _write_mark(mark, when)

    @os_errors_unavailable
    def collect_garbage(self, stray_before: float) -> list[str]:
        now = time.time()
        removed = []
        for kind in DOC_KINDS:
            for mark in _children(self.root / "expiry" / "doc" / kind):
                with self._locked(self._doc_lock(kind)):
                    target = self._doc_path(kind, mark.name)
                    if _due(mark, target, now):
                        removed.append(f"expired {kind} {mark.name}")
        for mark in _children(self.root / "expiry" / "events"):
            with self._locked(self._events_lock()):
                if _due(mark, self._log_path(mark.name), now):
                    removed.append(f"expired event log {mark.name}")
        for folder in _children(self.root / "blobs"):
            removed += self._tidy_blob_folder(folder, stray_before)
        for path in (self.root / "docs").glob("*/.*.tmp"):
            removed += _remove_if_older(path, stray_before, "temporary file")
        return removed

    def _tidy_blob_folder(self, folder: Path, stray_before: float) -> list[str]:
        """Chunks and temporary files a crashed writer left. Writers hold the folder's lock
        from their first chunk to their manifest, so under it nothing is half written."""
        key = unquote(folder.name)
        removed = []
        with self._locked(folder / ".lock"):
            raw = read_or_none(folder / MANIFEST)
            keep = manifest_generation(key, raw) if raw is not None else None
            for path in _children(folder):
                name = path.name
                chunk_generation = name.split(".")[0] if name.endswith(".chunk") else None
                if chunk_generation is not None and chunk_generation != keep:
                    if generation_time(chunk_generation) < stray_before:
                        path.unlink(missing_ok=True)
                        removed.append(f"stray chunk {name} of blob {key!r}")
                elif name.endswith(".tmp"):
                    removed += _remove_if_older(path, stray_before, f"temporary file of {key!r}")
            if raw is None and not any(p.name != ".lock" for p in _children(folder)):
                remove_blob_folder(folder)
        return removed

    def _doc_mark(self, kind: str, doc_id: str) -> Path:
        return self.root / "expiry" / "doc" / kind / doc_id

    def _events_mark(self, log_id: str) -> Path:
        return self.root / "expiry" / "events" / log_id


def _children(folder: Path) -> list[Path]:
    """A folder's entries, none when it does not exist (yet)."""
    try:
        return sorted(folder.iterdir())
    except FileNotFoundError:
        return []


def remove_blob_folder(folder: Path) -> None:
    """Remove a blob's folder, holding its lock (``flock`` copes with the lock file going).
    A writer that came meanwhile keeps it: it is not empty."""
    (folder / ".lock").unlink(missing_ok=True)
    with suppress(OSError):
        folder.rmdir()


def _write_mark(mark: Path, when: float) -> None:
    body = repr(float(when)).encode()
    if read_or_none(mark) != body:  # the sweep sets the same deadline again and again
        write_atomic(mark, body)


def _due(mark: Path, target: Path, now: float) -> bool:
    """Act on one mark (holding its target's lock): remove the target when its time has
    come, and the mark when it is spent or its target is gone. True: the target went."""
    raw = read_or_none(mark)
    if raw is None:
        return False
    try:
        deadline = float(raw)
    except ValueError:
        deadline = 0.0  # a damaged mark: its target was meant to go
    if not target.exists():
        unlink_durably(mark)
        return False
    if deadline > now:
        return False
    unlink_durably(target)
    unlink_durably(mark)
    return True


def _remove_if_older(path: Path, before: float, what: str) -> list[str]:
    try:
        if path.stat().st_mtime >= before:
            return []
        os.unlink(path)
    except FileNotFoundError:
        return []
    return [f"{what} {path.name}"]
