"""Assemble and run the server: store, registries, job manager, model cache, the gRPC service
with health and reflection, TLS, the API key check and the metrics endpoint. ``RnnlmServer``
is what tests and ``rnnlm demo`` start in-process; ``main`` is ``rnnlm serve``.

Shutdown (SIGTERM/SIGINT, or ``stop()``): health turns NOT_SERVING at once (health watchers,
such as a load balancer, are told); the server stops listening and sends GOAWAY, so clients
take new calls to another replica and any that still arrive get UNAVAILABLE; the calls in
flight finish, for at most the grace period; meanwhile the training jobs stop at their next
step, write a checkpoint and are marked interrupted (any replica can resume them). Then the
gRPC server, the model cache and the store close.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rnnlm.server.cache import ModelCache
from rnnlm.server.config import ServerConfig
from rnnlm.server.corpora import CorpusRegistry
from rnnlm.server.errors import StoreMisconfigured, Unavailable
from rnnlm.server.interceptors import ServiceInterceptor
from rnnlm.server.jobs import JobManager
from rnnlm.server.metrics import Metrics
from rnnlm.server.models import ModelRegistry
from rnnlm.server.processes import report_serving, supervise
from rnnlm.server.security import ApiKeyCheck, server_credentials
from rnnlm.server.servicer import LanguageModelServicer
from rnnlm.server.store import open_store
from rnnlm.server.sweeper import RetentionPolicy, Sweeper
from rnnlm.v1 import rnnlm_pb2, rnnlm_pb2_grpc

if TYPE_CHECKING:
    from rnnlm.server.http import HttpFrontEnd

log = logging.getLogger("rnnlm.server")

SERVICE_NAME = rnnlm_pb2.DESCRIPTOR.services_by_name["LanguageModelService"].full_name
STORE_CHECK_S = 5.0
# A job stops at its next step and then writes a checkpoint; past the grace it gets this
# much longer before the process exits without it (its lease then expires elsewhere).
JOB_STOP_EXTRA_S = 1.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SIGNAL_POLL_S = 0.1


class RnnlmServer:
    """One server process' worth of parts. ``start()`` returns the bound port."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        if config.torch_threads:
            import torch  # only when asked: the NumPy engine needs no torch

            torch.set_num_threads(config.torch_threads)
        self.metrics = Metrics()
        self.api_key = ApiKeyCheck(config.api_key, config.require_key_for_reads)
        self.interceptor = ServiceInterceptor(self.metrics, self.api_key)
        self.store = open_store(config.redis_url, config.store_dir, prefix=config.redis_prefix)
        self.models = ModelRegistry(self.store, config.keep_versions)
        self.corpora = CorpusRegistry(self.store, config.max_corpus_bytes, config.corpus_dir)
        self.jobs = JobManager(self.store, self.models, self.corpora, config, self.metrics)
        self.sweeper = Sweeper(
            self.store,
            RetentionPolicy(
                config.event_retention_s, config.checkpoint_retention_s, config.orphan_grace_s
            ),
            config.sweep_interval_s,
        )
        self.cache = ModelCache(self.models, config, self.metrics)
        self.metrics.jobs_running.set_function(self.jobs.running)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._stopped = threading.Event()
        self._serving: bool | None = None
        self._grpc = self._build_grpc_server()
        self.port = 0
        self.metrics_port: int | None = None
        self.http: HttpFrontEnd | None = None  # with --http-address, once started
        self.http_port: int | None = None

    def _build_grpc_server(self) -> grpc.Server:
        size = self.config.max_message_bytes
        server = grpc.server(
            futures.ThreadPoolExecutor(self.config.workers, thread_name_prefix="rpc"),
            interceptors=[self.interceptor],
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
                # gRPC's default on Linux, stated: --processes puts several servers on the port.
                ("grpc.so_reuseport", 1),
            ],
            maximum_concurrent_rpcs=self.config.max_concurrent_calls,
        )
        self.interceptor.watch_overload(grpc_overloaded(server))
        servicer = LanguageModelServicer(
            self.config,
            self.models,
            self.corpora,
            self.jobs,
            self.cache,
            self.metrics,
            draining=lambda: self.interceptor.draining,
        )
        self.serving = servicer.serving  # the HTTP front end serves through it too
        rnnlm_pb2_grpc.add_LanguageModelServiceServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if self.config.reflection:
            names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
            reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
        return server

    @property
    def address(self) -> str:
        host = self.config.address.rpartition(":")[0]
        return f"{host}:{self.port}"

    def start(self) -> int:
        cfg = self.config
        credentials = server_credentials(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
        try:
            if credentials is None:
                self.port = self._grpc.add_insecure_port(cfg.address)
            else:
                self.port = self._grpc.add_secure_port(cfg.address, credentials)
        except RuntimeError as err:  # grpcio raises where older versions returned 0
            raise OSError(f"cannot listen on {cfg.address}: {err}") from None
        if self.port == 0:
            raise OSError(f"cannot listen on {cfg.address}")
        try:
            self.store.ping()
        except StoreMisconfigured:
            raise  # wrong password or CA: retrying will not help, so do not start
        except Unavailable:
            pass  # an outage: start NOT_SERVING; the store check retries
        if cfg.metrics_address:
            try:
                self.metrics_port = self.metrics.serve(cfg.metrics_address)
            except OSError as err:
                raise OSError(f"cannot serve metrics on {cfg.metrics_address}: {err}") from None
        if cfg.http_address:
            from rnnlm.server.http import HttpFrontEnd  # FastAPI is imported only for it

            self.http = HttpFrontEnd(
                cfg,
                self.serving,
                self.api_key,
                draining=lambda: self.interceptor.draining,
                healthy=lambda: bool(self._serving),
            )
            self.http_port = self.http.start()
        self._grpc.start()
        self.check_store()
        threading.Thread(target=self._watch_store, name="store-health", daemon=True).start()
        self.sweeper.start()
        tls = "off" if credentials is None else "mutual" if cfg.tls_client_ca else "on"
        log.info(
            "rnnlm serving on %s (store: %s, device: %s, TLS %s, API key %s, reflection %s, "
            "server id %s)",
            self.address,
            self.store.describe(),
            cfg.device,
            tls,
            ("required for every call" if cfg.require_key_for_reads else "required for changes")
            if cfg.api_key
            else "off",
            "on" if cfg.reflection else "off",
            cfg.server_id,
        )
        if self.http is not None:
            log.info("OpenAI-compatible HTTP API on %s (port %d)", cfg.http_address, self.http_port)
        return self.port

    def _set_serving(self, serving: bool) -> None:
        """Health and ``rnnlm_store_up``: the server serves while its store answers."""
        if serving == self._serving:  # each health.set() sends every health watcher a message
            return
        self._serving = serving
        self.metrics.store_up.set(serving)
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def check_store(self) -> None:
        try:
            self.store.ping()
        except Unavailable as err:
            log.error("health NOT_SERVING: %s", err.detail or err)
            self._set_serving(False)
        else:
            self._set_serving(True)

    def _watch_store(self) -> None:
        while not self._stopped.wait(STORE_CHECK_S):
            self.check_store()

    def stop(self, grace: float | None = None) -> None:
        """Shut down gracefully (see the module docstring); ``grace`` defaults to
        ``config.shutdown_grace_s``. Returns when everything is closed."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.shutdown_grace_s if grace is None else grace
        deadline = time.monotonic() + grace
        self.health.enter_graceful_shutdown()  # NOT_SERVING to health watchers, for good
        self.interceptor.start_draining()
        # gRPC stops listening and sends GOAWAY: clients open new calls on another replica
        # (or get UNAVAILABLE), while the calls in flight go on.
        self._grpc.stop(grace)
        if self.http is not None:  # stops listening; its calls in flight go on
            self.http.stop(grace)
        log.info("shutting down: calls in flight have %.1fs to finish", grace)
        jobs = threading.Thread(target=self.jobs.shutdown, args=(grace,), name="jobs-stop")
        jobs.start()
        if self.interceptor.wait_idle(grace):
            log.info("the calls in flight have ended")
        else:
            log.warning("grace period over: cancelling the calls still in flight")
        if self.http is not None:
            self.http.join(max(0.0, deadline - time.monotonic()) + JOB_STOP_EXTRA_S)
        # What is left is cancelled now: calls over the grace, and streams that are not ours
        # and never end by themselves (a load balancer's health watch).
        self._grpc.stop(0).wait()
        jobs.join(max(0.0, deadline - time.monotonic()) + JOB_STOP_EXTRA_S)
        if jobs.is_alive():
            log.warning("a training job did not stop in time; its lease will expire")
        self.sweeper.stop()
        self.cache.close()
        self.metrics.close()
        self.store.close()
        log.info("stopped")

    def wait(self) -> None:
        self._grpc.wait_for_termination()


def grpc_overloaded(server: grpc.Server) -> Callable[[], bool]:
    """Whether ``server`` is at its ``maximum_concurrent_rpcs``, for the interceptor to count
    the calls gRPC refuses over it (no handler sees them). The interceptor runs under the lock
    of gRPC's call count, just after gRPC compared it with the limit, so reading the same two
    numbers gives the same answer. They are grpcio's private state: without them (another
    grpcio) such calls are refused as before, but not counted (a metrics test notices).
    """
    state: Any = getattr(server, "_state", None)  # grpcio private: no types
    if not (hasattr(state, "active_rpc_count") and hasattr(state, "maximum_concurrent_rpcs")):
        log.warning("this grpcio hides its call count: calls it refuses are not in the metrics")
        return lambda: False

    def overloaded() -> bool:
        limit = state.maximum_concurrent_rpcs
        return limit is not None and state.active_rpc_count >= limit

    return overloaded


def main(argv: Sequence[str] | None = None) -> int:
    """``rnnlm serve``: run until SIGINT or SIGTERM, then stop gracefully; exit status 0.
    A second signal during the shutdown exits at once (status 1)."""
    config = ServerConfig.from_args(argv)
    # Before torch starts its OpenMP pool: idle pool threads sleep instead of spinning, so
    # they leave the cores to the gRPC threads between products (rescoring through the
    # service on 2 cores: 553 -> 853 hypotheses/s; in-process scoring is unchanged).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if config.processes > 1:  # a parent that runs and watches that many servers
        return supervise(config, argv)
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)

    # Python handlers, not sigwait: threads that exist before any mask could be set (the BLAS
    # pool numpy starts on import) would otherwise take SIGTERM with its default action,
    # killing the process. A handler always runs in the main thread, so it polls.
    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        server = RnnlmServer(config)
        try:
            server.start()
        except (StoreMisconfigured, OSError) as err:
            detail = getattr(err, "detail", None)  # the store's address: the log may show it
            log.error("cannot start: %s%s", err, f" ({detail})" if detail else "")
            server.stop(0)
            return 2 if isinstance(err, StoreMisconfigured) else 1
        supervised = report_serving()  # to the parent, when one started this server
        while not received:
            time.sleep(SIGNAL_POLL_S)
        log.info("%s received", signal.Signals(received[0]).name)
        failed: list[BaseException] = []

        def shut_down() -> None:
            try:
                server.stop()
            except BaseException as err:
                log.exception("the shutdown failed")
                failed.append(err)

        stopping = threading.Thread(target=shut_down, name="shutdown")
        stopping.start()
        while stopping.is_alive():
            stopping.join(SIGNAL_POLL_S)
            if len(received) > 1:
                name = signal.Signals(received[1]).name
                log.warning("%s again: exiting without waiting for the shutdown", name)
                logging.shutdown()
                os._exit(1)
        code = 1 if failed else 0
        if supervised:
            # A child of --processes, its shutdown done: leave before the interpreter's
            # teardown, where native threads (gRPC's, torch's) were seen to abort the
            # process ("terminate called without an active exception", SIGABRT).
            logging.shutdown()
            os._exit(code)
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
