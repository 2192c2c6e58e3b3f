"""Durable file primitives for ``LocalStore``: atomic replacement, fsync of folders, and
locks by path across threads and processes (``flock``, coping with the lock file being
removed by its holder).

Not the ``filelock`` package (weighed for issue 11): it polls a non-blocking ``flock``, so a
contended lock, taken by every update and event append, is handed over up to a poll interval
late, and it would still need the per-path thread locks. Not SQLite: it would change the
directory layout that operators and tests read. Either way: a local file system only
(``flock`` is not to be trusted over NFS).
"""

from __future__ import annotations

import fcntl
import functools
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from rnnlm.server.errors import Unavailable


def flock(path: Path) -> int:
    """An fd holding an exclusive ``flock`` on ``path``, which is created when missing.

    Whoever holds the lock may remove the file (``delete_blob`` does). A waiter then wakes
    up holding a lock on a file that no longer has a name, so it checks that the name still
    leads to the file it locked, and starts over when not.
    """
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder was removed after our mkdir
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


class PathLocks:
    """Exclusive locks named by path: across threads (a ``threading.Lock`` per path, as
    ``flock`` alone would not exclude two threads sharing one open file) and across
    processes (``flock``)."""

    def __init__(self) -> None:
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, path: Path) -> Iterator[None]:
        with self._guard:
            thread_lock = self._locks.setdefault(path, threading.Lock())
        with thread_lock:
            fd = flock(path)
            try:
                yield
            finally:
                os.close(fd)  # releases the flock

    @contextmanager
    def hold_all(self, paths: Iterable[Path]) -> Iterator[None]:
        """Several locks, taken in sorted order so that two holders never wait for each
        other."""
        with ExitStack() as stack:
            for path in sorted(set(paths)):
                stack.enter_context(self.hold(path))
            yield


def write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new contents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def unlink_durably(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename or removal in ``path`` survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


F = TypeVar("F", bound=Callable[..., Any])


def os_errors_unavailable(method: F) -> F:
    """A file system error (disk gone, permission lost) means the store cannot be used: the
    method of a directory store (``self.root``) raises Unavailable instead."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except OSError as exc:
            # The client is told no server path; the log is.
            raise Unavailable(
                "store unavailable: the store directory cannot be used; retry later",
                detail=f"directory {self.root}: {exc}",
            ) from exc

    return cast(F, wrapper)
