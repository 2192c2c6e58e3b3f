"""Prometheus metrics of one server (prometheus-client).

Each ``RnnlmServer`` has its own registry, so several servers in one process (the tests,
``rnnlm demo``) do not collide; ``serve(address)`` exposes it at ``http://address/metrics``.
Labels stay bounded: RPC method and status code are fixed sets; per-model gauges exist
only while a job trains that model (one job per model at a time) and go when it ends.

With ``--processes`` above 1 every server process writes its values to files that the
parent's one endpoint adds up (prometheus-client's multiprocess mode, ``processes.py``):
counters and histograms are summed, and each gauge says how (``multiprocess_mode``: live
processes' sum, their minimum, or the latest value); a gauge read at scrape time is read
every ``SAMPLE_S`` instead, and a per-model gauge stays until its process exits (files
cannot forget one series). ``rnnlm_process_requests_total{pid}`` shows which processes serve.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
    values,
)

log = logging.getLogger("rnnlm.server")

# Latency buckets from 1 ms (a cached score) to 10 min (a long stream).
LATENCY_BUCKETS: tuple[float, ...]  # of any length: grown by the line after next
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENCY_BUCKETS += (60, 300, 600)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# Multiprocess mode: how often a gauge of state (``set_function``) is read into its file.
SAMPLE_S = 1.0
# How a gauge of several processes adds up, over the live ones: sum, minimum or latest value.
LiveMode = Literal["livesum", "livemin", "livemostrecent"]


def multiprocess() -> bool:
    """Whether metric values live in files (``PROMETHEUS_MULTIPROC_DIR`` was set when
    prometheus-client was imported), for a parent process to add up."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Sampler:
    """Multiprocess mode: reads the gauges of state every SAMPLE_S and writes their values,
    since a scrape reads files and calls no function in this process."""

    def __init__(self) -> None:
        self._reads: list[tuple[Gauge, Callable[[], float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)

    def add(self, gauge: Gauge, read: Callable[[], float]) -> None:
        self._reads.append((gauge, read))
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def _run(self) -> None:
        while True:
            for gauge, read in list(self._reads):
                try:
                    gauge.set(read())
                except Exception as err:  # a metric must not take the server down
                    log.debug("metrics sampler: %s", err)
            if self._stop.wait(SAMPLE_S):
                return

    def close(self) -> None:
        self._stop.set()


class StateGauge(Gauge):
    """A Gauge whose ``set_function`` works in multiprocess mode too (through a Sampler)."""

    sampler: Sampler | None = None

    def set_function(self, f: Callable[[], float]) -> None:
        if self.sampler is None:
            super().set_function(f)
        else:
            self.sampler.add(self, f)


class Metrics:
    """The server's metrics. The parts report events through the methods below; gauges of
    state (models loaded, queue depth, store up) read it at scrape time (``set_function``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess = multiprocess()
        self._sampler = Sampler() if self.multiprocess else None
        counter = functools.partial(Counter, registry=self.registry)
        gauge = self._gauge
        histogram = functools.partial(Histogram, registry=self.registry)
        self.requests = counter(
            "rnnlm_requests", "RPCs finished, by method and status code", ["method", "code"]
        )
        self.process_requests = counter(
            "rnnlm_process_requests",
            "RPCs finished by each server process (pid; --processes)",
            ["pid"],
        ).labels(str(os.getpid()))
        self.latency = histogram(
            "rnnlm_request_duration_seconds",
            "RPC duration (streams: until the last message)",
            ["method"],
            buckets=LATENCY_BUCKETS,
        )
        self.in_flight = gauge("rnnlm_requests_in_flight", "RPCs being handled", ["method"])
        self.scored = counter("rnnlm_scored_sentences", "Sentences scored")
        self.generated = counter("rnnlm_generated_tokens", "Tokens streamed by Generate")
        self.abandoned = counter(  # reason: deadline or cancelled (deadlines.py)
            "rnnlm_work_abandoned",
            "Calls whose work stopped unfinished because the client's deadline passed or it "
            "cancelled, by method and reason",
            ["method", "reason"],
        )
        self.batch_size = histogram(
            "rnnlm_batch_size", "Sentences per batched scoring forward pass", buckets=BATCH_BUCKETS
        )
        self.batch_queue = gauge("rnnlm_batch_queue_depth", "Scoring requests waiting for a batch")
        self.cache_hits = counter(
            "rnnlm_model_cache_hits", "Scoring/generation calls served by a loaded model"
        )
        self.cache_loads = counter(
            "rnnlm_model_cache_loads", "Model versions loaded from the store, by result", ["result"]
        )
        self.cache_models = gauge("rnnlm_model_cache_models", "Models loaded")
        self.jobs_running = gauge(  # read from the job manager at scrape time
            "rnnlm_training_jobs_running", "Training jobs running on this server"
        )
        self.jobs_finished = counter(
            "rnnlm_training_jobs_finished",
            "Training jobs ended on this server, by final state",
            ["state"],
        )
        # A trained model waits in memory while the store is unavailable (--publish-retry-s).
        self.jobs_unpublished = gauge(
            "rnnlm_training_jobs_unpublished",
            "Trained models of this server's jobs waiting for the store to publish them",
        )
        self.publish_retries = counter(
            "rnnlm_publish_retries",
            "Attempts to publish a trained model that failed: the store was unavailable",
        )
        self.training_steps = counter(
            "rnnlm_training_steps", "Optimiser steps taken by this server's jobs"
        )
        # One process trains a model at a time: its latest value is the model's.
        latest = functools.partial(gauge, labels=["model_id"], mode="livemostrecent")
        self.training_step = latest(
            "rnnlm_training_step", "Global step of the job training a model"
        )
        self.training_total_steps = latest(
            "rnnlm_training_total_steps", "Steps the job training a model will take"
        )
        self.training_loss = latest(
            "rnnlm_training_loss", "Latest training loss (nats per token) of a model's job"
        )
        self.training_speed = latest(
            "rnnlm_training_tokens_per_second", "Training speed of a model's job"
        )
        self.streams_open = gauge("rnnlm_streams_open", "Watch/Generate streams open")
        # Several processes: 0 when any of them cannot reach the store.
        self.store_up = gauge("rnnlm_store_up", "1 when the store answers, else 0", mode="livemin")
        self._last_step: dict[str, int] = {}
        self._lock = threading.Lock()
        self._http: Any = None

    def _gauge(
        self, name: str, text: str, labels: list[str] | None = None, mode: LiveMode = "livesum"
    ) -> StateGauge:
        """A gauge; ``mode``: how the values of several processes add up (the live ones')."""
        made = StateGauge(name, text, labels or [], registry=self.registry, multiprocess_mode=mode)
        made.sampler = self._sampler
        return made

    # -- events ----------------------------------------------------------------------------

    def observe_call(self, method: str, code: str, seconds: float) -> None:
        self.requests.labels(method, code).inc()
        self.process_requests.inc()
        self.latency.labels(method).observe(seconds)

    def job_started(self, model_id: str, start_step: int) -> None:
        """A job began (or resumed at ``start_step``): count its steps from there."""
        with self._lock:
            self._last_step[model_id] = start_step

    def job_progress(self, model_id: str, step: int, total: int, loss: float, speed: float):
        with self._lock:
            previous = self._last_step.get(model_id, step)
            self._last_step[model_id] = step
        self.training_steps.inc(max(0, step - previous))
        self.training_step.labels(model_id).set(step)
        self.training_total_steps.labels(model_id).set(total)
        self.training_loss.labels(model_id).set(loss)
        self.training_speed.labels(model_id).set(speed)

    def job_ended(self, model_id: str, state: str) -> None:
        self.jobs_finished.labels(state).inc()
        with self._lock:
            self._last_step.pop(model_id, None)
        if self.multiprocess:
            return  # files keep every series (see the module's docstring)
        for gauge in (
            self.training_step,
            self.training_total_steps,
            self.training_loss,
            self.training_speed,
        ):
            with contextlib.suppress(KeyError):  # no progress was reported
                gauge.remove(model_id)

    # -- the endpoint ---------------------------------------------------------------------

    def serve(self, address: str) -> int:
        """Serve ``/metrics`` on ``host:port`` (port 0: any free one); returns the port."""
        self._http = serve_registry(self.registry, address)
        return int(self._http.server_port)

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
        if self._http is not None:
            stop_endpoint(self._http)
            self._http = None


def serve_registry(registry: CollectorRegistry, address: str) -> Any:
    """Serve ``registry`` at ``http://address/metrics`` (port 0: any free one); the HTTP
    server (its ``server_port``), for ``stop_endpoint``."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    http, _thread = start_http_server(int(port), host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", host, http.server_port)
    return http


def stop_endpoint(http: Any) -> None:
    http.shutdown()
    http.server_close()
