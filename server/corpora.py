"""Training corpora: chunked uploads into the store, server-side files under the directory the
operator allowed, and reading either one as a ``Corpus``.

Uploads are content-addressed: the id derives from the sha256, so the same bytes uploaded
twice (or by two clients) are stored once.
"""

from __future__ import annotations

import hashlib
import logging
import time
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rnnlm.model import Corpus
from rnnlm.model.checks import one_of
from rnnlm.model.corpus import PARAGRAPH_MODES, MissingColumn
from rnnlm.model.ngram import NgramModel
from rnnlm.server.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    quote,
)
from rnnlm.server.ids import check_corpus_id
from rnnlm.server.job_states import ACTIVE
from rnnlm.server.listing import Listing, parse, read_record, readable_records
from rnnlm.server.records import Corpus as CorpusRecord
from rnnlm.server.records import TrainingJob
from rnnlm.server.store import CORPUS, Store

log = logging.getLogger("rnnlm.server")

FORMATS = ("auto", "text", "csv")
# A corpus' file name is shown back (Corpus.filename, listings): bounded like a file name.
MAX_FILENAME_CHARS = 255


def corpus_key(corpus_id: str) -> str:
    return f"corpora/{corpus_id}"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


class CorpusRegistry:
    def __init__(self, store: Store, max_bytes: int, corpus_dir: str | None = None) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.corpus_dir = Path(corpus_dir).resolve() if corpus_dir else None

    def _too_big(self, size: int) -> ResourceExhausted:
        return ResourceExhausted(
            f"corpus is {_mib(size)} or more; this server accepts corpora up to "
            f"{_mib(self.max_bytes)} (--max-corpus-bytes)"
        )

    def upload(
        self, filename: str, declared_size: int, declared_sha256: str, chunks: Iterable[bytes]
    ) -> CorpusRecord:
        """Receive the chunks, check them against what the header declared, store once."""
        if len(filename) > MAX_FILENAME_CHARS:  # before any bytes are received
            raise InvalidArgument(
                f"header.filename {quote(filename)} is too long: at most "
                f"{MAX_FILENAME_CHARS} characters"
            )
        if any(unicodedata.category(c) == "Cc" for c in filename):  # shown back raw by the CLI
            raise InvalidArgument(
                f"header.filename {quote(filename)} has control characters (such as a newline "
                "or an escape); a file name may have any other printable characters"
            )
        if declared_size < 0:
            raise InvalidArgument(f"header.size_bytes must be >= 0, got {declared_size}")
        if declared_size > self.max_bytes:
            raise self._too_big(declared_size)
        parts, size, digest = [], 0, hashlib.sha256()
        for chunk in chunks:
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_big(size)
            digest.update(chunk)
            parts.append(chunk)
        if size == 0:
            raise InvalidArgument(
                "the uploaded corpus is empty (0 bytes); upload a file with text in it"
            )
        sha256 = digest.hexdigest()
        if declared_size and declared_size != size:
            raise InvalidArgument(
                f"header.size_bytes said {declared_size} bytes but {size} arrived; "
                "the upload was incomplete, send it again"
            )
        if declared_sha256 and declared_sha256.lower() != sha256:
            raise InvalidArgument(
                f"header.sha256 {quote(declared_sha256, 64)} does not match the uploaded bytes "
                f"({sha256})"
            )
        corpus_id = "c-" + sha256[:32]
        self._ensure_blob(corpus_id, sha256, parts)
        record = CorpusRecord(corpus_id, filename or "corpus", size, sha256, time.time())
        stored = self.store.create(CORPUS, corpus_id, record.to_store())
        # Again after the record: a DeleteCorpus (or the sweep) of the same bytes may have
        # removed the blob between our first look and the record; then it is written again.
        self._ensure_blob(corpus_id, sha256, parts)
        return parse(CorpusRecord, corpus_id, stored)  # an earlier upload's, maybe damaged

    def _ensure_blob(self, corpus_id: str, sha256: str, parts: list[bytes]) -> None:
        info = self.store.blob_info(corpus_key(corpus_id))
        if info is None or info.sha256 != sha256:
            self.store.put_blob(corpus_key(corpus_id), b"".join(parts))

    def list(self, limit: int = 100) -> Listing[CorpusRecord]:
        """Newest first; ``.unreadable`` names the records that cannot be read."""
        if not 0 <= limit <= 1000:
            raise InvalidArgument(f"limit must be in [0, 1000] (0: 100), got {limit}")
        listing = readable_records(self.store, CorpusRecord)
        records = sorted(listing, key=lambda r: r.created_at, reverse=True)
        return Listing(records[: limit or 100], listing.unreadable)

    def delete(self, corpus_id: str) -> dict[str, Any]:
        """Delete an uploaded corpus (or ARPA file); returns its stored record. Refused
        while a queued or running job reads it. An ended job that trained on it can no
        longer be resumed until the same bytes are uploaded again; the models trained on it
        are not affected. A damaged record is removed as it is, with its bytes (the result
        then has ``damaged`` and a size of 0: a damaged record cannot say its size)."""
        record: dict[str, Any]
        try:
            record = self.get(corpus_id).to_store()
        except DataLoss as err:
            record = {"corpus_id": corpus_id, "size_bytes": 0, "damaged": err.detail or str(err)}
        for job in readable_records(self.store, TrainingJob):
            uses = corpus_id in (job.corpus_id, job.arpa_id)
            if uses and job.state in ACTIVE:
                raise FailedPrecondition(
                    f"corpus {corpus_id!r} is used by training job {job.job_id!r}, which is "
                    f"{job.state}; cancel the job first or wait for it to end"
                )
        # The blob first: a concurrent upload of the same bytes that finds the record still
        # there writes the blob again after creating it (see upload).
        self.store.delete_blob(corpus_key(corpus_id))
        self.store.delete(CORPUS, corpus_id)
        if "damaged" in record:
            log.warning(
                "corpus %s: its damaged record was deleted (%s)", corpus_id, record["damaged"]
            )
        else:
            log.info("corpus %s deleted (%d bytes)", corpus_id, record["size_bytes"])
        return record

    def get(self, corpus_id: str) -> CorpusRecord:
        record = read_record(self.store, CorpusRecord, check_corpus_id(corpus_id))
        if record is None:
            raise NotFound(f"corpus {corpus_id!r} does not exist (never uploaded, or deleted)")
        return record

    def load_arpa(self, arpa_id: str) -> tuple[NgramModel, str]:
        """An ARPA file uploaded with UploadCorpus, parsed: (model, "arpa:<file name>")."""
        record = self.get(check_corpus_id(arpa_id, "arpa_id"))  # the field the caller set
        data = self.store.get_blob(corpus_key(record.corpus_id))
        if data is None:
            raise NotFound(f"ARPA file {arpa_id!r} is missing from the store; upload it again")
        name = record.filename[:64]
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise InvalidArgument(
                f"ARPA file {name!r} is not UTF-8 text (byte {err.start}); a KenLM binary "
                "cannot be attached, give the ARPA file it was built from"
            ) from None
        try:
            model = NgramModel.from_arpa(text.split("\n"))  # KenLM's lines: only at \n
        except ValueError as err:
            raise InvalidArgument(f"ARPA file {name!r} does not parse: {err}") from None
        return model, f"arpa:{name}"

    def server_file(self, relative: str) -> Path:
        """A file under --corpus-dir, refusing paths that lead outside it."""
        if self.corpus_dir is None:
            raise PermissionDenied(
                "server-side corpus paths are disabled on this server; upload the corpus "
                "instead, or start the server with --corpus-dir"
            )
        try:
            path = (self.corpus_dir / relative).resolve()
            if Path(relative).is_absolute() or not path.is_relative_to(self.corpus_dir):
                raise PermissionDenied(
                    f"server_path {quote(relative)} leads outside the corpus directory; give a "
                    "path relative to it"
                )
            if not path.is_file():
                raise NotFound(
                    f"server_path {quote(relative)} is not a file in the corpus directory"
                )
            size = path.stat().st_size
        except OSError as err:  # a name too long, a directory we may not read, ...
            raise InvalidArgument(
                f"server_path {quote(relative)} cannot be read: {err.strerror}"
            ) from None
        if size > self.max_bytes:
            raise self._too_big(size)
        return path

    def check_source(self, source: dict[str, Any], required: bool = True) -> str:
        """The source's format, after checking its fields and that what it names exists
        (nothing is read): what Train refuses before it parses a corpus. ``required``
        False: a source that names no corpus passes (checking options before an upload)."""
        fmt = one_of(FORMATS).check("corpus.format", source.get("format", "auto"))
        paragraphs = source.get("paragraphs", "blank-line")
        one_of(PARAGRAPH_MODES).check("corpus.paragraphs", paragraphs)
        named = source.get("corpus_id") or source.get("server_path")
        if not named and not required:
            return fmt
        if not named:
            raise InvalidArgument(
                "corpus is required: set corpus.corpus_id (an uploaded corpus) or "
                "corpus.server_path (a file under the server's --corpus-dir)"
            )
        if source.get("corpus_id"):
            self.get(source["corpus_id"])
        else:
            self.server_file(source["server_path"])
        return fmt

    def load(self, source: dict[str, Any]) -> Corpus:
        """Read and parse the corpus a source names (``ValueError`` when it cannot be parsed)."""
        fmt = self.check_source(source)
        paragraphs = source.get("paragraphs", "blank-line")
        if source.get("corpus_id"):
            record = self.get(source["corpus_id"])
            data = self.store.get_blob(corpus_key(record.corpus_id))
            if data is None:
                raise NotFound(f"corpus {record.corpus_id!r} is missing from the store")
            filename = record.filename
            where = f"corpus {quote(filename)} ({record.corpus_id})"
        else:
            path = self.server_file(source["server_path"])
            where = f"file {quote(source['server_path'])}"
            try:
                data, filename = path.read_bytes(), path.name
            except OSError as err:
                raise InvalidArgument(f"{where} cannot be read: {err.strerror}") from None
        if fmt == "auto":
            fmt = "csv" if filename.lower().endswith(".csv") else "text"
        column = source.get("csv_column") or "body"
        try:
            corpus = Corpus.from_bytes(
                data, format=fmt, column=column, paragraphs=paragraphs, source=where
            )
        except MissingColumn as err:
            # Not the header's names: they are the file's first line, which the caller may
            # have no right to read (a server_path file, a text file read as CSV).
            raise InvalidArgument(
                f"corpus CSV has no column {quote(column)}: the header of {where} has "
                f"{err.columns} column(s), none of that name; set csv_column to one of them"
            ) from None
        if len(corpus) == 0:
            raise InvalidArgument(f"{where} has no text to train on")
        return corpus
