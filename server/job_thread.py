"""The job runner: runs a training job in a thread of its own. It trains, reports progress
(to the job's record, its event log and the metrics), writes resumable checkpoints,
publishes the finished model as the model's next version and records the final state.

Every write is fenced by the run's lease (``leases.py``). A store outage skips progress and
checkpoint writes; a trained model waits in memory while publishing is retried for up to
``publish_retry_s`` (then the job fails, saying so); the final state is retried for as long
as the server runs.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rnnlm.model import (
    Corpus,
    LanguageModel,
    ModelConfig,
    ProgressEvent,
    TrainConfig,
    WorkerLost,
    train,
)
from rnnlm.model.ngram import NgramModel
from rnnlm.server.corpora import CorpusRegistry
from rnnlm.server.errors import DataLoss, NotFound, ServiceError, Unavailable, cap
from rnnlm.server.job_states import JobState
from rnnlm.server.listing import read_record, update_record
from rnnlm.server.local_jobs import LocalJob, LocalJobs
from rnnlm.server.metrics import Metrics
from rnnlm.server.models import ModelRegistry
from rnnlm.server.records import JobStateChange, TrainingEvent, TrainingJob, TrainingProgress
from rnnlm.server.store import Fence, StaleWrite, Store

if TYPE_CHECKING:  # torch is imported only where a run is distributed
    from rnnlm.model.data_parallel import DataParallel

log = logging.getLogger("rnnlm.server")


# A job's error when the server shut down, and when its trained model could not be published.
SHUT_DOWN = "the server shut down; resume the job to continue"
UNPUBLISHED = (
    "the model was trained, but the store stayed unavailable for longer than this server's "
    "publish retry window ({retry_s:g} s, --publish-retry-s), so it was not published and "
    "is lost; train again"
)
# A data-parallel run that lost a process (killed, out of memory): its last checkpoint stands.
WORKER_LOST = "{reason}; resume the job to continue from its last checkpoint"
SHUT_DOWN_UNPUBLISHED = (
    "the server shut down while the store was unavailable, before the trained model was "
    "published; resume the job to continue from its last checkpoint"
)
# Backoff of the writes that must happen (publishing, final states): doubling, capped so
# that a write goes through within a few seconds of the store coming back.
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 5.0

# How a run ended: (state, error, model version published).
Final = tuple[JobState, str, int]
# An ARPA file parsed (``CorpusRegistry.load_arpa``): the n-gram model, and where it came from.
Arpa = tuple[NgramModel, str]


def job_checkpoint_key(job_id: str) -> str:
    return f"jobs/{job_id}/checkpoint"


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


def update_job(
    store: Store, job_id: str, fence: Fence | None = None, **fields: Any
) -> TrainingJob | None:
    """Change fields of the job record (absent: left absent); a run passes its fence."""

    def apply(job: TrainingJob | None) -> TrainingJob | None:
        if job is None:
            return None
        return dataclasses.replace(job, **fields, updated_at=time.time())

    return update_record(store, TrainingJob, job_id, apply, fence)


def read_job(store: Store, job_id: str) -> TrainingJob:
    job = read_record(store, TrainingJob, job_id)
    if job is None:
        raise NotFound(f"training job {job_id!r} does not exist")
    return job


def record_event(store: Store, job_id: str, fence: Fence | None, **what: Any) -> None:
    """Append to the job's event log, dated now, one of: ``progress``, ``checkpoint_step``,
    ``state`` (``TrainingEvent``)."""
    store.append_event(job_id, TrainingEvent(time.time(), **what).to_store(), fence=fence)


def free_model(
    models: ModelRegistry, model_id: str, job_id: str, fence: Fence | None = None
) -> None:
    """Release the model of a job that ended; a damaged model record stays claimed (the
    job's end is recorded all the same)."""
    try:
        models.release(model_id, job_id, fence=fence)
    except DataLoss as err:
        log.warning("job %s: model %s not freed: %s", job_id, model_id, err)


class JobRunner:
    """Starts runs of jobs (``start``) and carries each through to its end."""

    def __init__(
        self,
        store: Store,
        models: ModelRegistry,
        corpora: CorpusRegistry,
        metrics: Metrics,
        runs: LocalJobs,
        *,
        publish_retry_s: float,
    ) -> None:
        self.store, self.models, self.corpora, self.metrics = store, models, corpora, metrics
        self.runs = runs
        self.publish_retry_s = publish_retry_s
        # Set in rank 0 of a torchrun run (server/torchrun.py): its runs train as that rank.
        self.distributed: DataParallel | None = None

    def start(
        self,
        job_id: str,
        model_id: str,
        *,
        resume: bool,
        generation: int,
        corpus: Corpus | None = None,
        arpa: Arpa | None = None,
    ) -> LocalJob:
        """Run the job (whose record exists, QUEUED, with lease ``generation``) in a new
        thread: from its checkpoint when ``resume``; ``corpus`` and ``arpa`` when already
        parsed. FailedPrecondition when a run of it still trains here."""
        run = LocalJob(job_id, model_id, threading.Event(), generation=generation)
        run.thread = threading.Thread(
            target=self._run, args=(run, resume, corpus, arpa), name=f"job-{job_id}", daemon=True
        )
        self.runs.add(run)
        run.thread.start()
        return run

    def _run(self, local: LocalJob, resume: bool, corpus: Corpus | None, arpa: Arpa | None) -> None:
        job_id, model_id = local.job_id, local.model_id
        final: Final = (JobState.FAILED, "the job ended without a result", 0)
        try:
            job = read_job(self.store, job_id)
            train_config = TrainConfig.from_dict(job.training)
            corpus = corpus or self.corpora.load(job.corpus)
            if arpa is None and job.arpa_id:
                arpa = self.corpora.load_arpa(job.arpa_id)
            ngram, ngram_source = arpa or (None, "")
            resume_from = None
            if resume and (data := self.store.get_blob(job_checkpoint_key(job_id))):
                group = self.distributed
                device = str(group.device) if group is not None else train_config.device
                resume_from = LanguageModel.from_bytes(data, device=device)
            state = resume_from.training_state if resume_from else None
            self.metrics.job_started(model_id, state.global_step if state else 0)
            self._set_state(local, JobState.RUNNING)
            lm = train(
                corpus,
                ModelConfig.from_stored(job.model),
                train_config,
                on_progress=lambda event: self._on_progress(local, event),
                on_checkpoint=lambda lm: self._on_checkpoint(local, lm),
                should_stop=local.stop.is_set,
                resume_from=resume_from,
                ngram=ngram,
                ngram_source=ngram_source,
                distributed=self.distributed,
            )
            assert lm.training_state is not None  # train() always leaves one
            status = JobState.after_training(lm.training_state.status)
            if lm.training_state.warnings:
                warnings = list(lm.training_state.warnings)
                skip_if_unavailable(
                    lambda: update_job(self.store, job_id, local.fence, warnings=warnings)
                )
            if local.lost:
                return
            if status != JobState.CANCELLED:
                final = self._publish(local, lm, status)
            elif self.runs.closing.is_set():
                final = (JobState.INTERRUPTED, SHUT_DOWN, 0)
            else:
                final = (JobState.CANCELLED, "", 0)
        except StaleWrite:
            local.lose()
        except WorkerLost as err:
            log.warning("job %s: %s", job_id, err)
            final = (JobState.INTERRUPTED, cap(WORKER_LOST.format(reason=err)), 0)
        except Exception as err:
            user_error = isinstance(err, (ValueError, FloatingPointError, ServiceError))
            error = cap(str(err))
            if not user_error:  # its text may hold server paths: the log has it, not the job
                ref = uuid.uuid4().hex[:8]
                log.exception("job %s failed [ref %s]", job_id, ref)
                error = f"internal error [ref {ref}]; see the server log"
            final = (JobState.FAILED, error, 0)
        finally:
            self._end(local, final)

    def _publish(self, local: LocalJob, lm: LanguageModel, status: JobState) -> Final:
        """Publish the trained model as the model's next version; the job's final state.
        While the store is unavailable the model waits in memory and publishing is retried,
        backing off, for up to ``publish_retry_s``: ``local.phase``, a log line and the
        metrics say so meanwhile."""
        job_id, retry_s = local.job_id, self.publish_retry_s
        until = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + retry_s))
        reserved: dict[str, int] = {}  # one version number, however many attempts

        def publish() -> int:
            return self.models.publish(
                local.model_id, lm, job_id, fence=local.fence, reserved=reserved
            )

        def failed(err: Unavailable, attempt: int) -> None:
            self.metrics.publish_retries.inc()
            if attempt == 0:
                self.metrics.jobs_unpublished.inc()
                local.phase = f"publishing (store unavailable, retrying until {until})"
                log.warning(
                    "job %s: trained, but the store is unavailable (%s); the model waits in "
                    "memory and publishing is retried for up to %g s (--publish-retry-s)",
                    job_id,
                    err.detail or err,
                    retry_s,
                )

        local.phase = "publishing"
        try:
            closing = self.runs.closing
            version = retry_until(publish, closing, time.monotonic() + retry_s, failed)
        except Unavailable:
            if self.runs.closing.is_set():
                return (JobState.INTERRUPTED, SHUT_DOWN_UNPUBLISHED, 0)
            log.error("job %s: store unavailable for %g s: trained model dropped", job_id, retry_s)
            return (JobState.FAILED, UNPUBLISHED.format(retry_s=retry_s), 0)
        finally:
            if local.phase != "publishing":  # it waited
                self.metrics.jobs_unpublished.dec()
                log.info("job %s: publishing retries over", job_id)
            local.phase = ""
        # The version supersedes the resumable checkpoint.
        key = job_checkpoint_key(job_id)
        skip_if_unavailable(lambda: self.store.delete_blob(key, fence=local.fence))
        return (status, "", version)

    def _end(self, local: LocalJob, final: Final) -> None:
        """Free the slot and the model, then record the final state: the slot first, so
        that a client that saw the final state can start the next job at once. The writes
        are retried while the store is unavailable, for as long as this server runs (a job
        left RUNNING in the store would otherwise be marked INTERRUPTED, its end unsaid)."""
        local.ending = True
        self.metrics.job_ended(local.model_id, "lost" if local.lost else final[0])

        def release() -> None:
            free_model(self.models, local.model_id, local.job_id, local.fence)

        def failed(err: Unavailable, attempt: int) -> None:
            if attempt == 0:
                local.phase = f"ended {final[0]}; recording it (store unavailable, retrying)"
                log.warning(
                    "job %s: ended %s, store unavailable (%s): retrying to record it",
                    local.job_id,
                    final[0],
                    err.detail or err,
                )

        closing = self.runs.closing
        try:
            if not local.lost:
                retry_until(release, closing, on_retry=failed)
                retry_until(lambda: self._set_state(local, *final), closing, on_retry=failed)
        except StaleWrite:
            local.lose()
        except Unavailable:
            log.warning(
                "job %s: the server stops while the store is unavailable: its end (%s) is "
                "not recorded, and a server will mark it interrupted",
                local.job_id,
                final[0],
            )
        finally:
            local.phase = ""
            self.runs.remove(local)

    def _on_progress(self, local: LocalJob, event: ProgressEvent) -> None:
        self.metrics.job_progress(
            local.model_id, event.step, event.total_steps, event.loss, event.tokens_per_second
        )
        progress = TrainingProgress.from_event(event)
        skip_if_unavailable(
            lambda: record_event(self.store, local.job_id, local.fence, progress=progress)
        )
        skip_if_unavailable(
            lambda: update_job(self.store, local.job_id, local.fence, progress=progress)
        )

    def _on_checkpoint(self, local: LocalJob, lm: LanguageModel) -> None:
        if local.lost:
            return
        assert lm.training_state is not None  # a model in training has one
        step = lm.training_state.global_step
        data = lm.to_bytes(resumable=True)

        def write() -> None:
            self.store.put_blob(job_checkpoint_key(local.job_id), data, fence=local.fence)
            update_job(self.store, local.job_id, local.fence, checkpoint_step=step)
            record_event(self.store, local.job_id, local.fence, checkpoint_step=step)

        # A store outage skips this checkpoint; training goes on and the next one retries.
        skip_if_unavailable(write)

    def _set_state(
        self, local: LocalJob, state: JobState, error: str = "", model_version: int = 0
    ) -> None:
        job_id = local.job_id
        fields: dict[str, Any] = {"state": state, "error": error}
        if model_version:
            fields["model_version"] = model_version
        update_job(self.store, job_id, local.fence, **fields)
        record_event(
            self.store, job_id, local.fence, state=JobStateChange(state, error, model_version)
        )
        log.info("job %s: %s%s", job_id, state, f" ({error})" if error else "")
