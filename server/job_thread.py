"""The job thread: what runs a training job in this process. It trains, reports progress to
the job's record, its event log and the metrics, writes resumable checkpoints, publishes the
finished model as the next version and records the final state. Mixed into ``JobManager``
(``jobs.py``), which starts jobs and answers queries about them.

Every write is fenced by the run's lease generation (``leases.py``): once a newer run holds
the job, this one's writes are refused and it stops quietly. A store outage skips progress
and checkpoint writes; a trained model is kept in memory and publishing is retried for up
to ``publish_retry_s`` (then the job fails, saying so); the final state is retried for as
long as the server runs.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rnnlm.model import Corpus, LanguageModel, ModelConfig, ProgressEvent, TrainConfig, train
from rnnlm.model.ngram import NgramModel
from rnnlm.server.errors import FailedPrecondition, ServiceError, Unavailable, cap
from rnnlm.server.job_states import CANCELLED, FAILED, INTERRUPTED, RUNNING
from rnnlm.server.leases import LocalJob, retry_until, skip_if_unavailable
from rnnlm.server.store import JOB, Fence, StaleWrite

if TYPE_CHECKING:
    from rnnlm.server.corpora import CorpusRegistry
    from rnnlm.server.metrics import Metrics
    from rnnlm.server.models import ModelRegistry
    from rnnlm.server.store import Store

log = logging.getLogger("rnnlm.server")


# A job's error when its trained model could not be published.
UNPUBLISHED = (
    "the model was trained, but the store stayed unavailable for longer than this server's "
    "publish retry window ({retry_s:g} s, --publish-retry-s), so it was not published and "
    "is lost; train again"
)
SHUT_DOWN_UNPUBLISHED = (
    "the server shut down while the store was unavailable, before the trained model was "
    "published; resume the job to continue from its last checkpoint"
)


def job_checkpoint_key(job_id: str) -> str:
    return f"jobs/{job_id}/checkpoint"


class JobRunner:
    store: Store
    models: ModelRegistry
    corpora: CorpusRegistry
    metrics: Metrics
    _local: dict[str, LocalJob]
    _lock: threading.Lock
    _closing: threading.Event
    publish_retry_s: float
    get: Callable[[str], dict[str, Any]]  # JobManager's

    def _start(
        self,
        job_id: str,
        model_id: str,
        resume: bool,
        generation: int,
        corpus: Corpus | None = None,
        arpa: tuple[NgramModel, str] | None = None,
    ):
        running = self._local.get(job_id)
        if running is not None and not running.ending:  # an ending run's writes are fenced
            raise FailedPrecondition(f"training job {job_id!r} is already running here")
        local = LocalJob(job_id, model_id, threading.Event(), generation=generation)
        local.thread = threading.Thread(
            target=self._run,
            args=(local, resume, corpus, arpa),
            name=f"job-{job_id}",
            daemon=True,
        )
        self._local[job_id] = local
        local.thread.start()

    def _run(
        self,
        local: LocalJob,
        resume: bool,
        corpus: Corpus | None,
        arpa: tuple[NgramModel, str] | None,
    ) -> None:
        job_id, model_id = local.job_id, local.model_id
        final: tuple[str, str, int] = (FAILED, "the job ended without a result", 0)
        try:
            job = self.get(job_id)
            train_config = TrainConfig.from_dict(job["train_config"])
            corpus = corpus or self.corpora.load(job["corpus"])
            if arpa is None and job.get("arpa_id"):
                arpa = self.corpora.load_arpa(job["arpa_id"])
            ngram, ngram_source = arpa or (None, "")
            resume_from = None
            if resume and (data := self.store.get_blob(job_checkpoint_key(job_id))):
                resume_from = LanguageModel.from_bytes(data, device=train_config.device)
            state = resume_from.training_state if resume_from else None
            self.metrics.job_started(model_id, state.global_step if state else 0)
            self._set_state(local, RUNNING)
            lm = train(
                corpus,
                ModelConfig.from_stored(job["model_config"]),
                train_config,
                on_progress=lambda event: self._on_progress(local, event),
                on_checkpoint=lambda lm: local.lost or self._on_checkpoint(local, lm),
                should_stop=local.stop.is_set,
                resume_from=resume_from,
                ngram=ngram,
                ngram_source=ngram_source,
            )
            status = lm.training_state.status
            if lm.training_state.warnings:
                warnings = list(lm.training_state.warnings)
                skip_if_unavailable(lambda: self._update(job_id, local.fence, warnings=warnings))
            if local.lost:
                return
            if status != CANCELLED:
                final = self._publish(local, lm, status)
            elif self._closing.is_set():
                final = (INTERRUPTED, "the server shut down; resume the job to continue", 0)
            else:
                final = (CANCELLED, "", 0)
        except StaleWrite:
            local.lose()
        except Exception as err:
            user_error = isinstance(err, (ValueError, FloatingPointError, ServiceError))
            error = cap(str(err))
            if not user_error:  # its text may hold server paths: the log has it, not the job
                ref = uuid.uuid4().hex[:8]
                log.exception("job %s failed [ref %s]", job_id, ref)
                error = f"internal error [ref {ref}]; see the server log"
            final = (FAILED, error, 0)
        finally:
            self._end(local, final)

    def _publish(self, local: LocalJob, lm: LanguageModel, status: str) -> tuple[str, str, int]:
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
            version = retry_until(publish, self._closing, time.monotonic() + retry_s, failed)
        except Unavailable:
            if self._closing.is_set():
                return (INTERRUPTED, SHUT_DOWN_UNPUBLISHED, 0)
            log.error("job %s: store unavailable for %g s: trained model dropped", job_id, retry_s)
            return (FAILED, UNPUBLISHED.format(retry_s=retry_s), 0)
        finally:
            if local.phase != "publishing":  # it waited
                self.metrics.jobs_unpublished.dec()
                log.info("job %s: publishing retries over", job_id)
            local.phase = ""
        # The version supersedes the resumable checkpoint.
        key = job_checkpoint_key(job_id)
        skip_if_unavailable(lambda: self.store.delete_blob(key, fence=local.fence))
        return (status, "", version)

    def _end(self, local: LocalJob, final: tuple[str, str, int]) -> None:
        """Free the slot and the model, then record the final state: the slot first, so
        that a client that saw the final state can start the next job at once. The writes
        are retried while the store is unavailable, for as long as this server runs (a job
        left RUNNING in the store would otherwise be marked INTERRUPTED, its end unsaid)."""
        local.ending = True
        self.metrics.job_ended(local.model_id, "lost" if local.lost else final[0])

        def release() -> None:
            self.models.release(local.model_id, local.job_id, fence=local.fence)

        def failed(err: Unavailable, attempt: int) -> None:
            if attempt == 0:
                local.phase = f"ended {final[0]}; recording it (store unavailable, retrying)"
                log.warning(
                    "job %s: ended %s, store unavailable (%s): retrying to record it",
                    local.job_id,
                    final[0],
                    err.detail or err,
                )

        try:
            if not local.lost:
                retry_until(release, self._closing, on_retry=failed)
                retry_until(lambda: self._set_state(local, *final), self._closing, on_retry=failed)
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
            with self._lock:
                if self._local.get(local.job_id) is local:  # not a newer run of it
                    del self._local[local.job_id]

    def _on_progress(self, local: LocalJob, event: ProgressEvent) -> None:
        self.metrics.job_progress(
            local.model_id, event.step, event.total_steps, event.loss, event.tokens_per_sec
        )
        progress = dataclasses.asdict(event)
        event_doc = {"type": "progress", "time": time.time(), **progress}
        skip_if_unavailable(
            lambda: self.store.append_event(local.job_id, event_doc, fence=local.fence)
        )
        skip_if_unavailable(lambda: self._update(local.job_id, local.fence, progress=progress))

    def _on_checkpoint(self, local: LocalJob, lm: LanguageModel) -> None:
        step = lm.training_state.global_step
        data = lm.to_bytes(resumable=True)

        def write() -> None:
            self.store.put_blob(job_checkpoint_key(local.job_id), data, fence=local.fence)
            self._update(local.job_id, local.fence, checkpoint_step=step)
            event = {"type": "checkpoint", "time": time.time(), "step": step}
            self.store.append_event(local.job_id, event, fence=local.fence)

        # A store outage skips this checkpoint; training goes on and the next one retries.
        skip_if_unavailable(write)

    def _set_state(self, local: LocalJob, state: str, error: str = "", model_version: int = 0):
        job_id = local.job_id
        fields: dict[str, Any] = {"state": state, "error": error}
        if model_version:
            fields["model_version"] = model_version
        self._update(job_id, local.fence, **fields)
        event = {
            "type": "state",
            "time": time.time(),
            "state": state,
            "error": error,
            "model_version": model_version,
        }
        self.store.append_event(job_id, event, fence=local.fence)
        log.info("job %s: %s%s", job_id, state, f" ({error})" if error else "")

    def _update(self, job_id: str, fence: Fence | None = None, **fields: Any) -> dict | None:
        """Change fields of the job record; a run passes its lease's fence."""

        def apply(job: dict | None) -> dict | None:
            if job is not None:
                job.update(fields, updated_at=time.time())
            return job

        return self.store.update(JOB, job_id, apply, fence=fence)
