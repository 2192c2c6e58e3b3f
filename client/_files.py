"""Files the clients send and receive: a corpus (or ARPA file) upload plan, and the sink that
writes a streamed download (an exported ARPA file) without leaving half a file behind."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rnnlm.v1 import rnnlm_pb2 as pb

MiB = 1 << 20


@dataclass(frozen=True)
class UploadPlan:
    """A corpus to upload: the header (size and sha256 known up front) and the request
    stream, read from the file (or bytes) as it is sent."""

    header: pb.CorpusHeader
    source: bytes | Path
    chunk_bytes: int
    on_sent: Callable[[int], object] | None = None  # told each chunk's size once it is sent

    def requests(self) -> Iterator[pb.UploadCorpusRequest]:
        yield pb.UploadCorpusRequest(header=self.header)
        for chunk in _chunks(self.source, self.chunk_bytes):
            yield pb.UploadCorpusRequest(chunk=chunk)
            if self.on_sent is not None:  # gRPC asks for the next one once this one left
                self.on_sent(len(chunk))


def _chunks(source: bytes | Path, chunk_bytes: int) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for start in range(0, len(source), chunk_bytes):
            yield source[start : start + chunk_bytes]
        return
    with source.open("rb") as f:
        while chunk := f.read(chunk_bytes):
            yield chunk


def plan_upload(
    source: str | Path | bytes,
    filename: str | None,
    chunk_bytes: int = MiB,
    on_sent: Callable[[int], object] | None = None,
) -> UploadPlan:
    """Hash the corpus (a file is read in chunks, never whole) and build the header.

    ``source`` is a file path (str or Path) or the corpus bytes; to upload a Python string,
    pass ``text.encode()``.
    """
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be positive; got {chunk_bytes}")
    content: bytes | Path
    if isinstance(source, (bytes, bytearray, memoryview)):
        content, default_name = bytes(source), "corpus.txt"
    elif isinstance(source, (str, Path)):
        content = Path(source)
        default_name = content.name
    else:
        raise TypeError(f"source must be a path or bytes; got {type(source).__name__}")
    digest, size = hashlib.sha256(), 0
    for chunk in _chunks(content, chunk_bytes):
        digest.update(chunk)
        size += len(chunk)
    header = pb.CorpusHeader(
        filename=filename or default_name, size_bytes=size, sha256=digest.hexdigest()
    )
    return UploadPlan(header, content, chunk_bytes, on_sent)


class DownloadSink:
    """Where streamed bytes go: a binary file object (written as they come), or a path,
    written under a temporary name and renamed when the stream completed, so that a failed
    download leaves no partial file where the real one is expected."""

    def __init__(self, target: str | Path | IO[bytes]) -> None:
        self.size = 0
        self._path = Path(target) if isinstance(target, (str, Path)) else None
        self._partial = self._path.with_name(self._path.name + ".part") if self._path else None
        self._file: Any = target if self._path is None else None

    def __enter__(self) -> DownloadSink:
        if self._partial is not None:
            self._file = self._partial.open("wb")
        return self

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._partial is None:
            self._file.flush()
            return
        self._file.close()
        if exc_type is None:
            assert self._path is not None  # set with _partial
            os.replace(self._partial, self._path)
        else:
            self._partial.unlink(missing_ok=True)
