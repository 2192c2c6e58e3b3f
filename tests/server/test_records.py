"""Typed records (``records.py``) against real stores: records written by earlier versions,
under the old field names, still read (and are written back under the new ones); the wire
conversion copies fields; and the lease keeper, given only a store, a model registry and a
table of local runs, reaps a dead server's job on its own."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from rnnlm.server import convert
from rnnlm.server.errors import DataLoss
from rnnlm.server.job_states import ACTIVE, FINAL, JobState
from rnnlm.server.job_thread import update_job
from rnnlm.server.leases import LeaseKeeper
from rnnlm.server.listing import read_record, readable_records, shape_problem
from rnnlm.server.local_jobs import LocalJob, LocalJobs
from rnnlm.server.models import ModelRegistry
from rnnlm.server.records import (
    JobStateChange,
    Model,
    TrainingEvent,
    TrainingJob,
    TrainingProgress,
)
from rnnlm.server.store import JOB, MODEL, Store
from rnnlm.v1 import rnnlm_pb2 as pb

NOW = 1_700_000_000.0
OLD_PROGRESS = {  # as the server stored progress before the fields took the API's names
    **{"kind": "step", "epoch": 1, "epochs": 2, "step": 40, "total_steps": 80},
    **{"loss": 4.5, "perplexity": 90.0, "tokens_per_sec": 1234.5, "learning_rate": 0.002},
    **{"grad_norm": 0.7, "elapsed_s": 12.5, "eta_s": 12.0},
    **{"valid_loss": None, "valid_perplexity": None},
}


def old_job(job_id: str = "j-old", **changes: object) -> dict:
    """A job record as an earlier version wrote it."""
    record = {
        **{"job_id": job_id, "model_id": "m", "state": "completed", "error": ""},
        **{"request_id": "r-1", "corpus_id": "c-1", "created_at": NOW, "updated_at": NOW + 5},
        "model_config": {"cell": "gru", "vocab_size": 100, "hidden_size": 8},
        "train_config": {"epochs": 2, "clip": None, "device": "cpu"},
        **{"checkpoint_step": 80, "model_version": 1, "server_id": "s-1"},
        **{"heartbeat_at": NOW, "lease_generation": 1, "warnings": ["short corpus"]},
        **{"corpus": {"corpus_id": "c-1", "format": "auto"}, "arpa_id": ""},
        **{"cancel_requested": False, "progress": OLD_PROGRESS},
    }
    record.update(changes)
    return record


def test_an_old_format_job_record_still_reads(store: Store) -> None:
    store.create(JOB, "j-old", old_job())
    assert shape_problem(JOB, store.get(JOB, "j-old")) is None
    job = read_record(store, TrainingJob, "j-old")
    assert job is not None and job.state == JobState.COMPLETED
    assert job.model == {"cell": "gru", "vocab_size": 100, "hidden_size": 8}
    assert job.training["epochs"] == 2
    assert job.progress is not None
    assert (job.progress.tokens_per_second, job.progress.elapsed_seconds) == (1234.5, 12.5)
    assert job.progress.eta_seconds == 12.0
    msg = convert.job_to_pb(job)
    assert msg.state == pb.JOB_STATE_COMPLETED and msg.model.cell == "gru"
    assert msg.progress.tokens_per_second == 1234.5 and msg.progress.elapsed_seconds == 12.5
    assert not msg.progress.HasField("valid_loss")
    assert list(msg.warnings) == ["short corpus"] and msg.training.clip == 0  # None: off
    listing = readable_records(store, TrainingJob)
    assert [j.job_id for j in listing] == ["j-old"] and listing.unreadable == {}


def test_a_changed_record_is_written_under_the_new_names(store: Store) -> None:
    store.create(JOB, "j-old", old_job())
    update_job(store, "j-old", error="changed")
    stored = store.get(JOB, "j-old")
    assert stored is not None and stored["error"] == "changed"
    assert {"model", "training"} <= stored.keys()
    assert not {"model_config", "train_config"} & stored.keys()
    assert stored["progress"]["tokens_per_second"] == 1234.5
    assert not {"tokens_per_sec", "elapsed_s", "eta_s"} & stored["progress"].keys()
    assert stored["state"] == "completed" and stored["lease_generation"] == 1
    again = read_record(store, TrainingJob, "j-old")
    assert again is not None
    assert dataclasses.replace(again, error="", updated_at=NOW + 5) == TrainingJob.from_store(
        old_job()
    )


def test_old_and_new_records_of_the_wrong_shape_are_unreadable(store: Store) -> None:
    store.create(JOB, "j-lacks", {k: v for k, v in old_job().items() if k != "model_config"})
    store.create(JOB, "j-state", old_job("j-state", state="paused"))
    store.create(JOB, "j-progress", old_job("j-progress", progress={"kind": "step"}))
    for job_id in ("j-lacks", "j-state", "j-progress"):
        with pytest.raises(DataLoss, match="is damaged"):
            read_record(store, TrainingJob, job_id)
    assert sorted(readable_records(store, TrainingJob).unreadable) == [
        "j-lacks",
        "j-progress",
        "j-state",
    ]


def test_old_event_log_entries_read() -> None:
    progress = TrainingEvent.from_store({"type": "progress", "time": NOW, **OLD_PROGRESS})
    assert progress.progress is not None and progress.progress.tokens_per_second == 1234.5
    state = TrainingEvent.from_store(
        {"type": "state", "time": NOW, "state": "failed", "error": "x", "model_version": 0}
    )
    assert state.state == JobStateChange(JobState.FAILED, "x", 0)
    checkpoint = TrainingEvent.from_store({"type": "checkpoint", "time": NOW, "step": 7})
    for event in (progress, state, checkpoint):
        assert TrainingEvent.from_store(event.to_store()) == event
    assert convert.event_to_pb("1-0", checkpoint).checkpoint_step == 7
    assert convert.event_to_pb("1-0", state).state.state == pb.JOB_STATE_FAILED


def test_every_job_state_has_the_wire_value_of_its_name() -> None:
    assert set(JobState) == ACTIVE | FINAL and not ACTIVE & FINAL
    for state in JobState:
        assert convert.job_state_to_pb(state) == pb.JobState.Value(f"JOB_STATE_{state.name}")
        assert state == state.value and f"{state}" == state.value  # as stored and shown
    assert "running" in ACTIVE  # a state read from a document, as a plain str


def test_the_engine_progress_event_is_the_wire_message() -> None:
    progress = TrainingProgress.from_store(OLD_PROGRESS)
    fields = {f.name for f in dataclasses.fields(progress)}
    assert fields == {f.name for f in pb.TrainingProgress.DESCRIPTOR.fields}
    assert convert.progress_to_pb(progress).eta_seconds == 12.0


def test_a_model_record_reads_and_converts(store: Store) -> None:
    registry = ModelRegistry(store)
    registry.claim("m", "j-1")
    model = registry.get("m")
    assert model.active_job_id == "j-1" and model.current is None and model.next_version == 1
    assert convert.model_to_pb(model).state == pb.MODEL_STATE_TRAINING
    registry.release("m", "j-1")
    assert convert.model_to_pb(registry.get("m")).state == pb.MODEL_STATE_EMPTY
    stored = store.get(MODEL, "m")
    assert stored is not None and Model.from_store(stored) == registry.get("m")


def test_the_lease_keeper_reaps_a_dead_servers_job_on_its_own(store: Store) -> None:
    models, runs = ModelRegistry(store), LocalJobs()
    keeper = LeaseKeeper(store, models, runs, server_id="here", lease_s=1.0)
    dead = old_job("j-dead", state="running", heartbeat_at=time.time() - 60, progress=None)
    alive = old_job("j-alive", state="running", heartbeat_at=time.time() - 60, progress=None)
    store.create(JOB, "j-dead", dead)
    store.create(JOB, "j-alive", alive)
    models.claim("m", "j-dead")
    runs.add(LocalJob("j-alive", "m", stop=threading.Event(), generation=1))
    keeper.reap_all()
    reaped = read_record(store, TrainingJob, "j-dead")
    assert reaped is not None and reaped.state == JobState.INTERRUPTED
    assert "server s-1 stopped responding" in reaped.error
    assert models.get("m").active_job_id == ""
    [(_, event)] = store.read_events("j-dead")
    assert TrainingEvent.from_store(event).state == JobStateChange(
        JobState.INTERRUPTED, reaped.error
    )
    still = read_record(store, TrainingJob, "j-alive")  # a run of this process: not reaped
    assert still is not None and still.state == JobState.RUNNING
