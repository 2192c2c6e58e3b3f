"""What both store backends share: the stored formats. The JSON encoding of documents and
blob manifests, the cutting of blobs into chunks, and the checks that turn a bad chunk into
a ``DataLoss`` that names the blob.

Keeping these in one place means both backends store the same bytes and raise the same
messages, which the shared test suite relies on.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from rnnlm.server.errors import DataLoss

Document = dict[str, Any]


@dataclass(frozen=True)
class BlobInfo:
    """A blob's manifest, as stored."""

    size: int
    sha256: str  # hex digest of the whole blob
    chunk_sizes: tuple[int, ...]
    chunk_sha256: tuple[str, ...]


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


def decode_event(log_id: str, event_id: str, raw: bytes | str) -> Document:
    return decode_doc(f"event {event_id} of log {log_id!r}", raw)


def split_chunks(data: bytes, chunk_bytes: int) -> tuple[list[bytes], BlobInfo]:
    """Cut ``data`` into chunks of at most ``chunk_bytes`` and describe them."""
    chunks = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
    info = BlobInfo(
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        chunk_sizes=tuple(len(c) for c in chunks),
        chunk_sha256=tuple(hashlib.sha256(c).hexdigest() for c in chunks),
    )
    return chunks, info


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
