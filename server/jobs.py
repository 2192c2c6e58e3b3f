"""Training jobs: started by Train, run in background threads, recorded in the store.

A job's record (document kind ``job``, ``records.TrainingJob``) holds its state,
configuration and latest progress; its event log holds every progress report, checkpoint
and state change, so a client can watch it from any replica, late or from the start. A
running job checkpoints (resumable: weights, optimizer, RNG position) to
``jobs/{id}/checkpoint`` every N steps and when it stops; the finished model becomes the
model's next version.

``JobManager`` (here) answers the API's calls within the server's capacity. It builds the
two other parts, which share its table of the runs in this process (``local_jobs.py``): the
``JobRunner`` (``job_thread.py``) carries a run from its start to its final state, and the
``LeaseKeeper`` (``leases.py``) renews the runs' leases and marks the jobs of dead servers
INTERRUPTED, resumable from their last checkpoint under a new lease.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from rnnlm.model import ModelConfig, TrainConfig
from rnnlm.model.engines import check_device_available
from rnnlm.server.config import ServerConfig
from rnnlm.server.corpora import CorpusRegistry
from rnnlm.server.errors import (
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    quote,
)
from rnnlm.server.ids import check_corpus_id, check_job_id, check_model_id, check_request_id
from rnnlm.server.job_states import ACTIVE, FINAL, RESUMABLE, JobState
from rnnlm.server.job_thread import JobRunner, read_job, update_job
from rnnlm.server.leases import LeaseKeeper
from rnnlm.server.listing import Listing, readable_records, update_record
from rnnlm.server.local_jobs import LocalJobs
from rnnlm.server.metrics import Metrics
from rnnlm.server.models import ModelRegistry, estimate_parameters
from rnnlm.server.records import Corpus, TrainingEvent, TrainingJob
from rnnlm.server.retention import (
    check_resumable_checkpoint,
    delete_job,
    delete_jobs_of_model,
    forget_request_id,
)
from rnnlm.server.store import TRAIN_REQUEST, Store

log = logging.getLogger("rnnlm.server")


class JobManager:
    """Submits, answers about, cancels, resumes and deletes jobs; its settings come from
    ``ServerConfig`` (``app.py`` passes them)."""

    def __init__(
        self,
        store: Store,
        models: ModelRegistry,
        corpora: CorpusRegistry,
        config: ServerConfig,
        metrics: Metrics,
    ) -> None:
        self.store, self.models, self.corpora, self.config = store, models, corpora, config
        self.runs = LocalJobs()
        self.runner = JobRunner(
            store, models, corpora, metrics, self.runs, publish_retry_s=config.publish_retry_s
        )
        self.leases = LeaseKeeper(
            store, models, self.runs, server_id=config.server_id, lease_s=config.job_lease_s
        )
        self.leases.start()

    # -- queries -------------------------------------------------------------------------

    def get(self, job_id: str) -> TrainingJob:
        return self._current(read_job(self.store, check_job_id(job_id)))

    def list(self, model_id: str = "", limit: int = 100) -> Listing[TrainingJob]:
        """Newest first; ``.unreadable`` names the records that cannot be read (of any
        model: an unreadable record does not say whose it is)."""
        if not 0 <= limit <= 1000:
            raise InvalidArgument(f"limit must be in [0, 1000] (0: 100), got {limit}")
        listing = readable_records(self.store, TrainingJob)
        jobs = [self._current(j) for j in listing if not model_id or j.model_id == model_id]
        jobs.sort(key=lambda j: j.created_at, reverse=True)
        return Listing(jobs[: limit or 100], listing.unreadable)

    def _current(self, job: TrainingJob) -> TrainingJob:
        """The record, marked interrupted first if its server died, with what this server's
        run of the job does now when its state does not say it (e.g. waiting for the store
        to publish the trained model): known here even while the store takes no writes."""
        job = self.leases.reap_if_orphaned(job)
        local = self.runs.get(job.job_id)
        if local is None or not local.phase or job.lease_generation != local.generation:
            return job
        return dataclasses.replace(job, phase=local.phase)

    def watch(
        self, job_id: str, after: str | None, is_active: Callable[[], bool]
    ) -> Iterator[tuple[str, TrainingEvent]]:
        """The job's events after ``after``, live, until the job is in a final state and all
        its events were sent (or ``is_active`` turns false: the client went away)."""
        self.get(job_id)
        while is_active():
            try:
                events = self.store.read_events(job_id, after, timeout=1.0)
            except ValueError:
                raise InvalidArgument(
                    f"after_event_id {quote(after)} is not an event id of this job"
                ) from None
            if not events and self.get(job_id).state in FINAL:
                events = self.store.read_events(job_id, after)  # written just before the end
                if not events:
                    return
            for event_id, event in events:
                after = event_id
                yield event_id, TrainingEvent.from_store(event)

    # -- commands ------------------------------------------------------------------------

    def submit(
        self,
        model_id: str,
        corpus: dict[str, Any],
        model_config: ModelConfig,
        train_config: TrainConfig,
        request_id: str = "",
        arpa_id: str = "",
    ) -> TrainingJob:
        """Start a job (or return the one an earlier request with ``request_id`` started)."""
        check_model_id(model_id)
        check_request_id(request_id)
        try:
            return self._submit(model_id, corpus, model_config, train_config, request_id, arpa_id)
        except (FailedPrecondition, ResourceExhausted):
            # A twin of this request (a client retry racing its first attempt) may hold the
            # model or the slot: then its job is the answer, not an error.
            if request_id and (seen := self.store.get(TRAIN_REQUEST, request_id)) is not None:
                return self.get(seen["job_id"])
            raise

    def validate(
        self,
        model_id: str,
        corpus: dict[str, Any],
        model_config: ModelConfig,
        train_config: TrainConfig,
        arpa_id: str = "",
    ) -> TrainConfig:
        """What ``submit`` checks before it reads a corpus, without starting anything (a
        client checks its options this way before it uploads): the names, the options
        together, the size limit, the device, and the corpus source when one is given.
        Returns the training options as a job would run them."""
        check_model_id(model_id)
        train_config = self._checked_training(model_config, train_config)
        self.corpora.check_source(corpus, required=False)
        if arpa_id:
            self.corpora.get(check_corpus_id(arpa_id, "arpa_id"))
        return train_config

    def _checked_training(
        self, model_config: ModelConfig, train_config: TrainConfig
    ) -> TrainConfig:
        """The options checked against each other and this server (size, device), with the
        server's checkpoint interval filled in."""
        train_config.check_compatible(model_config)
        params = estimate_parameters(model_config)
        if params > self.config.max_model_params:
            raise ResourceExhausted(
                f"the model would have about {params:,} parameters; this server trains up to "
                f"{self.config.max_model_params:,} (--max-model-params): lower vocab_size, "
                "embed_size, hidden_size or num_layers"
            )
        _check_devices(model_config.cell, train_config, "{err}")
        if train_config.checkpoint_every is None:
            train_config = dataclasses.replace(
                train_config, checkpoint_every=self.config.checkpoint_every
            )
        return train_config

    def _submit(
        self,
        model_id: str,
        corpus: dict[str, Any],
        model_config: ModelConfig,
        train_config: TrainConfig,
        request_id: str,
        arpa_id: str,
    ) -> TrainingJob:
        if request_id and (seen := self.store.get(TRAIN_REQUEST, request_id)) is not None:
            try:
                return self.get(seen["job_id"])
            except NotFound:
                # Its job record is gone (a damaged record deleted, a crash between the
                # deletes): the id names nothing, so this request starts a new job.
                forget_request_id(self.store, request_id, seen["job_id"])
                log.info("request id %s named job %s, which is gone", request_id, seen["job_id"])
        train_config = self._checked_training(model_config, train_config)
        with self.runs.lock:  # cheap refusals first: a busy server should not parse a corpus
            self.leases.reap_model_owner(model_id)
            self._check_capacity()
        parsed = self.corpora.load(corpus)  # parse errors reach the caller, not the job
        arpa = self.corpora.load_arpa(arpa_id) if arpa_id else None
        job_id = "j-" + uuid.uuid4().hex[:16]
        now = time.time()
        job = TrainingJob(
            job_id=job_id,
            model_id=model_id,
            state=JobState.QUEUED,
            request_id=request_id,
            corpus=corpus,
            corpus_id=corpus.get("corpus_id") or f"server:{corpus.get('server_path')}",
            model=model_config.to_dict(),
            training=train_config.to_dict(),
            created_at=now,
            updated_at=now,
            arpa_id=arpa_id,
            server_id=self.config.server_id,
            heartbeat_at=now,
            lease_generation=1,  # the first run's lease
        )
        with self.runs.lock:  # the slot check and the claim go together
            self.leases.reap_model_owner(model_id)  # "model busy" says more than "server busy"
            self._check_capacity()
            # The job record exists before the request id points at it, so a concurrent
            # twin of this request (a client retry) always finds the job it is told about.
            self.store.create(TrainingJob.KIND, job_id, job.to_store())
            if request_id:
                first = self.store.create(TRAIN_REQUEST, request_id, {"job_id": job_id})
                if first["job_id"] != job_id:
                    self.store.delete(TrainingJob.KIND, job_id)
                    return self.get(first["job_id"])
                # Remembered for --request-id-ttl-s (retention.py), not for ever.
                expiry = time.time() + self.config.request_id_ttl_s
                self.store.expire_at(TRAIN_REQUEST, request_id, expiry)
            try:
                self.models.claim(model_id, job_id)
            except Exception:
                self.store.delete(TrainingJob.KIND, job_id)
                if request_id:
                    self.store.delete(TRAIN_REQUEST, request_id)
                raise
            self.runner.start(
                job_id, model_id, resume=False, generation=1, corpus=parsed, arpa=arpa
            )
        log.info("job %s: training model %s (%s)", job_id, model_id, model_config.cell)
        return self.get(job_id)

    def cancel(self, job_id: str) -> TrainingJob:
        job = self.get(job_id)
        if job.state in FINAL:
            raise FailedPrecondition(
                f"training job {job_id!r} already ended ({job.state}); nothing to cancel"
            )
        update_job(self.store, job_id, cancel_requested=True)
        local = self.runs.get(job_id)
        if local is not None:
            local.stop.set()  # polled before every step
        return self.get(job_id)

    def resume(self, job_id: str, epochs: int = 0) -> TrainingJob:
        job = self.get(job_id)
        if job.state not in RESUMABLE:
            hint = "it is still running" if job.state in ACTIVE else "train again instead"
            raise FailedPrecondition(
                f"training job {job_id!r} is {job.state}; only cancelled or interrupted "
                f"jobs resume ({hint})"
            )
        check_resumable_checkpoint(job, self.config.checkpoint_retention_s)
        self._check_inputs_kept(job)
        config = TrainConfig.from_dict(job.training)
        if epochs:
            if epochs < config.epochs:
                raise InvalidArgument(
                    f"epochs must be >= the job's {config.epochs} (or 0 to keep it), got {epochs}"
                )
            config = dataclasses.replace(config, epochs=epochs)
        # A data-parallel job may have run on more cores or GPUs than this server has.
        refusal = f"training job {job_id!r} cannot resume on this server: {{err}}; resume it "
        refusal += "on a server that has them, or with torchrun (docs/deployment.md)"
        _check_devices(ModelConfig.from_stored(job.model).cell, config, refusal)
        with self.runs.lock:
            # Marked interrupted by a replica while this server could not reach the store,
            # but its run is alive here (maybe holding a trained model that waits to
            # publish): taking the lease over would stop it, then fail to start ours.
            alive = self.runs.get(job_id)
            if alive is not None and not (alive.ending or alive.lost):
                raise FailedPrecondition(
                    f"training job {job_id!r} is still running on this server, which the "
                    "store did not hear from for a while; it reports again within "
                    f"{self.leases.heartbeat_s:g} s"
                )
            self._check_capacity()
            try:  # never recreate a model deleted since the job stopped
                self.models.claim(job.model_id, job_id, create=False)
            except NotFound:
                raise FailedPrecondition(
                    f"training job {job_id!r} trained model {job.model_id!r}, which was "
                    "deleted since; start a new training job instead"
                ) from None

            def take_over(current: TrainingJob | None) -> TrainingJob:
                # Checked again inside the update: of two concurrent resumes (on this
                # server or another), exactly one finds the job still resumable.
                if current is None or current.state not in RESUMABLE:
                    state = current.state if current else "gone"
                    raise FailedPrecondition(
                        f"training job {job_id!r} is {state}; it was resumed concurrently"
                    )
                if current.checkpoint_removed_at:  # by a sweep since our check above
                    check_resumable_checkpoint(current, self.config.checkpoint_retention_s)
                return dataclasses.replace(
                    current,
                    state=JobState.QUEUED,
                    error="",
                    cancel_requested=False,
                    server_id=self.config.server_id,
                    heartbeat_at=time.time(),
                    # A new lease: whatever the run before still tries to write is refused.
                    lease_generation=current.lease_generation + 1,
                    updated_at=time.time(),
                    training=config.to_dict(),
                )

            taken = update_record(self.store, TrainingJob, job_id, take_over)
            assert taken is not None  # take_over never deletes
            self.store.expire_events_at(job_id, None)  # running again: its log stays
            self.runner.start(job_id, job.model_id, resume=True, generation=taken.lease_generation)
        log.info("job %s: resuming from step %d", job_id, job.checkpoint_step)
        return self.get(job_id)

    def _check_inputs_kept(self, job: TrainingJob) -> None:
        """Refuse, before taking the job over, to resume a job whose uploaded corpus (or
        ARPA file) was deleted: its run would fail at once, and a failed job's checkpoint
        goes at the next sweep. Refused, it stays resumable: the same bytes uploaded again
        get the same id."""
        inputs = {"corpus": job.corpus.get("corpus_id"), "ARPA file": job.arpa_id}
        for what, corpus_id in inputs.items():
            if corpus_id and self.store.get(Corpus.KIND, corpus_id) is None:
                raise FailedPrecondition(
                    f"training job {job.job_id!r} cannot resume: its {what} {corpus_id} "
                    "was deleted; upload the same file again (it gets the same id), then resume"
                )

    def delete(self, job_id: str) -> dict[str, Any]:
        """Delete an ended job with its events, checkpoint and request id (retention.py);
        returns its stored record, or ``{"job_id", "damaged"}`` for a damaged record,
        which is removed as it is."""
        with contextlib.suppress(DataLoss):  # damaged: delete_job removes it as it is
            self.get(job_id)  # a job whose server died is marked interrupted first
        return delete_job(self.store, job_id)

    def delete_model(self, model_id: str) -> tuple[int, bool]:
        """Delete a model, its versions and its ended jobs; returns the versions deleted
        and whether the model's record was damaged (removed as it was)."""
        # A model still claimed by a job that ended (a server marking it interrupted was
        # cut off before freeing the model) is freed first, as Train does: else "cancel
        # the job" would be the answer, and cancelling an ended job is refused.
        with contextlib.suppress(FailedPrecondition, DataLoss):  # models.delete says why
            self.leases.reap_model_owner(check_model_id(model_id))
        versions = self.models.delete(model_id)
        delete_jobs_of_model(self.store, model_id, self.leases.reap_if_orphaned)
        return versions

    def running(self) -> int:
        """Jobs training on this server (not those only recording their end): what counts
        for capacity."""
        return sum(not run.ending for run in self.runs.runs())

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every local job at its next step; each checkpoints and is marked interrupted."""
        self.runs.closing.set()
        runs = self.runs.runs()
        for run in runs:
            run.stop.set()
        deadline = time.monotonic() + timeout
        for run in runs:
            if run.thread is not None:
                run.thread.join(max(0.0, deadline - time.monotonic()))

    def _check_capacity(self) -> None:
        if self.runs.closing.is_set():
            raise Unavailable("this server is shutting down; send the request to another one")
        limit = self.config.max_concurrent_jobs
        if (running := self.running()) >= limit:
            raise ResourceExhausted(
                f"this server already runs {running} training job(s), its limit "
                f"(--max-concurrent-jobs {limit}); try again when one ends"
            )


def _check_devices(cell: str, training: TrainConfig, refusal: str) -> None:
    """FailedPrecondition (``refusal``, the reason in place of {err}) for a device, or a
    number of processes, that is valid but that this server cannot honour."""
    try:
        check_device_available(cell, training.device, training.processes)
    except ValueError as err:
        raise FailedPrecondition(refusal.format(err=err)) from None
