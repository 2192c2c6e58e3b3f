"""Records as the server reads and changes them in the store (typed: ``records.py``). A
record that is not JSON, or is JSON of the wrong shape (a field missing or of the wrong type,
a version entry without its fields), is unreadable: a get answers DATA_LOSS naming it, and
ListModels, ListTrainingJobs and ListCorpora return every record they can read and name the
ones they cannot, instead of failing whole (or ending in INTERNAL, on a sort or a
conversion) because of one. The log says what was wrong."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from rnnlm.server.errors import DataLoss, quote
from rnnlm.server.records import Corpus, Model, Record, TrainingJob
from rnnlm.server.store import Fence, Store

R = TypeVar("R", bound=Record)

log = logging.getLogger("rnnlm.server")

RECORDS: dict[str, type[Record]] = {cls.KIND: cls for cls in (TrainingJob, Model, Corpus)}


def shape_problem(kind: str, doc: Mapping[str, Any]) -> str | None:
    """What makes a decoded record unreadable (None: nothing): the first three problems that
    ``Record.problems`` finds, from the record's fields."""
    return "; ".join(RECORDS[kind].problems(doc, kind)[:3]) or None


def read_record(store: Store, cls: type[R], doc_id: str) -> R | None:
    """The record (None when there is none); ``DataLoss`` naming it when it is unreadable."""
    try:
        doc = store.get(cls.KIND, doc_id)
    except DataLoss as err:
        raise unreadable(cls.KIND, doc_id, detail=str(err)) from None
    return None if doc is None else parse(cls, doc_id, doc)


def parse(cls: type[R], doc_id: str, doc: Mapping[str, Any]) -> R:
    """The record a stored document holds; ``DataLoss`` naming it when it is unreadable."""
    if problem := shape_problem(cls.KIND, doc):
        raise unreadable(cls.KIND, doc_id, detail=problem)
    return cls.from_store(doc)


def update_record(
    store: Store,
    cls: type[R],
    doc_id: str,
    change: Callable[[R | None], R | None],
    fence: Fence | None = None,
) -> R | None:
    """``Store.update`` with records: ``change`` gets the record (None: absent) and returns
    what to store (None: delete it, or leave it absent). An unreadable record is not
    changed: ``DataLoss``. ``change`` may run more than once, and may raise to abort."""

    def apply(doc: dict[str, Any] | None) -> dict[str, Any] | None:
        record = None if doc is None else parse(cls, doc_id, doc)
        result = change(record)
        return None if result is None else result.to_store()

    stored = store.update(cls.KIND, doc_id, apply, fence=fence)
    return None if stored is None else cls.from_store(stored)


def unreadable(kind: str, doc_id: str, detail: str) -> DataLoss:
    """The error of a get that met a damaged record (what is wrong goes to the log)."""
    return DataLoss(
        f"the stored {kind} record {quote(doc_id)} is damaged and cannot be read; "
        "it can still be deleted",
        detail=detail,
    )


class Listing(list[R], Generic[R]):
    """Records (a plain list to whoever iterates), and ``unreadable``: the id of each record
    that could not be read, with why (for the log; clients get the ids)."""

    def __init__(self, records: Iterable[R] = (), unreadable: Mapping[str, str] | None = None):
        super().__init__(records)
        self.unreadable = dict(unreadable or {})


def readable_records(store: Store, cls: type[R]) -> Listing[R]:
    """Every record of ``cls``'s kind that decodes and has the shape the server reads."""
    kind = cls.KIND
    scan = store.scan(kind)
    records, unreadable = [], dict(scan.unreadable)
    for doc_id, doc in scan.docs.items():
        if problem := shape_problem(kind, doc):
            unreadable[doc_id] = f"stored {kind} {doc_id}: {problem}"
        else:
            records.append(cls.from_store(doc))
    for doc_id, why in sorted(unreadable.items()):
        log.warning("%s %s left out of a listing, it cannot be read: %s", kind, doc_id, why)
    return Listing(records, unreadable)
