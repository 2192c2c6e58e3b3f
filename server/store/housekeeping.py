"""What both backends' housekeeping (``redis_housekeeping.py``, ``local_housekeeping.py``)
shares: when a blob was written, read from its manifest's generation."""

from __future__ import annotations

from rnnlm.server.errors import DataLoss
from rnnlm.server.store.codec import decode_manifest


def generation_time(generation: str) -> float:
    """The Unix time a generation names: ``codec.new_generation`` puts the nanoseconds first,
    in hex. Anything else counts as old (0), so that it is not spared as recent."""
    head = generation.partition("-")[0]
    try:
        return int(head, 16) / 1e9
    except ValueError:
        return 0.0


def manifest_generation(key: str, raw: bytes) -> str:
    """The generation a stored manifest names; "" when it is damaged."""
    try:
        return decode_manifest(key, raw)[1]
    except DataLoss:
        return ""


def written_at(key: str, raw: bytes) -> float:
    """When a blob was written, from its stored manifest (a damaged one counts as old)."""
    return generation_time(manifest_generation(key, raw))
