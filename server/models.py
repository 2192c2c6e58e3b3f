"""The model registry: model records, versions and their checkpoints in the store.

A model record (document kind ``model``) holds its versions, newest last, and the current
version. Publishing writes the checkpoint blob and the vocabulary first and flips
``current_version`` last, in one atomic update, so a reader never meets a version whose
checkpoint is not all there.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import time
from typing import Any

from rnnlm.model import LanguageModel, ModelConfig
from rnnlm.model.ngram import NgramModel
from rnnlm.server.config import ServerConfig
from rnnlm.server.errors import DataLoss, FailedPrecondition, NotFound
from rnnlm.server.ids import check_model_id
from rnnlm.server.listing import (
    Listing,
    read_record,
    readable_records,
    shape_problem,
    update_record,
)
from rnnlm.server.records import Model, ModelVersion
from rnnlm.server.store import MODEL, Fence, StaleWrite, Store

log = logging.getLogger("rnnlm.server")


GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def estimate_parameters(config: ModelConfig) -> int:
    """Weights of a model (close enough to refuse what would exhaust the server's memory)."""
    v, e, h, gates = config.vocab_size, config.embed_size, config.hidden_size, GATES[config.cell]
    inputs = e if config.cell != "rnn" else v  # the NumPy RNN reads one-hot words
    recurrent = gates * h * (inputs + h + 2) + (config.num_layers - 1) * gates * h * (2 * h + 2)
    embedding = v * e if config.cell != "rnn" else 0
    output = (0 if config.tie_weights else v * h) + v
    return embedding + recurrent + output


def being_trained(
    model_id: str,
    job_id: str,
    then: str = "wait for it to end or cancel it before training the model again",
) -> FailedPrecondition:
    """The refusal of a change to a model that a job trains; ``then`` says what to do."""
    return FailedPrecondition(f"model {model_id!r} is being trained by job {job_id!r}; {then}")


def not_found(model_id: str) -> NotFound:
    return NotFound(f"model {model_id!r} does not exist")


def checkpoint_key(model_id: str, version: int) -> str:
    return f"models/{model_id}/{version}/checkpoint"


def vocab_key(model_id: str, version: int) -> str:
    return f"models/{model_id}/{version}/vocab"


class ModelRegistry:
    def __init__(self, store: Store, keep_versions: int = ServerConfig.keep_versions) -> None:
        self.store = store
        self.keep_versions = keep_versions

    def get(self, model_id: str) -> Model:
        record = read_record(self.store, Model, check_model_id(model_id))
        if record is None:
            raise not_found(model_id)
        return record

    def list(self) -> Listing[Model]:
        """Sorted by id; ``.unreadable`` names the records that cannot be read."""
        listing = readable_records(self.store, Model)
        return Listing(sorted(listing, key=lambda r: r.model_id), listing.unreadable)

    def vocabulary(self, model_id: str, version: int) -> builtins.list[str]:  # not .list
        data = self.store.get_blob(vocab_key(model_id, version))
        if data is None:
            raise NotFound(f"model {model_id!r} version {version} has no stored vocabulary")
        return json.loads(data)["vocab"]

    def load(self, model_id: str, version: int = 0) -> LanguageModel:
        """A version (0: the current one) read from the store, on the CPU."""
        record = self.get(model_id)
        version = version or record.current_version
        if version == 0:
            raise FailedPrecondition(f"model {model_id!r} has no version yet; train it first")
        if record.version(version) is None:
            kept = ", ".join(str(v.version) for v in record.versions)
            raise NotFound(f"model {model_id!r} has no version {version}; it has {kept}")
        data = self.store.get_blob(checkpoint_key(model_id, version))
        if data is None:
            raise DataLoss(f"the checkpoint of model {model_id!r} version {version} is missing")
        return LanguageModel.from_bytes(data, device="cpu")

    def attach_ngram(
        self, model_id: str, ngram: NgramModel, source: str, neural_weight: float | None
    ) -> Model:
        """Publish the current version again with ``ngram`` as its n-gram part."""
        record = self.get(model_id)
        if record.active_job_id:
            then = "attach the n-gram model when the job has ended"
            raise being_trained(model_id, record.active_job_id, then)
        version = record.current_version
        lm = self.load(model_id, version)
        lm.attach_ngram(ngram, source, neural_weight)  # seconds: tunes on held-out text
        current = record.current
        assert current is not None  # load() found it
        self.publish(model_id, lm, current.job_id, replaces=version)
        return self.get(model_id)

    def claim(self, model_id: str, job_id: str, create: bool = True) -> None:
        """Mark ``job_id`` as the one job training the model (creating the record, unless
        ``create`` is false: then NotFound when the model was deleted)."""

        def claim_fn(record: Model | None) -> Model:
            if record is None and not create:
                raise NotFound(f"model {model_id!r} was deleted")
            record = record or Model.new(model_id, time.time())
            active = record.active_job_id
            if active and active != job_id:
                raise being_trained(model_id, active)
            record.active_job_id = job_id
            record.updated_at = time.time()
            return record

        update_record(self.store, Model, model_id, claim_fn)

    def release(self, model_id: str, job_id: str, fence: Fence | None = None) -> None:
        """The job ended: the model is free to train again. A job's run passes its lease's
        fence: a run that was taken over must not free the model its successor holds."""

        def release_fn(record: Model | None) -> Model | None:
            if record is not None and record.active_job_id == job_id:
                record.active_job_id = ""
            return record

        update_record(self.store, Model, model_id, release_fn, fence)

    def publish(
        self,
        model_id: str,
        lm: LanguageModel,
        job_id: str,
        replaces: int | None = None,
        fence: Fence | None = None,
        reserved: dict[str, Any] | None = None,
    ) -> int:
        """Store ``lm`` as the model's next version and make it current; returns the version.
        With ``replaces``, only while that version is still current and no job trains the
        model (an attach must not undo a delete nor hide a newer version). With ``fence``
        (a job run's lease), every write only while it holds, else ``StaleWrite``. A caller
        that retries after ``Unavailable`` passes the same ``reserved`` dict each time: the
        attempts then share one version number and the checkpoint's bytes."""
        reserved = {} if reserved is None else reserved

        def checked(record: Model | None) -> Model:
            """The record to change (new when there is none), if ``replaces`` allows."""
            if replaces is None:
                return record or Model.new(model_id, time.time())
            if record is None:
                raise NotFound(f"model {model_id!r} was deleted meanwhile; nothing published")
            if record.active_job_id or record.current_version != replaces:
                raise FailedPrecondition(
                    f"model {model_id!r} changed meanwhile (a job or another call); "
                    "nothing published: try again"
                )
            return record

        def reserve(record: Model | None) -> Model:
            record = checked(record)
            reserved["version"] = record.next_version
            record.next_version += 1
            return record

        if "version" not in reserved:
            update_record(self.store, Model, model_id, reserve, fence)
        version = reserved["version"]
        if "checkpoint" not in reserved:
            reserved["checkpoint"] = lm.to_bytes()
        try:
            info = self.store.put_blob(
                checkpoint_key(model_id, version), reserved["checkpoint"], fence=fence
            )
            vocab = {"vocab": lm.vocab.to_json(), "tokenizer": lm.tokenizer.to_json()}
            self.store.put_blob(vocab_key(model_id, version), json.dumps(vocab).encode(), fence)
        except StaleWrite:
            self._delete_version_blobs(model_id, version)
            raise
        state = lm.training_state
        history = state.history if state else []
        valid = [h["valid_perplexity"] for h in history if h.get("valid_perplexity") is not None]
        entry = ModelVersion(
            version=version,
            created_at=time.time(),
            job_id=job_id,
            checkpoint_bytes=info.size,
            sha256=info.sha256,
            training_status=state.status if state else "",
            epochs_trained=state.epoch if state else 0,
            train_loss=history[-1]["train_loss"] if history else 0.0,
            valid_perplexity=min(valid) if valid else None,
            model_config=lm.config.to_dict(),
            train_config=lm.train_config.to_dict() if lm.train_config else {},
            vocabulary_size=len(lm.vocab),
        )
        entry = _with_ngram_summary(entry, lm)
        dropped: list[int] = []

        def flip(record: Model | None) -> Model:
            record = checked(record)
            dropped.clear()  # flip may run again under contention
            if record.version(version) is not None:
                return record  # an earlier attempt flipped it; only its reply was lost
            versions = [*record.versions, entry]
            dropped.extend(v.version for v in versions[: -self.keep_versions])
            record.versions = versions[-self.keep_versions :]
            record.current_version = version
            record.updated_at = time.time()
            return record

        try:
            update_record(self.store, Model, model_id, flip, fence)
        except (NotFound, FailedPrecondition, StaleWrite):
            self._delete_version_blobs(model_id, version)
            raise
        for old in dropped:
            self._delete_version_blobs(model_id, old)
        log.info("model %s: version %d published (%d bytes)", model_id, version, info.size)
        return version

    def delete(self, model_id: str) -> tuple[int, bool]:
        """Delete the model and every version; returns how many versions there were, and
        whether the record was damaged (removed as it was, with every blob under the model's
        prefix: a damaged record cannot say which versions it had, nor whether a job trains
        it)."""
        check_model_id(model_id)
        deleted: dict[str, Any] = {}

        def remove(current: dict | None) -> None:
            # Checked inside the update, so a job claiming the model meanwhile is respected.
            if current is None:
                raise not_found(model_id)
            if problem := shape_problem(MODEL, current):
                deleted["damaged"] = problem
                return None
            record = Model.from_store(current)
            if record.active_job_id:
                then = "cancel the job before deleting the model"
                raise being_trained(model_id, record.active_job_id, then)
            deleted["versions"] = [v.version for v in record.versions]
            return None

        try:
            self.store.update(MODEL, model_id, remove)
        except DataLoss as err:  # not JSON: removed as it is
            self.store.delete(MODEL, model_id)
            deleted["damaged"] = str(err)
        if "damaged" in deleted:
            blobs = self.store.list_blobs(f"models/{model_id}/")
            for key in blobs:
                self.store.delete_blob(key)
            log.warning(
                "model %s: its damaged record was deleted, with %d blob(s) under it (%s)",
                *(model_id, len(blobs), deleted["damaged"]),
            )
            return len({key.split("/")[2] for key in blobs}), True
        for version in deleted["versions"]:
            self._delete_version_blobs(model_id, version)
        log.info("model %s deleted (%d versions)", model_id, len(deleted["versions"]))
        return len(deleted["versions"]), False

    def _delete_version_blobs(self, model_id: str, version: int) -> None:
        self.store.delete_blob(checkpoint_key(model_id, version))
        self.store.delete_blob(vocab_key(model_id, version))


def _with_ngram_summary(entry: ModelVersion, lm: LanguageModel) -> ModelVersion:
    """The version with its n-gram part as its record shows it (none: the defaults, weight
    1, the network alone)."""
    part = lm.ngram
    if part is None:
        return entry
    valid = part.valid_perplexity
    return dataclasses.replace(
        entry,
        neural_weight=part.neural_weight,
        ngram_order=part.model.order,
        ngram_source=part.source,
        ngram_valid_perplexity=valid.get("ngram"),
        interpolated_valid_perplexity=valid.get("interpolated"),
    )
