"""The sweep: a thread in every server that, every ``--sweep-interval-s``, applies the
retention rules (docs/deployment.md, "Retention"; times count from a job's end, its record's
``updated_at``) and removes orphans: blobs, event logs and request-id records whose owning
record is gone, and the store's own debris (``Store.collect_garbage``). It logs every removal.

Safe with several replicas and with jobs running: the things owned are listed before their
owners, so an owner created meanwhile is seen; what is removed is checked again just before;
nothing last written within ``--orphan-grace-s`` is an orphan (an upload stores its bytes
before its record, a publish its checkpoint before the model record names it); every
removal is idempotent, so replicas sweeping at once only repeat each other; and a running
job's record owns everything it writes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rnnlm.server.errors import DataLoss, ServiceError
from rnnlm.server.ids import ID, matches
from rnnlm.server.job_states import ACTIVE, FINAL, RESUMABLE
from rnnlm.server.job_thread import job_checkpoint_key
from rnnlm.server.listing import parse
from rnnlm.server.records import TrainingJob
from rnnlm.server.retention import delete_job, remove_resumable_checkpoint
from rnnlm.server.store import CORPUS, JOB, MODEL, TRAIN_REQUEST, Store

log = logging.getLogger("rnnlm.server")


@dataclass(frozen=True)
class RetentionPolicy:
    """The retention settings (``ServerConfig`` fields of the same names)."""

    event_retention_s: float
    checkpoint_retention_s: float
    orphan_grace_s: float


@dataclass
class SweepReport:
    """What one sweep removed (descriptions, for the log and the tests)."""

    removed: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        log.info("sweep: removed %s", what)
        self.removed.append(what)


@dataclass
class _Snapshot:
    """What the store holds, the owned things listed before their owners."""

    blobs: dict[str, float]
    logs: dict[str, float]
    requests: dict[str, dict[str, Any]]
    jobs: dict[str, dict[str, Any]]
    job_ids: set[str]  # readable or not: an unreadable record still owns its data
    models: dict[str, dict[str, Any]]
    model_ids: set[str]
    corpus_ids: set[str]

    @classmethod
    def take(cls, store: Store) -> _Snapshot:
        blobs, logs = store.list_blobs(), store.list_event_logs()
        requests = store.scan(TRAIN_REQUEST).docs
        jobs, models, corpora = store.scan(JOB), store.scan(MODEL), store.scan(CORPUS)
        return cls(
            blobs,
            logs,
            requests,
            jobs.docs,
            {*jobs.docs, *jobs.unreadable},
            models.docs,
            {*models.docs, *models.unreadable},
            {*corpora.docs, *corpora.unreadable},
        )


class Sweeper:
    """Runs ``sweep()`` every ``interval_s`` seconds (0: never) in a daemon thread."""

    def __init__(self, store: Store, policy: RetentionPolicy, interval_s: float) -> None:
        self.store, self.policy, self.interval_s = store, policy, interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one sweep at a time in this process
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="sweeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        # A random first wait: replicas started together do not sweep in step.
        wait = random.uniform(0.1, 1.0) * self.interval_s
        while not self._stop.wait(wait):
            try:
                self.sweep()
            except ServiceError as err:  # the store is down: next time
                log.warning("sweep skipped: %s", err)
            except Exception:
                log.exception("sweep failed")
            wait = self.interval_s

    def sweep(self) -> SweepReport:
        """One pass; returns (and logs) what it removed."""
        with self._lock:
            report = SweepReport()
            now = time.time()
            snap = _Snapshot.take(self.store)
            self._apply_retention(snap, now, report)
            self._remove_orphans(snap, now - self.policy.orphan_grace_s, report)
            for what in self.store.collect_garbage(now - self.policy.orphan_grace_s):
                report.add(what)
            if report.removed:
                log.info("sweep: %d item(s) removed", len(report.removed))
            return report

    # -- retention ---------------------------------------------------------------------

    def _apply_retention(self, snap: _Snapshot, now: float, report: SweepReport) -> None:
        for job_id, doc in snap.jobs.items():
            try:
                self._retain(parse(TrainingJob, job_id, doc), snap, now, report)
            except (KeyError, TypeError, ValueError, DataLoss) as err:
                # JSON, but not a job record as we write them: left for an operator, and
                # the sweep goes on (a crash here stopped every sweep, orphans and all).
                why = err.detail if isinstance(err, DataLoss) else repr(err)
                log.warning("sweep: job %s skipped, its record is damaged: %s", job_id, why)

    def _retain(self, job: TrainingJob, snap: _Snapshot, now: float, report: SweepReport) -> None:
        policy = self.policy
        job_id, state, ended = job.job_id, job.state, job.updated_at
        if state not in FINAL:
            return
        if job.model_id not in snap.model_ids and ended < now - policy.orphan_grace_s:
            self._delete_job_of_deleted_model(job, report)
            return
        if job_id in snap.logs:
            self._expire_events(job_id, ended + policy.event_retention_s)
        if job_checkpoint_key(job_id) not in snap.blobs:
            return
        if state not in RESUMABLE:  # final for good (completed, failed): unusable
            if self.store.delete_blob(job_checkpoint_key(job_id)):
                report.add(f"checkpoint of {state} job {job_id}")
        elif not job.checkpoint_removed_at:
            before = now - policy.checkpoint_retention_s
            if ended < before and remove_resumable_checkpoint(self.store, job_id, before):
                report.add(f"checkpoint of {state} job {job_id} (retention over)")

    def _expire_events(self, job_id: str, when: float) -> None:
        """Set the log's expiry, unless the job was resumed meanwhile. A resume keeps its
        log (``expire_events_at(None)``) after taking the job over, so reading the job
        again after setting ours decides: active now means the resume's came first."""
        self.store.expire_events_at(job_id, when)
        current = self.store.get(JOB, job_id)
        if current is not None and current.get("state") in ACTIVE:  # a raw read: any shape
            self.store.expire_events_at(job_id, None)

    def _delete_job_of_deleted_model(self, job: TrainingJob, report: SweepReport) -> None:
        if self.store.get(MODEL, job.model_id) is not None:
            return  # a model of that name was created meanwhile
        try:
            delete_job(self.store, job.job_id)
        except ServiceError:
            return  # gone, or resumed meanwhile
        report.add(f"{job.state} job {job.job_id} of deleted model {job.model_id}")

    # -- orphans -----------------------------------------------------------------------

    def _remove_orphans(self, snap: _Snapshot, old: float, report: SweepReport) -> None:
        """Remove what no record owns and was last written before ``old``."""
        store = self.store
        for request_id, request in snap.requests.items():
            job_id = request.get("job_id")
            if not isinstance(job_id, str) or not matches(ID, job_id) or job_id in snap.job_ids:
                continue  # a damaged record is left for an operator to look at
            if store.get(JOB, job_id) is None:
                store.delete(TRAIN_REQUEST, request_id)
                report.add(f"request id {request_id} of deleted job {job_id}")
        for log_id, last in snap.logs.items():
            if not matches(ID, log_id):
                continue  # not a name we write (a key of someone else's under our prefix)
            if log_id not in snap.job_ids and last < old and store.get(JOB, log_id) is None:
                store.delete_events(log_id)
                report.add(f"event log of deleted job {log_id}")
        for key, written in snap.blobs.items():
            owner = self._blob_owner(key, snap) if written < old else None
            if owner is not None and not self._owner_exists(*owner) and store.delete_blob(key):
                report.add(f"blob {key} ({owner[0]} {owner[1]} is gone)")

    def _blob_owner(self, key: str, snap: _Snapshot) -> tuple[str, str, int] | None:
        """(kind, id, version) of the record that should own a blob, when it is missing
        from the snapshot; None when the blob is owned (or not one of ours)."""
        parts = key.split("/")
        if len(parts) == 2 and parts[0] == "corpora" and parts[1] not in snap.corpus_ids:
            return (CORPUS, parts[1], 0)
        if len(parts) == 3 and parts[0] == "jobs" and parts[1] not in snap.job_ids:
            return (JOB, parts[1], 0)
        if len(parts) == 4 and parts[0] == "models" and parts[2].isdigit():
            model_id, version = parts[1], int(parts[2])
            record = snap.models.get(model_id)
            if model_id in snap.model_ids and record is None:
                return None  # unreadable record: it may well own the version
            if record is None or not _has_version(record, version):
                return (MODEL, model_id, version)
        return None

    def _owner_exists(self, kind: str, doc_id: str, version: int) -> bool:
        """Checked again just before removing: the owner may have come meanwhile."""
        try:
            record = self.store.get(kind, doc_id)
        except (ServiceError, ValueError):  # ValueError: not an id, so not a key of ours
            return True  # unreadable now: leave what it may own
        if record is None:
            return False
        return kind != MODEL or _has_version(record, version)


def _has_version(record: dict[str, Any], version: int) -> bool:
    return any(v.get("version") == version for v in record.get("versions", []))
