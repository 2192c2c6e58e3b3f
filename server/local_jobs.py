"""The jobs running in this process: one table, shared by the manager (``jobs.py``), which
admits jobs, the runner (``job_thread.py``), which adds and removes its runs, and the lease
keeper (``leases.py``), which renews their leases."""

from __future__ import annotations

import dataclasses
import logging
import threading

from rnnlm.server.errors import FailedPrecondition
from rnnlm.server.records import LEASE_FIELD
from rnnlm.server.store import JOB, Fence

log = logging.getLogger("rnnlm.server")


@dataclasses.dataclass
class LocalJob:
    """One run of a job in this process (the first, or a resume)."""

    job_id: str
    model_id: str
    stop: threading.Event  # set: stop at the next step (polled before every step)
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


class LocalJobs:
    """The runs of this process by job id, at most one each (an ending run may be replaced
    by a resume: its writes are fenced). ``lock`` is held by whoever checks the table and
    changes it in one step (the manager admitting a job: capacity check, model claim and
    start); it is reentrant, so the table's own methods take it too. ``closing`` is set
    when the server shuts down: no job is admitted any more and the runs stop."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.closing = threading.Event()
        self._runs: dict[str, LocalJob] = {}

    def get(self, job_id: str) -> LocalJob | None:
        return self._runs.get(job_id)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._runs

    def runs(self) -> list[LocalJob]:
        with self.lock:
            return list(self._runs.values())

    def add(self, run: LocalJob) -> None:
        with self.lock:
            current = self._runs.get(run.job_id)
            if current is not None and not current.ending:  # an ending run's writes are fenced
                raise FailedPrecondition(f"training job {run.job_id!r} is already running here")
            self._runs[run.job_id] = run

    def remove(self, run: LocalJob) -> None:
        with self.lock:
            if self._runs.get(run.job_id) is run:  # not a newer run of the job
                del self._runs[run.job_id]
