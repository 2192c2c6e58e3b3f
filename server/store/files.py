"""Durable file primitives for ``LocalStore``: atomic replacement, fsync of folders, and
``flock`` that copes with the lock file being removed by its holder."""

from __future__ import annotations

import fcntl
import functools
import os
import uuid
from collections.abc import Callable
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
