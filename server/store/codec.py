"""What both store backends share: the JSON encoding of documents and blob manifests, the
checks that turn a bad chunk into a ``DataLoss`` that names the blob, and the decoding their
housekeeping (``scan``, the age of blobs) needs.

Keeping these in one place means both backends store the same bytes and raise the same
messages, which the shared test suite relies on.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from typing import cast

from rnnlm.server.errors import DataLoss, Unavailable
from rnnlm.server.store.base import BlobInfo, Document, Scan

# A reader that finds a chunk gone re-reads the manifest: the blob was replaced under it.
# It gives up after this many replacements in a row (a writer far faster than a reader).
MAX_READ_ATTEMPTS = 10


def encode_doc(doc: Document) -> bytes:
    """A document as compact JSON; a ``TypeError`` for anything that is not a JSON object."""
    if not isinstance(doc, dict):
        raise TypeError(f"a document must be a dict, not {type(doc).__name__}")
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_doc(what: str, raw: bytes | str) -> Document:
    """Parse a stored document; ``what`` names it in the ``DataLoss`` message."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise DataLoss(f"stored {what} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DataLoss(f"stored {what} is not a JSON object")
    return doc


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


def new_generation() -> str:
    """A unique name for one write of a blob: time first so that generations sort."""
    return f"{time.time_ns():x}-{uuid.uuid4().hex[:8]}"


def generation_time(generation: str) -> float:
    """The Unix time a generation names (``new_generation`` puts the nanoseconds first, in
    hex). Anything else counts as old (0), so that it is not spared as recent."""
    head = generation.partition("-")[0]
    try:
        return int(head, 16) / 1e9
    except ValueError:
        return 0.0


def encode_manifest(info: BlobInfo, generation: str) -> bytes:
    return json.dumps(
        {
            "generation": generation,
            "size": info.size,
            "sha256": info.sha256,
            "chunk_sizes": list(info.chunk_sizes),
            "chunk_sha256": list(info.chunk_sha256),
        },
        separators=(",", ":"),
    ).encode()


def decode_manifest(key: str, raw: bytes | str) -> tuple[BlobInfo, str]:
    """(info, generation) from a stored manifest; ``DataLoss`` when it is malformed."""
    doc = decode_doc(f"manifest of blob {key!r}", raw)
    try:
        info = BlobInfo(
            size=int(doc["size"]),
            sha256=str(doc["sha256"]),
            chunk_sizes=tuple(int(n) for n in doc["chunk_sizes"]),
            chunk_sha256=tuple(str(h) for h in doc["chunk_sha256"]),
        )
        generation = str(doc["generation"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataLoss(f"manifest of blob {key!r} is malformed: {exc!r}") from None
    if len(info.chunk_sizes) != len(info.chunk_sha256) or sum(info.chunk_sizes) != info.size:
        raise DataLoss(f"manifest of blob {key!r} is inconsistent")
    return info, generation


def manifest_generation(key: str, raw: bytes | str) -> str:
    """The generation a stored manifest names; "" when it is damaged."""
    try:
        return decode_manifest(key, raw)[1]
    except DataLoss:
        return ""


def written_at(key: str, raw: bytes | str) -> float:
    """When a blob was written, from its stored manifest (a damaged one counts as old)."""
    return generation_time(manifest_generation(key, raw))


def join_verified(key: str, info: BlobInfo, chunks: list[bytes]) -> bytes:
    """The blob from its chunks, after checking every size and sha256 against the manifest."""
    count = len(info.chunk_sizes)
    for n, chunk in enumerate(chunks):
        if len(chunk) != info.chunk_sizes[n]:
            raise DataLoss(
                f"blob {key!r}: chunk {n} of {count} has {len(chunk)} bytes, "
                f"the manifest says {info.chunk_sizes[n]}"
            )
        if hashlib.sha256(chunk).hexdigest() != info.chunk_sha256[n]:
            raise DataLoss(f"blob {key!r}: chunk {n} of {count} does not match its sha256")
    data = b"".join(chunks)
    # Chunks that each match can still be the wrong ones (a manifest from another write).
    if hashlib.sha256(data).hexdigest() != info.sha256:
        raise DataLoss(f"blob {key!r}: the whole does not match its sha256")
    return data


def read_consistent(
    key: str,
    read_manifest: Callable[[], bytes | str | None],
    read_chunks: Callable[[BlobInfo, str], list[bytes | None]],
) -> bytes | None:
    """Read a blob through a backend's two primitives, verifying every checksum.

    A chunk can be missing because a writer replaced the blob after we read its manifest
    and has already removed the old chunks; then the manifest has changed and we read the
    new blob. A missing chunk under an unchanged manifest is lost data.
    """
    raw = read_manifest()
    for _ in range(MAX_READ_ATTEMPTS):
        if raw is None:
            return None
        info, generation = decode_manifest(key, raw)
        chunks = read_chunks(info, generation)
        if None not in chunks:
            return join_verified(key, info, cast("list[bytes]", chunks))
        again = read_manifest()
        if again == raw:
            n = chunks.index(None)
            raise DataLoss(f"blob {key!r}: chunk {n} of {len(chunks)} is missing")
        raw = again
    raise Unavailable(
        f"blob {key!r} was replaced {MAX_READ_ATTEMPTS} times while being read; try again"
    )
