"""Assemble and run the server: store, registries, job manager, model cache, the gRPC service
with health and reflection. ``RnnlmServer`` is what tests and ``rnnlm demo`` start in-process;
``main`` is ``rnnlm serve``.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Sequence
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rnnlm.v1 import rnnlm_pb2

from .cache import ModelCache
from .config import ServerConfig
from .corpora import CorpusRegistry
from .errors import Unavailable
from .interceptors import ErrorInterceptor
from .jobs import JobManager
from .models import ModelRegistry
from .servicer import LanguageModelServicer, add_to_server
from .store import open_store

log = logging.getLogger("rnnlm.server")

SERVICE_NAME = rnnlm_pb2.DESCRIPTOR.services_by_name["LanguageModelService"].full_name
STORE_CHECK_S = 5.0


class RnnlmServer:
    """One server process' worth of parts. ``start()`` returns the bound port."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = open_store(config.redis_url, config.store_dir, prefix=config.redis_prefix)
        self.models = ModelRegistry(self.store, config.keep_versions)
        self.corpora = CorpusRegistry(self.store, config.max_corpus_bytes, config.corpus_dir)
        self.jobs = JobManager(
            self.store,
            self.models,
            self.corpora,
            server_id=config.server_id,
            max_concurrent=config.max_concurrent_jobs,
            lease_s=config.job_lease_s,
            default_checkpoint_every=config.checkpoint_every,
            max_model_params=config.max_model_params,
        )
        self.cache = ModelCache(
            self.models,
            capacity=config.cache_size,
            refresh_s=config.cache_refresh_s,
            device=config.device,
            batching=config.batching,
            batch_max_size=config.batch_max_size,
            batch_max_wait_s=config.batch_max_wait_ms / 1000,
        )
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._stopped = threading.Event()
        self._grpc = self._build_grpc_server()
        self.port = 0

    def _build_grpc_server(self) -> grpc.Server:
        size = self.config.max_message_bytes
        server = grpc.server(
            futures.ThreadPoolExecutor(self.config.workers, thread_name_prefix="rpc"),
            interceptors=[ErrorInterceptor()],
            options=[
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", size),
            ],
            maximum_concurrent_rpcs=self.config.workers * 4,
        )
        servicer = LanguageModelServicer(
            self.config, self.models, self.corpora, self.jobs, self.cache
        )
        add_to_server(servicer, server)
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
        self.port = self._grpc.add_insecure_port(self.config.address)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.address}")
        self._grpc.start()
        self.check_store()
        threading.Thread(target=self._watch_store, name="store-health", daemon=True).start()
        log.info(
            "rnnlm serving on %s (store: %s, device: %s, reflection %s, server id %s)",
            self.address,
            self.store.describe(),
            self.config.device,
            "on" if self.config.reflection else "off",
            self.config.server_id,
        )
        return self.port

    def _set_serving(self, serving: bool) -> None:
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
            log.error("health NOT_SERVING: %s", err)
            self._set_serving(False)
        else:
            self._set_serving(True)

    def _watch_store(self) -> None:
        while not self._stopped.wait(STORE_CHECK_S):
            self.check_store()

    def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls, let calls in flight finish within ``grace`` seconds, stop the
        training jobs at a checkpoint (marked interrupted), release the store."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        log.info("shutting down (grace %.1fs)", grace or 0.0)
        done = self._grpc.stop(grace)
        self.jobs.shutdown()
        done.wait()
        self.cache.close()
        self.store.close()
        log.info("stopped")

    def wait(self) -> None:
        self._grpc.wait_for_termination()


def main(argv: Sequence[str] | None = None) -> int:
    """``rnnlm serve``: run until SIGINT or SIGTERM."""
    config = ServerConfig.from_args(argv)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    server = RnnlmServer(config)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    stop.wait()
    server.stop()
    return 0
