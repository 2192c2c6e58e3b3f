"""Records as the server reads and changes them in the store (typed: ``records.py``). A
record that is not JSON, or is JSON of the wrong shape (a field missing or of the wrong type,
a version entry without its fields), is unreadable: a get answers DATA_LOSS naming it, and
ListModels, ListTrainingJobs and ListCorpora return every record they can read and name the
ones they cannot, instead of failing whole (or ending in INTERNAL, on a sort or a
conversion) because of one. The log says what was wrong. Shapes are checked on today's
field names, after ``records.upgrade`` renamed those of older records."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from rnnlm.server.errors import DataLoss, quote
from rnnlm.server.job_states import JobState
from rnnlm.server.records import StoredRecord, upgrade
from rnnlm.server.store import CORPUS, JOB, MODEL, Fence, Store

R = TypeVar("R", bound=StoredRecord)

log = logging.getLogger("rnnlm.server")

# Field types; bool is refused where a number is meant (JSON true is no time).
STR, INT, NUM, DICT, LIST = (str,), (int,), (int, float), (dict,), (list,)
NUM_OR_NONE = (int, float, type(None))
# The fields of each kind that the server reads (its listings, its protobuf conversion in
# convert.py, the reaper and the deletes), with their types; ``OPTIONAL`` ones may be absent
# (records written before they existed).
SHAPES: dict[str, dict[str, tuple[type, ...]]] = {
    MODEL: {
        **{"model_id": STR, "versions": LIST, "current_version": INT},
        **{"created_at": NUM, "updated_at": NUM},
    },
    JOB: {
        **{"job_id": STR, "model_id": STR, "state": STR, "error": STR, "request_id": STR},
        **{"corpus_id": STR, "model": DICT, "training": DICT, "created_at": NUM},
        **{"updated_at": NUM, "checkpoint_step": INT, "model_version": INT, "server_id": STR},
    },
    CORPUS: {
        **{"corpus_id": STR, "filename": STR, "size_bytes": INT, "sha256": STR},
        "created_at": NUM,
    },
}
OPTIONAL: dict[str, dict[str, tuple[type, ...]]] = {
    MODEL: {"active_job_id": STR, "next_version": INT},
    JOB: {
        **{"heartbeat_at": NUM, "lease_generation": INT, "warnings": LIST, "arpa_id": STR},
        **{"progress": (dict, type(None)), "corpus": DICT, "cancel_requested": (bool,)},
        "checkpoint_removed_at": NUM,
    },
    CORPUS: {},
}
VERSION_SHAPE = {
    **{"version": INT, "created_at": NUM, "job_id": STR, "checkpoint_bytes": INT},
    **{"sha256": STR, "training_status": STR, "epochs_trained": INT, "train_loss": NUM},
    **{"model_config": DICT, "train_config": DICT, "vocabulary_size": INT},
}
VERSION_OPTIONAL = {
    **{"valid_perplexity": NUM_OR_NONE, "neural_weight": NUM, "ngram_order": INT},
    **{"ngram_source": STR, "ngram_valid_perplexity": NUM_OR_NONE},
    "interpolated_valid_perplexity": NUM_OR_NONE,
}
PROGRESS_FIELDS = ("kind", "epoch", "epochs", "step", "total_steps", "loss", "perplexity")
JOB_STATES = frozenset(state.value for state in JobState)


def _field_problems(
    doc: Mapping[str, Any],
    shape: Mapping[str, tuple[type, ...]],
    optional: Mapping[str, tuple[type, ...]],
    where: str,
) -> list[str]:
    problems = []
    for name, types in (*shape.items(), *optional.items()):
        if name not in doc:
            if name in shape:
                problems.append(f"{where} lacks {name}")
            continue
        value = doc[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            problems.append(f"{where} has {name} of type {type(value).__name__}")
    return problems


def shape_problem(kind: str, doc: Mapping[str, Any]) -> str | None:
    """What makes a decoded record unreadable (None: nothing)."""
    doc = upgrade(kind, doc)
    problems = _field_problems(doc, SHAPES[kind], OPTIONAL[kind], kind)
    if kind == MODEL and isinstance(doc.get("versions"), list):
        for n, entry in enumerate(doc["versions"]):
            where = f"version entry {n}"
            if not isinstance(entry, dict):
                problems.append(f"{where} is not an object")
            else:
                problems += _field_problems(entry, VERSION_SHAPE, VERSION_OPTIONAL, where)
    if kind == JOB:
        if isinstance(doc.get("state"), str) and doc["state"] not in JOB_STATES:
            problems.append(f"job has unknown state {quote(doc['state'])}")
        progress = doc.get("progress")
        if isinstance(progress, dict) and (lacks := set(PROGRESS_FIELDS) - progress.keys()):
            problems.append(f"job progress lacks {', '.join(sorted(lacks))}")
    return "; ".join(problems[:3]) or None


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
