"""Where the service keeps models, jobs, corpora, checkpoints and job events: one ``Store``
interface (``base.py``) with a Redis backend and a directory backend."""

from __future__ import annotations

from pathlib import Path

from rnnlm.server.store.base import (
    CORPUS,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_PREFIX,
    JOB,
    MODEL,
    TRAIN_REQUEST,
    Fence,
    StaleWrite,
    Store,
)
from rnnlm.server.store.codec import BlobInfo, Document
from rnnlm.server.store.local import LocalStore
from rnnlm.server.store.redis_store import RedisStore

__all__ = [
    "CORPUS",
    "JOB",
    "MODEL",
    "TRAIN_REQUEST",
    "BlobInfo",
    "Document",
    "Fence",
    "LocalStore",
    "RedisStore",
    "StaleWrite",
    "Store",
    "open_store",
]


def open_store(
    redis_url: str | None,
    store_dir: str | Path,
    prefix: str = DEFAULT_PREFIX,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Store:
    """Redis when a URL is given, else the directory ``store_dir``. Connects lazily: call
    ``ping()`` to find out whether Redis answers."""
    if redis_url:
        return RedisStore.from_url(redis_url, prefix=prefix, chunk_bytes=chunk_bytes)
    return LocalStore(store_dir, chunk_bytes=chunk_bytes)
