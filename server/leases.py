"""The lease keeper: a server renews a heartbeat on the jobs it runs; a running job whose
heartbeat is older than the lease belongs to a server that died, and whichever server meets
it first marks it INTERRUPTED (resumable) and frees its model.

Each run of a job (the first, and every resume) holds the lease under a new generation
number, kept in the job record (``lease_generation``). Every write a run makes (its record,
events, checkpoints, the published model, the model's release) is fenced by that number:
the store refuses it atomically once a resume has taken the job over (``StaleWrite``), and
the run stops without another word. Marking a job INTERRUPTED does not take it over: a run
that was only cut off from the store (not dead) finds its generation still current when
the store answers again, takes its job back and carries on.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from rnnlm.server.errors import DataLoss, FailedPrecondition, NotFound
from rnnlm.server.job_states import ACTIVE, JobState
from rnnlm.server.job_thread import free_model, record_event
from rnnlm.server.listing import parse, read_record, update_record
from rnnlm.server.local_jobs import LocalJob, LocalJobs
from rnnlm.server.models import ModelRegistry, being_trained
from rnnlm.server.records import JobStateChange, TrainingJob
from rnnlm.server.store import JOB, Fence, StaleWrite, Store

log = logging.getLogger("rnnlm.server")


class LeaseKeeper:
    """Renews the leases of this process' runs (``runs``) in a heartbeat thread, passes on
    cancellations made on other replicas, and reaps the jobs of dead servers: on its own
    every lease, and when the manager meets one (``reap_if_orphaned``,
    ``reap_model_owner``)."""

    def __init__(
        self,
        store: Store,
        models: ModelRegistry,
        runs: LocalJobs,
        *,
        server_id: str,
        lease_s: float,
    ) -> None:
        self.store, self.models, self.runs = store, models, runs
        self.server_id, self.lease_s = server_id, lease_s
        # Records the reaper could not read at its last pass: each is logged once, not each pass.
        self._reap_skipped: frozenset[str] = frozenset()
        self._thread = threading.Thread(target=self._heartbeat_loop, name="jobs", daemon=True)

    @property
    def heartbeat_s(self) -> float:
        """How often the leases are renewed."""
        return self.lease_s / 5

    def start(self) -> None:
        """Start the heartbeat thread; it ends when ``runs.closing`` is set."""
        self._thread.start()

    def _heartbeat_loop(self) -> None:
        last_sweep = 0.0
        while not self.runs.closing.wait(self.heartbeat_s):
            for local in self.runs.runs():
                try:
                    self.renew(local)
                except Exception as err:  # one bad record must not stop the heartbeats
                    log.warning("heartbeat of job %s: %s", local.job_id, err)
            if time.monotonic() - last_sweep > self.lease_s:
                last_sweep = time.monotonic()
                try:
                    self.reap_all()
                except Exception as err:
                    log.warning("job sweep: %s", err)

    def reap_all(self) -> None:
        """Mark the jobs of dead servers INTERRUPTED. A record that cannot be read (not
        JSON, or lacking a field) is skipped and logged: one damaged record must not keep
        every other job of a dead server RUNNING, its model claimed, for ever."""
        scan = self.store.scan(JOB)
        skipped = dict(scan.unreadable)
        for job_id, doc in scan.docs.items():
            try:
                self.reap_if_orphaned(parse(TrainingJob, job_id, doc))
            except DataLoss as err:  # a damaged record
                skipped[job_id] = err.detail or str(err)
            except (KeyError, TypeError, ValueError) as err:  # one the shape check let by
                skipped[job_id] = f"{type(err).__name__}: {err}"
        for job_id in sorted(skipped.keys() - self._reap_skipped):
            log.warning("job sweep: job %s skipped, it cannot be read: %s", job_id, skipped[job_id])
        self._reap_skipped = frozenset(skipped)

    def renew(self, local: LocalJob) -> None:
        """Renew the lease. A newer run may have taken the job over meanwhile (a resume
        after ours seemed to expire, during a store outage): then the fenced update is
        refused and this run stops without writing anything more. Marked INTERRUPTED but
        not taken over: take it back and carry on."""
        if local.lost:
            return
        reclaimed = False

        def renew(job: TrainingJob | None) -> TrainingJob | None:
            nonlocal reclaimed
            reclaimed = False  # the update may retry: only the last attempt counts
            if job is None:
                return None
            if job.state == JobState.INTERRUPTED and not local.ending:
                # A sweep that took the job for an ended one may have marked its checkpoint
                # removed: the run writes a new one, and the job can resume again.
                job = dataclasses.replace(
                    job,
                    state=JobState.RUNNING,
                    error="",
                    server_id=self.server_id,
                    checkpoint_removed_at=None,
                )
                reclaimed = True
            if job.state in ACTIVE:
                job.heartbeat_at = time.time()
            return job

        try:
            job = update_record(self.store, TrainingJob, local.job_id, renew, local.fence)
        except StaleWrite:
            local.lose()
            return
        if reclaimed:
            self._take_back(local)
        if job is not None and job.cancel_requested:
            local.stop.set()

    def _take_back(self, local: LocalJob) -> None:
        """Our job was marked INTERRUPTED while the store could not hear from us, and its
        model freed: say that it runs again, keep its event log (an ended job's log was set
        to expire), and claim the model back unless a new job of that model claimed it
        meanwhile (the two then both publish versions). A model deleted meanwhile is not
        brought back: the run stops (and ends cancelled)."""
        log.warning("job %s: the store answers again; this server carries on", local.job_id)
        record_event(self.store, local.job_id, local.fence, state=JobStateChange(JobState.RUNNING))
        self.store.expire_events_at(local.job_id, None)
        try:
            self.models.claim(local.model_id, local.job_id, create=False)
        except FailedPrecondition as err:
            log.warning("job %s: %s", local.job_id, err)
        except NotFound:
            log.warning(
                "job %s: its model %s was deleted while the job looked interrupted; the run stops",
                *(local.job_id, local.model_id),
            )
            local.stop.set()

    def reap_if_orphaned(self, job: TrainingJob) -> TrainingJob:
        """The job, marked INTERRUPTED (and its model freed) first when it is active and
        its server stopped renewing the lease."""
        if job.state not in ACTIVE or job.job_id in self.runs:
            return job
        if time.time() - job.heartbeat_at <= self.lease_s:
            return job
        reason = f"server {job.server_id} stopped responding; resume the job to continue"
        changed = False

        def mark(current: TrainingJob | None) -> TrainingJob | None:
            nonlocal changed
            changed = False  # the update may retry: only the last attempt counts
            stale = current is not None and time.time() - current.heartbeat_at > self.lease_s
            if current is not None and current.state in ACTIVE and stale:
                changed = True
                return dataclasses.replace(
                    current, state=JobState.INTERRUPTED, error=reason, updated_at=time.time()
                )
            return current

        updated = update_record(self.store, TrainingJob, job.job_id, mark)
        if changed:
            change = JobStateChange(JobState.INTERRUPTED, reason)
            record_event(self.store, job.job_id, None, state=change)
            free_model(self.models, job.model_id, job.job_id)
            log.warning("job %s marked interrupted: %s", job.job_id, reason)
        return updated or job

    def reap_model_owner(self, model_id: str) -> None:
        """Free the model if the job that claimed it died; refuse if it is alive."""
        try:
            owner = self.models.get(model_id).active_job_id
        except NotFound:
            return
        if not owner:
            return
        busy = being_trained(model_id, owner)
        job = read_record(self.store, TrainingJob, owner)
        state = self.reap_if_orphaned(job).state if job is not None else None
        if state in ACTIVE:
            raise busy
        # Ended without releasing (e.g. a store outage): freed only while it is still so,
        # atomically, since a resume of it (which claims the model first) may be under way.
        fence = None if state is None else Fence(JOB, owner, "state", state.value)
        try:
            self.models.release(model_id, owner, fence=fence)
        except StaleWrite:
            raise busy from None
