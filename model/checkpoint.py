"""Checkpoint format: one safetensors blob whose header metadata carries the JSON.

    tensors   "model.<name>"      weights
              "optimizer.<name>"  optimizer (and RNG) state, only in resumable checkpoints
              "best.<name>"       best-so-far weights kept for early stopping, ditto
    metadata  "rnnlm"             JSON: format version, model and train config,
                                  vocabulary, tokenizer parameters, training state

One blob is both the file on disk and the bytes a store keeps. Loading parses the
safetensors header as JSON and the tensors as raw little-endian arrays: no pickle, no
code runs, so a checkpoint from an untrusted store is only ever data.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

FORMAT_NAME = "rnnlm.checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "rnnlm"
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


class CheckpointError(ValueError):
    """The bytes are not a readable rnnlm checkpoint (truncated, foreign or corrupt)."""


def dumps(groups: dict[str, dict[str, np.ndarray]], meta: dict[str, Any]) -> bytes:
    """Serialise tensor groups ({"model": {...}, "optimizer": {...}}) and JSON metadata."""
    tensors = {
        f"{group}.{name}": np.ascontiguousarray(arr)
        for group, arrs in groups.items()
        for name, arr in arrs.items()
    }
    document = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **meta}
    return st_save(tensors, metadata={METADATA_KEY: json.dumps(document, sort_keys=True)})


def _read_metadata(data: bytes) -> dict[str, Any]:
    if len(data) < 8:
        raise CheckpointError(f"checkpoint is {len(data)} bytes long: too short to be safetensors")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > MAX_HEADER_BYTES or 8 + header_len > len(data):
        raise CheckpointError(
            "checkpoint header length is out of range (truncated or not safetensors)"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
        document = json.loads(header["__metadata__"][METADATA_KEY])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint has no rnnlm metadata: {err!r}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise CheckpointError(f"not an rnnlm checkpoint (format {found!r})")
    if document.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint format version {document.get('version')!r} is not "
            f"supported; this rnnlm reads version {FORMAT_VERSION}"
        )
    return document


def loads(data: bytes) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Inverse of ``dumps``: (tensor groups, metadata)."""
    document = _read_metadata(data)
    try:
        tensors = st_load(bytes(data))
    except Exception as err:  # safetensors raises its own error type for corrupt data
        raise CheckpointError(f"checkpoint tensors are unreadable: {err}") from None
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in tensors.items():
        group, _, name = key.partition(".")
        groups.setdefault(group, {})[name] = arr
    return groups, document


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
