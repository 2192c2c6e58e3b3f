"""Listings that survive a damaged record: ListModels, ListTrainingJobs and ListCorpora
return every record they can read and name the ones they cannot, instead of failing whole
with DATA_LOSS because of one. The server's log says what was wrong with each."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .store import CORPUS, JOB, MODEL, Store

log = logging.getLogger("rnnlm.server")

# The fields each kind's listing and its protobuf conversion (convert.py) read: a record
# without one of them is as unreadable as one that is not JSON.
REQUIRED_FIELDS = {
    MODEL: ("model_id", "versions", "current_version", "created_at", "updated_at"),
    JOB: (
        *("job_id", "model_id", "state", "error", "request_id", "corpus_id", "model_config"),
        *("train_config", "created_at", "updated_at", "checkpoint_step", "model_version"),
        "server_id",
    ),
    CORPUS: ("corpus_id", "filename", "size_bytes", "sha256", "created_at"),
}


class Listing(list):
    """Records (a plain list to whoever iterates), and ``unreadable``: the id of each record
    that could not be read, with why (for the log; clients get the ids)."""

    def __init__(
        self, records: Iterable[dict[str, Any]] = (), unreadable: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(records)
        self.unreadable = dict(unreadable or {})


def readable_records(store: Store, kind: str) -> Listing:
    """Every record of ``kind`` that decodes and has the fields its listing needs."""
    scan = store.scan(kind)
    required = REQUIRED_FIELDS[kind]
    records, unreadable = [], dict(scan.unreadable)
    for doc_id, doc in scan.docs.items():
        missing = [name for name in required if name not in doc]
        if missing:
            unreadable[doc_id] = f"stored {kind} {doc_id} lacks {', '.join(missing)}"
        else:
            records.append(doc)
    for doc_id, why in sorted(unreadable.items()):
        log.warning("%s %s left out of a listing, it cannot be read: %s", kind, doc_id, why)
    return Listing(records, unreadable)
