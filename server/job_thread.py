"""The job thread: what runs a training job in this process. It trains, reports progress to
the job's record, its event log and the metrics, writes resumable checkpoints, publishes the
finished model as the next version and records the final state. Mixed into ``JobManager``
(``jobs.py``), which starts jobs and answers queries about them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rnnlm.model import Corpus, LanguageModel, ModelConfig, ProgressEvent, TrainConfig, train
from rnnlm.model.ngram import NgramModel

from .errors import FailedPrecondition, ServiceError
from .leases import (
    CANCELLED,
    FAILED,
    INTERRUPTED,
    RUNNING,
    LocalJob,
    retry_if_unavailable,
    skip_if_unavailable,
)
from .store import JOB

if TYPE_CHECKING:
    from .corpora import CorpusRegistry
    from .metrics import Metrics
    from .models import ModelRegistry
    from .store import Store

log = logging.getLogger("rnnlm.server")


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
    get: Callable[[str], dict[str, Any]]  # JobManager's

    def _start(
        self,
        job_id: str,
        model_id: str,
        resume: bool,
        corpus: Corpus | None = None,
        arpa: tuple[NgramModel, str] | None = None,
    ):
        if job_id in self._local:
            raise FailedPrecondition(f"training job {job_id!r} is already running here")
        local = LocalJob(job_id, model_id, threading.Event())
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
            self._set_state(job_id, RUNNING)
            lm = train(
                corpus,
                ModelConfig.from_dict(job["model_config"]),
                train_config,
                on_progress=lambda event: self._on_progress(model_id, job_id, event),
                on_checkpoint=lambda lm: local.lost or self._on_checkpoint(job_id, lm),
                should_stop=local.stop.is_set,
                resume_from=resume_from,
                ngram=ngram,
                ngram_source=ngram_source,
            )
            status = lm.training_state.status
            if lm.training_state.warnings:
                skip_if_unavailable(
                    lambda: self._update(job_id, warnings=list(lm.training_state.warnings))
                )
            if local.lost:
                return
            if status != CANCELLED:
                version = retry_if_unavailable(lambda: self.models.publish(model_id, lm, job_id))
                self.store.delete_blob(job_checkpoint_key(job_id))  # the version supersedes it
                final = (status, "", version)
            elif self._closing.is_set():
                final = (INTERRUPTED, "the server shut down; resume the job to continue", 0)
            else:
                final = (CANCELLED, "", 0)
        except Exception as err:
            user_error = isinstance(err, (ValueError, FloatingPointError, ServiceError))
            if not user_error:
                log.exception("job %s failed", job_id)
            final = (FAILED, str(err) if user_error else f"internal error: {err!r}", 0)
        finally:
            # Free the slot and the model before announcing the end, so that a client that
            # saw the final state can start the next job at once.
            with self._lock:
                self._local.pop(job_id, None)
            self.metrics.job_ended(model_id, "lost" if local.lost else final[0])
            if not local.lost:
                skip_if_unavailable(
                    lambda: retry_if_unavailable(lambda: self.models.release(model_id, job_id))
                )
                skip_if_unavailable(
                    lambda: retry_if_unavailable(lambda: self._set_state(job_id, *final))
                )

    def _on_progress(self, model_id: str, job_id: str, event: ProgressEvent) -> None:
        self.metrics.job_progress(
            model_id, event.step, event.total_steps, event.loss, event.tokens_per_sec
        )
        progress = dataclasses.asdict(event)
        skip_if_unavailable(
            lambda: self.store.append_event(job_id, {"type": "progress", **progress})
        )
        skip_if_unavailable(lambda: self._update(job_id, progress=progress))

    def _on_checkpoint(self, job_id: str, lm: LanguageModel) -> None:
        step = lm.training_state.global_step
        data = lm.to_bytes(resumable=True)

        def write() -> None:
            self.store.put_blob(job_checkpoint_key(job_id), data)
            self._update(job_id, checkpoint_step=step)
            self.store.append_event(job_id, {"type": "checkpoint", "step": step})

        # A store outage skips this checkpoint; training goes on and the next one retries.
        skip_if_unavailable(write)

    def _set_state(self, job_id: str, state: str, error: str = "", model_version: int = 0):
        fields: dict[str, Any] = {"state": state, "error": error}
        if model_version:
            fields["model_version"] = model_version
        self._update(job_id, **fields)
        event = {"type": "state", "state": state, "error": error, "model_version": model_version}
        self.store.append_event(job_id, event)
        log.info("job %s: %s%s", job_id, state, f" ({error})" if error else "")

    def _update(self, job_id: str, **fields: Any) -> dict[str, Any] | None:
        def apply(job: dict | None) -> dict | None:
            if job is not None:
                job.update(fields, updated_at=time.time())
            return job

        return self.store.update(JOB, job_id, apply)
