"""uvicorn in a thread of the server's process, started and stopped with ``RnnlmServer``.

The socket is bound here, before the thread starts, so that a port in use fails ``start()``
as the gRPC port does, and port 0 gives the port taken. Shutting down: ``stop(grace)`` as
the server begins to drain (the gate refuses new calls with 503 on connections still open),
uvicorn stops listening and lets the calls in flight finish for ``grace`` seconds, then
cancels the rest; ``join`` waits for that.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable

import uvicorn

from rnnlm.server.config import ServerConfig
from rnnlm.server.http.app import build_app
from rnnlm.server.http.completions import Completions
from rnnlm.server.security import ApiKeyCheck
from rnnlm.server.serving import Serving

log = logging.getLogger("rnnlm.server.http")
START_TIMEOUT_S = 30.0


class HttpFrontEnd:
    def __init__(
        self,
        config: ServerConfig,
        serving: Serving,
        api_key: ApiKeyCheck,
        draining: Callable[[], bool],
        healthy: Callable[[], bool],
    ) -> None:
        assert config.http_address, "no --http-address"
        self.config = config
        self.app = build_app(Completions(serving), config, api_key, draining, healthy)
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Listen and serve; returns the bound port. OSError if it cannot listen."""
        address = self.config.http_address or ""
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            # SO_REUSEPORT, as gRPC's port has it: the processes of `rnnlm serve --processes`
            # share the HTTP port too, the kernel spreading connections over them.
            reuse = hasattr(socket, "SO_REUSEPORT")
            sock = socket.create_server((host, int(port)), family=family, reuse_port=reuse)
        except OSError as err:
            raise OSError(f"cannot listen on {address} (--http-address): {err}") from None
        # Accepted connections inherit it. Without it (uvicorn sets none on a socket it is
        # handed) a response's headers and body wait out the client's delayed ACK: 44 ms a
        # call on loopback against 0.5 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = sock.getsockname()[1]
        cfg = self.config
        tls: dict = {}
        if cfg.tls_cert:
            tls = {"ssl_certfile": cfg.tls_cert, "ssl_keyfile": cfg.tls_key}
            if cfg.tls_client_ca:  # mutual TLS, as for gRPC
                tls |= {"ssl_ca_certs": cfg.tls_client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_config=None,  # the server's logging
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=int(cfg.shutdown_grace_s) or 1,
                **tls,
            )
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise OSError(f"the HTTP API did not start on {address}; see the log")
            time.sleep(0.01)
        return self.port

    def stop(self, grace: float) -> None:
        """Stop listening; calls in flight have ``grace`` seconds (then ``join``)."""
        if self._server is not None:
            # uvicorn waits this long for the calls in flight, then cancels them.
            self._server.config.timeout_graceful_shutdown = max(1, round(grace))
            self._server.should_exit = True

    def join(self, timeout: float) -> None:
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive() and self._server is not None:
            log.warning("the HTTP API did not stop in time: closing its connections")
            self._server.force_exit = True
            self._thread.join(2.0)
