"""Job leases: a server renews a heartbeat on the jobs it runs; a running job whose heartbeat
is older than the lease belongs to a server that died, and whichever server meets it first
marks it INTERRUPTED (resumable) and frees its model. Mixed into ``JobManager``.

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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rnnlm.server.errors import DataLoss, FailedPrecondition, NotFound, Unavailable
from rnnlm.server.job_states import (
    ACTIVE,
    INTERRUPTED,
    RUNNING,
)
from rnnlm.server.listing import read_record
from rnnlm.server.store import JOB, Fence, StaleWrite

if TYPE_CHECKING:
    from rnnlm.server.models import ModelRegistry
    from rnnlm.server.store import Store

log = logging.getLogger("rnnlm.server")

LEASE_FIELD = "lease_generation"  # of the job record; records from before it count as 0
# Set in a job record when its resumable checkpoint was removed: it can no longer resume.
CHECKPOINT_REMOVED = "checkpoint_removed_at"
# Backoff of the writes that must happen (publishing, final states): doubling, capped so
# that a write goes through within a few seconds of the store coming back.
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 5.0


def skip_if_unavailable(fn: Callable[[], Any]) -> None:
    """Progress and checkpoint writes: a store outage skips one, training goes on."""
    try:
        fn()
    except Unavailable as err:
        log.warning("store unavailable, skipped: %s", err)


def retry_until(
    fn: Callable[[], Any],
    stop: threading.Event,
    deadline: float | None = None,
    on_retry: Callable[[Unavailable, int], None] | None = None,
) -> Any:
    """Writes that must happen (publishing, final states): call ``fn`` until it returns,
    backing off while the store is unavailable (``on_retry(error, attempt)`` after each
    failure). Raises the last ``Unavailable`` once ``deadline`` (``time.monotonic()``) has
    passed, or when ``stop`` is set (the server is shutting down) and one last attempt
    failed: a server stopped just after the store came back still writes."""
    attempt = 0
    while True:
        try:
            return fn()
        except Unavailable as err:
            if on_retry is not None:
                on_retry(err, attempt)
            delay = min(RETRY_FIRST_S * 2**attempt, RETRY_MAX_S)
            if deadline is not None:
                if time.monotonic() >= deadline:
                    raise
                delay = min(delay, deadline - time.monotonic())
            if stop.wait(max(delay, 0.0)):
                return fn()  # without waiting out the backoff: the store may be back
            attempt += 1


@dataclasses.dataclass
class LocalJob:
    """A job running in this process."""

    job_id: str
    model_id: str
    stop: threading.Event
    thread: threading.Thread | None = None
    generation: int = 0  # of the lease this run holds
    lost: bool = False  # a newer run took the job over: write nothing more
    ending: bool = False  # trained (or stopped); only its end is still to be recorded
    phase: str = ""  # what it does now, when its state does not say (GetTrainingJob shows it)

    @property
    def fence(self) -> Fence:
        """The condition of every write this run makes: its lease is still current."""
        return Fence(JOB, self.job_id, LEASE_FIELD, self.generation)

    def lose(self) -> None:
        """A write was refused (``StaleWrite``): stop quietly, writing nothing more."""
        if not self.lost:
            log.warning(
                "job %s: a newer run holds the lease (ours was generation %d), or the job "
                "was deleted; this run stops here without writing",
                self.job_id,
                self.generation,
            )
        self.lost = True
        self.stop.set()


class LeaseKeeper:
    store: Store
    models: ModelRegistry
    server_id: str
    lease_s: float
    _local: dict[str, Any]
    _closing: threading.Event

    def _heartbeat_loop(self) -> None:
        """Renew our jobs' leases, pass on cancellations made on other replicas, and reap
        jobs whose server died."""
        last_sweep = 0.0
        while not self._closing.wait(self.lease_s / 5):
            for local in list(self._local.values()):
                try:
                    self._renew(local)
                except Exception as err:  # one bad record must not stop the heartbeats
                    log.warning("heartbeat of job %s: %s", local.job_id, err)
            if time.monotonic() - last_sweep > self.lease_s:
                last_sweep = time.monotonic()
                try:
                    self._reap_all()
                except Exception as err:
                    log.warning("job sweep: %s", err)

    # Records the reaper could not read at its last pass: each is logged once, not each pass.
    _reap_skipped: frozenset[str] = frozenset()

    def _reap_all(self) -> None:
        """Mark the jobs of dead servers INTERRUPTED. A record that cannot be read (not
        JSON, or lacking a field) is skipped and logged: one damaged record must not keep
        every other job of a dead server RUNNING, its model claimed, for ever."""
        scan = self.store.scan(JOB)
        skipped = dict(scan.unreadable)
        for job_id, job in scan.docs.items():
            try:
                self._reap_if_orphaned(job)
            except (KeyError, TypeError, ValueError, DataLoss) as err:  # a damaged record
                skipped[job_id] = f"{type(err).__name__}: {err}"
        for job_id in sorted(skipped.keys() - self._reap_skipped):
            log.warning("job sweep: job %s skipped, it cannot be read: %s", job_id, skipped[job_id])
        self._reap_skipped = frozenset(skipped)

    def _renew(self, local: LocalJob) -> None:
        """Renew the lease. A newer run may have taken the job over meanwhile (a resume
        after ours seemed to expire, during a store outage): then the fenced update is
        refused and this run stops without writing anything more. Marked INTERRUPTED but
        not taken over: take it back and carry on."""
        if local.lost:
            return
        reclaimed = {"now": False}

        def renew(job: dict | None) -> dict | None:
            reclaimed["now"] = False  # the update may retry: only the last attempt counts
            if job is None:
                return None
            if job["state"] == INTERRUPTED and not local.ending:
                job.update(state=RUNNING, error="", server_id=self.server_id)
                # A sweep that took the job for an ended one may have marked its checkpoint
                # removed: the run writes a new one, and the job can resume again.
                job.pop(CHECKPOINT_REMOVED, None)
                reclaimed["now"] = True
            if job["state"] in ACTIVE:
                job["heartbeat_at"] = time.time()
            return job

        try:
            job = self.store.update(JOB, local.job_id, renew, fence=local.fence)
        except StaleWrite:
            local.lose()
            return
        if reclaimed["now"]:
            self._take_back(local)
        if job and job.get("cancel_requested"):
            local.stop.set()

    def _take_back(self, local: LocalJob) -> None:
        """Our job was marked INTERRUPTED while the store could not hear from us, and its
        model freed: say that it runs again, keep its event log (an ended job's log was set
        to expire), and claim the model back unless a new job of that model claimed it
        meanwhile (the two then both publish versions). A model deleted meanwhile is not
        brought back: the run stops (and ends cancelled)."""
        log.warning("job %s: the store answers again; this server carries on", local.job_id)
        event = {"type": "state", "time": time.time(), "state": RUNNING, "error": ""}
        self.store.append_event(local.job_id, {**event, "model_version": 0}, fence=local.fence)
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

    def _reap_if_orphaned(self, job: dict[str, Any]) -> dict[str, Any]:
        if job["state"] not in ACTIVE or job["job_id"] in self._local:
            return job
        if time.time() - job.get("heartbeat_at", 0) <= self.lease_s:
            return job
        reason = f"server {job['server_id']} stopped responding; resume the job to continue"
        changed = {"now": False}

        def mark(current: dict | None) -> dict | None:
            changed["now"] = False  # the update may retry: only the last attempt counts
            stale = current is not None and time.time() - current.get("heartbeat_at", 0)
            if current is not None and current["state"] in ACTIVE and stale > self.lease_s:
                current.update(state=INTERRUPTED, error=reason, updated_at=time.time())
                changed["now"] = True
            return current

        updated = self.store.update(JOB, job["job_id"], mark)
        if changed["now"]:
            event = {
                "type": "state",
                "time": time.time(),
                "state": INTERRUPTED,
                "error": reason,
                "model_version": 0,
            }
            self.store.append_event(job["job_id"], event)
            self.models.release(job["model_id"], job["job_id"])
            log.warning("job %s marked interrupted: %s", job["job_id"], reason)
        return updated or job

    def _reap_model_owner(self, model_id: str) -> None:
        """Free the model if the job that claimed it died; refuse if it is alive."""
        try:
            owner = self.models.get(model_id).get("active_job_id")
        except NotFound:
            return
        if not owner:
            return
        busy = FailedPrecondition(
            f"model {model_id!r} is being trained by job {owner!r}; wait for it to end "
            "or cancel it before training the model again"
        )

        job = read_record(self.store, JOB, owner)
        state = self._reap_if_orphaned(job)["state"] if job is not None else None
        if state in ACTIVE:
            raise busy
        # Ended without releasing (e.g. a store outage): freed only while it is still so,
        # atomically, since a resume of it (which claims the model first) may be under way.
        fence = None if job is None else Fence(JOB, owner, "state", state)
        try:
            self.models.release(model_id, owner, fence=fence)
        except StaleWrite:
            raise busy from None
