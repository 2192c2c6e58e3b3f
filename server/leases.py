"""Job leases: a server renews a heartbeat on the jobs it runs; a running job whose heartbeat
is older than the lease belongs to a server that died, and whichever server meets it first
marks it INTERRUPTED (resumable) and frees its model. Mixed into ``JobManager``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import FailedPrecondition, NotFound, Unavailable
from .store import JOB

if TYPE_CHECKING:
    from .models import ModelRegistry
    from .store import Store

log = logging.getLogger("rnnlm.server")

QUEUED, RUNNING, COMPLETED, EARLY_STOPPED = "queued", "running", "completed", "early_stopped"
CANCELLED, FAILED, INTERRUPTED = "cancelled", "failed", "interrupted"
ACTIVE = (QUEUED, RUNNING)
FINAL = (COMPLETED, EARLY_STOPPED, CANCELLED, FAILED, INTERRUPTED)


def skip_if_unavailable(fn: Callable[[], Any]) -> None:
    """Progress and checkpoint writes: a store outage skips one, training goes on."""
    try:
        fn()
    except Unavailable as err:
        log.warning("store unavailable, skipped: %s", err)


def retry_if_unavailable(fn: Callable[[], Any], attempts: int = 10) -> Any:
    """Writes that must happen (publishing, final states): back off and try again."""
    for attempt in range(attempts):
        try:
            return fn()
        except Unavailable:
            if attempt == attempts - 1:
                raise
            time.sleep(min(0.5 * 2**attempt, 5.0))
    return None


@dataclasses.dataclass
class LocalJob:
    """A job running in this process."""

    job_id: str
    model_id: str
    stop: threading.Event
    thread: threading.Thread | None = None
    lost: bool = False  # another server took the job over (our lease expired): write nothing


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
                    for job in self.store.list(JOB):
                        self._reap_if_orphaned(job)
                except Exception as err:
                    log.warning("job sweep: %s", err)

    def _renew(self, local: LocalJob) -> None:
        """Renew the lease, unless another server has taken the job over meanwhile (ours
        expired during a store outage): then stop without writing anything more."""
        verdict = {"ours": True}

        def renew(job: dict | None) -> dict | None:
            verdict["ours"] = bool(
                job and job["state"] in ACTIVE and job.get("server_id") == self.server_id
            )
            if verdict["ours"]:
                job["heartbeat_at"] = time.time()
            return job

        job = self.store.update(JOB, local.job_id, renew)
        if not verdict["ours"]:
            log.warning("job %s: lease lost to another server; stopping here", local.job_id)
            local.lost = True
            local.stop.set()
        elif job and job.get("cancel_requested"):
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
            event = {"type": "state", "state": INTERRUPTED, "error": reason, "model_version": 0}
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
        job = self.store.get(JOB, owner)
        if job is not None and self._reap_if_orphaned(job)["state"] in ACTIVE:
            raise FailedPrecondition(
                f"model {model_id!r} is being trained by job {owner!r}; wait for it to end "
                "or cancel it before training the model again"
            )
        self.models.release(model_id, owner)  # ended without releasing (e.g. store outage)
