"""Deleting a training job with everything it left in the store (DeleteTrainingJob, and the
jobs of a model that DeleteModel removes), and removing the resumable checkpoint of a job
that ended long ago. The sweep (``sweeper.py``) applies the same rules on a schedule.

What a job leaves: its record, the request-id record that points at it, its event log and
its resumable checkpoint (``jobs/{id}/checkpoint``). The record goes first, in one atomic
update that refuses a running job, so that nothing can start the job again while the rest
goes; whatever a failure leaves behind after that is an orphan, and the sweep removes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from rnnlm.server.errors import DataLoss, FailedPrecondition, NotFound
from rnnlm.server.job_states import ACTIVE, RESUMABLE
from rnnlm.server.job_thread import job_checkpoint_key
from rnnlm.server.listing import readable_records, shape_problem, update_record
from rnnlm.server.records import TrainingJob
from rnnlm.server.store import JOB, TRAIN_REQUEST, Store

log = logging.getLogger("rnnlm.server")


class _Keep(Exception):
    """Aborts a store update without a change."""


def delete_job(store: Store, job_id: str) -> dict[str, Any]:
    """Delete a job that is not running, with its request id, events and checkpoint; returns
    its record. NotFound, or FailedPrecondition for a queued or running job. A damaged record
    (not JSON, or of the wrong shape) is removed as it is, with its events and checkpoint:
    it cannot say whether the job runs; the result is then ``{"job_id", "damaged"}``."""
    deleted: dict[str, Any] = {}

    def remove(current: dict | None) -> None:
        # Checked inside the update: a resume starting meanwhile (on any server) wins or
        # finds the job gone, never half of each.
        if current is None:
            raise NotFound(f"training job {job_id!r} does not exist")
        if problem := shape_problem(JOB, current):
            deleted.clear()
            deleted.update(job_id=job_id, damaged=problem)
            return None
        if current.get("state") in ACTIVE:
            raise FailedPrecondition(
                f"training job {job_id!r} is {current['state']}; cancel it first, then delete it"
            )
        deleted.update(current)
        return None

    try:
        store.update(JOB, job_id, remove)
    except DataLoss as err:  # not JSON: removed as it is
        store.delete(JOB, job_id)
        deleted.update(job_id=job_id, damaged=str(err))
    # What the record owned. A damaged record's request id, if any, is forgotten by Train
    # when it meets it (or expires).
    if request_id := deleted.get("request_id"):
        forget_request_id(store, request_id, job_id)
    store.delete_events(job_id)
    store.delete_blob(job_checkpoint_key(job_id))
    if "damaged" in deleted:
        log.warning("job %s: its damaged record was deleted (%s)", job_id, deleted["damaged"])
    else:
        log.info("job %s deleted (model %s)", job_id, deleted.get("model_id"))
    return deleted


def forget_request_id(store: Store, request_id: str, job_id: str) -> None:
    """Remove the request-id record if it still names ``job_id`` (a later request may have
    reused the id after the first record expired)."""

    def remove(current: dict | None) -> None:
        if current is None or current.get("job_id") != job_id:
            raise _Keep  # rewriting it would drop its expiry on Redis
        return None

    with suppress(_Keep):
        store.update(TRAIN_REQUEST, request_id, remove)


def delete_jobs_of_model(
    store: Store, model_id: str, reap: Callable[[TrainingJob], TrainingJob]
) -> list[str]:
    """Delete the jobs of a model that was just deleted; returns their ids. A job that is
    still running is left alone: a new model of the same name may be training already, or
    an old job is writing its final state (the sweep takes it once it has ended)."""
    deleted = []
    for job in readable_records(store, TrainingJob):
        if job.model_id != model_id or reap(job).state in ACTIVE:
            continue
        try:
            delete_job(store, job.job_id)
        except (NotFound, FailedPrecondition):
            continue  # deleted or resumed meanwhile
        deleted.append(job.job_id)
    return deleted


def remove_resumable_checkpoint(store: Store, job_id: str, ended_before: float) -> bool:
    """Remove the checkpoint of a cancelled or interrupted job that ended before
    ``ended_before``. The job record is marked first, in one update that checks it is
    still resumable and still that old: a concurrent resume either happens first (and the
    checkpoint stays) or finds the mark and refuses. Returns whether it was removed."""

    def mark(current: TrainingJob | None) -> TrainingJob:
        if current is None or current.state not in RESUMABLE or current.updated_at >= ended_before:
            raise _Keep
        current.checkpoint_removed_at = time.time()  # updated_at stays: the end's time
        return current

    try:
        update_record(store, TrainingJob, job_id, mark)
    except (_Keep, DataLoss):  # DataLoss: damaged meanwhile, its checkpoint stays
        return False
    return store.delete_blob(job_checkpoint_key(job_id))


def check_resumable_checkpoint(job: TrainingJob, retention_s: float) -> None:
    """FailedPrecondition for a job whose checkpoint the retention rules removed."""
    if job.checkpoint_removed_at:
        raise FailedPrecondition(
            f"training job {job.job_id!r} can no longer be resumed: it ended more than "
            f"{retention_s:g} s ago and its checkpoint was removed (--checkpoint-retention-s); "
            "train the model again"
        )
