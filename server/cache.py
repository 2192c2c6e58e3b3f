"""A bounded cache of loaded models, kept in step with the store.

``get(model_id)`` returns the model's current version, loading it on a miss. A cached entry
re-reads the model record at most every ``refresh_s`` seconds and loads the new version when
another job (on this server or another replica sharing the store) published one. A new
version whose checkpoint fails its checksum is refused with DATA_LOSS and the version
already loaded stays in service.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnlm.model import LanguageModel, SentenceScore
from rnnlm.model.checkpoint import CheckpointError
from rnnlm.model.scoring import SentenceInput, SequenceScores
from rnnlm.model.stopping import ShouldStop
from rnnlm.server.batcher import DynamicBatcher
from rnnlm.server.config import ServerConfig
from rnnlm.server.errors import DataLoss, FailedPrecondition, NotFound, Unavailable
from rnnlm.server.metrics import Metrics
from rnnlm.server.models import ModelRegistry, checkpoint_key
from rnnlm.server.records import ModelVersion

log = logging.getLogger("rnnlm.server")

LOAD_LOCK_STRIPES = 64


@dataclass
class LoadedModel:
    model_id: str
    version: int
    identity: str  # the checkpoint's sha256: a deleted and retrained model reuses numbers
    lm: LanguageModel
    # Gathers the per-token scoring (framed id sequences -> SequenceScores) across requests.
    batcher: DynamicBatcher[np.ndarray, SequenceScores] | None = None
    checked_at: float = field(default_factory=time.monotonic)
    bad_identity: str = ""  # a newer version that failed to load; not retried until it changes

    def score(
        self,
        sentences: Sequence[SentenceInput],
        should_stop: ShouldStop | None = None,
        **options: Any,
    ) -> list[SentenceScore]:
        """``LanguageModel.score`` with the network's part through the batcher; ``Stopped``
        once ``should_stop`` says the caller left (checked between batches)."""
        return self.lm.score(
            sentences, sequence_scorer=self.batcher, should_stop=should_stop, **options
        )

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()


class ModelCache:
    def __init__(self, registry: ModelRegistry, config: ServerConfig, metrics: Metrics) -> None:
        self.registry, self.config, self.metrics = registry, config, metrics
        self.refresh_s = config.cache_refresh_s  # tests set it to 0 to look again at once
        self._entries: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        # Striped, not one lock per id: ids come from clients, and a dict keyed by them
        # would grow with every unknown name anyone asks for.
        self._load_locks = [threading.Lock() for _ in range(LOAD_LOCK_STRIPES)]
        self.metrics.cache_models.set_function(lambda: len(self._entries))
        self.metrics.batch_queue.set_function(self.queued)

    def get(self, model_id: str) -> LoadedModel:
        with self._lock:
            entry = self._entries.get(model_id)
            if entry is not None:
                self._entries.move_to_end(model_id)
                if time.monotonic() - entry.checked_at < self.refresh_s:
                    self.metrics.cache_hits.inc()
                    return entry
            load_lock = self._load_locks[hash(model_id) % LOAD_LOCK_STRIPES]
        with load_lock:  # one load per model at a time; other callers wait for it
            return self._refresh(model_id)

    def queued(self) -> int:
        """Scoring requests waiting in the batchers of every loaded model."""
        with self._lock:
            entries = list(self._entries.values())
        return sum(e.batcher.queued() for e in entries if e.batcher is not None)

    def _refresh(self, model_id: str) -> LoadedModel:
        with self._lock:
            entry = self._entries.get(model_id)
        if entry is not None and time.monotonic() - entry.checked_at < self.refresh_s:
            return entry  # refreshed by the caller we waited for
        try:
            record = self.registry.get(model_id)
        except NotFound:
            self.evict(model_id)  # deleted, possibly by another replica
            raise
        except Unavailable as err:
            if entry is None:
                raise
            # Scoring needs no store: keep serving what is loaded until the store is back.
            log.warning("model %s: %s; serving cached version %d", model_id, err, entry.version)
            entry.checked_at = time.monotonic()
            return entry
        version = record.current_version
        if version == 0:
            active = record.active_job_id
            raise FailedPrecondition(
                f"model {model_id!r} has no version ready yet"
                + (f"; job {active!r} is training it" if active else "; train it first")
            )
        versions = sorted(record.versions, key=lambda v: -v.version)
        current = next(v for v in versions if v.version == version)
        if entry is not None and current.sha256 in (entry.identity, entry.bad_identity):
            entry.checked_at = time.monotonic()
            self.metrics.cache_hits.inc()
            return entry
        try:
            loaded = self._load(model_id, current)
        except (DataLoss, CheckpointError) as err:
            fallback = entry or self._load_previous(model_id, versions[1:])
            if fallback is None:
                raise DataLoss(f"model {model_id!r} version {version}: {err}") from None
            log.error(
                "model %s version %d cannot be loaded (%s); version %d stays in service",
                model_id,
                version,
                err,
                fallback.version,
            )
            fallback.bad_identity, fallback.checked_at = current.sha256, time.monotonic()
            if fallback is not entry:
                self._insert(fallback)
            return fallback
        self._insert(loaded)
        return loaded

    def _load_previous(self, model_id: str, older: list[ModelVersion]) -> LoadedModel | None:
        """The newest older version that loads (nothing cached to fall back on)."""
        for version in older:
            try:
                return self._load(model_id, version)
            except (DataLoss, CheckpointError) as err:
                log.error("model %s version %d: %s", model_id, version.version, err)
        return None

    def _load(self, model_id: str, record: ModelVersion) -> LoadedModel:
        started = time.perf_counter()
        version = record.version
        try:
            data = self.registry.store.get_blob(checkpoint_key(model_id, version))
            if data is None:
                raise DataLoss(f"the checkpoint of version {version} is missing from the store")
            lm = LanguageModel.from_bytes(data, device=self.config.device)
        except (DataLoss, CheckpointError):
            self.metrics.cache_loads.labels("data_loss").inc()
            raise
        self.metrics.cache_loads.labels("ok").inc()
        self._quantize(model_id, lm)
        elapsed = time.perf_counter() - started
        log.info("model %s version %d loaded in %.2fs (%s)", model_id, version, elapsed, lm)
        batcher: DynamicBatcher[np.ndarray, SequenceScores] | None = None
        if self.config.batching:
            batcher = DynamicBatcher(
                lm.sequence_scorer(self.config.batch_max_size),
                self.config.batch_max_size,
                self.config.batch_max_wait_ms / 1000,
                name=f"batcher-{model_id}-v{version}",
                on_batch=self.metrics.batch_size.observe,
                workers=self.config.batch_workers,
            )
        return LoadedModel(model_id, version, record.sha256, lm, batcher)

    def _quantize(self, model_id: str, lm: LanguageModel) -> None:
        """--quantize int8: the models it applies to (float32 gru/lstm on the CPU) serve int8."""
        if self.config.quantize != "int8":
            return
        refusal = lm.int8_refusal()
        if refusal is not None:
            log.info("model %s stays float: %s", model_id, refusal)
            return
        lm.quantize()

    def _insert(self, loaded: LoadedModel) -> None:
        with self._lock:
            old = self._entries.pop(loaded.model_id, None)
            self._entries[loaded.model_id] = loaded
            evicted = []
            while len(self._entries) > self.config.cache_size:
                evicted.append(self._entries.popitem(last=False)[1])
        for gone in [e for e in (old, *evicted) if e is not None]:
            gone.close()
            log.info("model %s version %d unloaded", gone.model_id, gone.version)

    def evict(self, model_id: str) -> None:
        with self._lock:
            entry = self._entries.pop(model_id, None)
        if entry is not None:
            entry.close()

    def close(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), OrderedDict()
        for entry in entries:
            entry.close()
