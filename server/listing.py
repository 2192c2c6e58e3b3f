"""Records as the server reads them. A record that is not JSON, or is JSON of the wrong shape
(a field missing or of the wrong type, a version entry without its fields), is unreadable:
a get answers DATA_LOSS naming it, and ListModels, ListTrainingJobs and ListCorpora return
every record they can read and name the ones they cannot, instead of failing whole (or
ending in INTERNAL, on a sort or a conversion) because of one. The log says what was wrong."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from rnnlm.server.errors import DataLoss, quote
from rnnlm.server.job_states import ACTIVE, FINAL
from rnnlm.server.store import CORPUS, JOB, MODEL, Store

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
        **{"corpus_id": STR, "model_config": DICT, "train_config": DICT, "created_at": NUM},
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
JOB_STATES = (*ACTIVE, *FINAL)


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


def read_record(store: Store, kind: str, doc_id: str) -> dict[str, Any] | None:
    """The record (None when there is none); ``DataLoss`` naming it when it is unreadable."""
    try:
        doc = store.get(kind, doc_id)
    except DataLoss as err:
        raise unreadable(kind, doc_id, detail=str(err)) from None
    if doc is not None and (problem := shape_problem(kind, doc)):
        raise unreadable(kind, doc_id, detail=problem)
    return doc


def unreadable(kind: str, doc_id: str, detail: str) -> DataLoss:
    """The error of a get that met a damaged record (what is wrong goes to the log)."""
    return DataLoss(
        f"the stored {kind} record {quote(doc_id)} is damaged and cannot be read; "
        "it can still be deleted",
        detail=detail,
    )


class Listing(list):
    """Records (a plain list to whoever iterates), and ``unreadable``: the id of each record
    that could not be read, with why (for the log; clients get the ids)."""

    def __init__(
        self, records: Iterable[dict[str, Any]] = (), unreadable: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(records)
        self.unreadable = dict(unreadable or {})


def readable_records(store: Store, kind: str) -> Listing:
    """Every record of ``kind`` that decodes and has the shape the server reads."""
    scan = store.scan(kind)
    records, unreadable = [], dict(scan.unreadable)
    for doc_id, doc in scan.docs.items():
        if problem := shape_problem(kind, doc):
            unreadable[doc_id] = f"stored {kind} {doc_id}: {problem}"
        else:
            records.append(doc)
    for doc_id, why in sorted(unreadable.items()):
        log.warning("%s %s left out of a listing, it cannot be read: %s", kind, doc_id, why)
    return Listing(records, unreadable)
