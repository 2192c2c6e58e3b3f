"""``rnnlm serve --processes N``: N server processes on one port, and the parent that keeps them.

A Python gRPC server handles requests on about one core (the interpreter lock), so a host
serves with several processes. Each child is a whole ``rnnlm serve`` (``--processes 1``):
its own gRPC threads, model cache and batcher, and its own ``server_id``; they share the
store as replicas do (Redis, or the local directory, whose writes take ``flock`` locks), so
a training job runs in the one process that accepted it, guarded by its lease as on any
replica. They listen on the same port with ``SO_REUSEPORT``: the kernel spreads the
incoming connections over them (a connection, and so a client's channel, stays with one).

The parent serves no calls. It reserves the port (a bound socket that does not listen, so
port 0 picks one port for all and no other program takes it between restarts), gives each
child its share of the cores for math threads (``cores.py``), serves the one ``/metrics``
of all processes (prometheus-client's multiprocess mode: each child writes its values to
files in a fresh directory, ``PROMETHEUS_MULTIPROC_DIR``, and the parent's endpoint adds
them up), starts a child again when one dies (counted in ``rnnlm_process_restarts_total``),
and on SIGTERM or SIGINT has every child shut down gracefully (``RnnlmServer.stop``),
exiting 0 once all have done so; a second signal makes them exit at once (status 1).

A child that fails before it serves (a port in use, a wrong store password) stops them all
at start; later, a child that keeps dying is started again at growing intervals.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from rnnlm.server.config import ServerConfig
from rnnlm.server.cores import threads_per_process
from rnnlm.server.metrics import serve_registry, stop_endpoint

log = logging.getLogger("rnnlm.server")

# Two file descriptors a child inherits, "LIFELINE,READY": it writes one byte to READY once it
# serves; LIFELINE reads end-of-file when the parent is gone (even killed), and the child
# then shuts itself down instead of serving on unsupervised.
SUPERVISED_ENV = "_RNNLM_SUPERVISOR_FDS"
# Read by the math libraries when they load, before any of the child's code runs.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
POLL_S = 0.1
# A child that served this long before it died is started again at once; one that dies
# sooner waits, twice as long each time (from the first to the most), so that a child that
# cannot live does not spin the host.
STABLE_S = 30.0
FIRST_BACKOFF_S, MOST_BACKOFF_S = 0.5, 30.0
# On top of --shutdown-grace-s: the children's jobs write their checkpoints, stores close.
DRAIN_MARGIN_S = 15.0


@dataclass
class Child:
    """One server process and the parent's ends of its two pipes."""

    slot: int  # 1..N: which of the N it replaces when it dies
    process: subprocess.Popen
    ready_fd: int
    lifeline_fd: int
    started: float = field(default_factory=time.monotonic)
    ready: bool = False
    waiting: bool = True  # its ready pipe is open and has said nothing yet

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_ready(self) -> bool:
        """After ``select`` found the pipe readable: whether the child now serves."""
        self.ready = os.read(self.ready_fd, 1) == b"1"  # b"": it exited first
        self.waiting = False
        return self.ready

    def close(self) -> None:
        for fd in (self.ready_fd, self.lifeline_fd):
            os.close(fd)


class Supervisor:
    """Runs ``config.processes`` children of ``rnnlm serve`` with the flags ``argv``."""

    def __init__(self, config: ServerConfig, argv: Sequence[str]) -> None:
        self.config, self.argv = config, list(argv)
        self.threads = threads_per_process(config.processes, config.torch_threads)
        self.restarts = 0
        self.children: dict[int, Child] = {}  # by slot
        self._generation: dict[int, int] = {}  # by slot: children started in it so far
        self._backoff: dict[int, float] = {}  # by slot: the last wait before a restart
        self._due: dict[int, float] = {}  # slot -> when its next child starts
        self._serving = False  # every first child has said it serves
        self._reservation, self.address = reserve_port(config.address)
        self.metrics_dir = tempfile.mkdtemp(prefix="rnnlm-metrics-")
        self._endpoint: Any = None

    # -- the children ------------------------------------------------------------------

    def _command(self, slot: int) -> list[str]:
        generation = self._generation[slot] = self._generation.get(slot, 0) + 1
        server_id = f"{self.config.server_id}-p{slot}"
        if generation > 1:  # a new process: a new name in the job records it writes
            server_id += f".{generation}"
        # Later flags win: these override whatever argv said about them.
        overrides = ["--processes", "1", "--address", self.address, "--metrics-address", ""]
        overrides += ["--torch-threads", str(self.threads), "--server-id", server_id]
        return [sys.executable, "-m", "rnnlm.server", *self.argv, *overrides]

    def _spawn(self, slot: int) -> Child:
        lifeline_r, lifeline_w = os.pipe()
        ready_r, ready_w = os.pipe()
        env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=self.metrics_dir)
        env.update(dict.fromkeys(THREAD_VARIABLES, str(self.threads)))
        env[SUPERVISED_ENV] = f"{lifeline_r},{ready_w}"
        try:
            process = subprocess.Popen(
                self._command(slot),
                env=env,
                pass_fds=(lifeline_r, ready_w),
                # Not in our process group: a terminal's Ctrl-C reaches the parent alone,
                # which passes it on once (a second signal would make a child exit at once).
                start_new_session=True,
            )
        except OSError:
            os.close(ready_r)
            os.close(lifeline_w)
            raise
        finally:
            os.close(lifeline_r)
            os.close(ready_w)
        child = self.children[slot] = Child(slot, process, ready_r, lifeline_w)
        log.info("server process %d started (pid %d)", slot, child.pid)
        return child

    def alive(self) -> list[Child]:
        return [c for c in self.children.values() if c.process.poll() is None]

    def _tend(self) -> int | None:
        """Wait up to POLL_S for news; note children that serve, restart those that died.
        Returns an exit status when a first child failed before it served."""
        waiting = [c for c in self.children.values() if c.waiting]
        readable, _, _ = select.select([c.ready_fd for c in waiting], [], [], POLL_S)
        for child in waiting:
            if child.ready_fd in readable and child.read_ready():
                self._now_serving(child)
        for child in list(self.children.values()):
            status = child.process.poll()
            if status is None:
                continue
            del self.children[child.slot]
            child.close()
            mark_process_dead(child.pid, self.metrics_dir)  # its live gauges go
            if not self._serving:
                log.error(
                    "server process %d (pid %d) ended before all served (%s): stopping",
                    *(child.slot, child.pid, describe(status)),
                )
                return status if status > 0 else 1
            self._schedule_restart(child, status)
        now = time.monotonic()
        for slot, due in list(self._due.items()):
            if now >= due:
                del self._due[slot]
                try:
                    self._spawn(slot)
                except OSError as err:
                    log.error("server process %d cannot be started: %s", slot, err)
                    self._due[slot] = now + self._next_backoff(slot, 0.0)
        return None

    def _now_serving(self, child: Child) -> None:
        if self._serving:
            log.info("server process %d (pid %d) serves again", child.slot, child.pid)
        elif all(c.ready for c in self.children.values()):
            self._serving = True
            log.info(
                "rnnlm serving on %s with %d processes (pids %s), %d math threads each",
                self.address,
                len(self.children),
                ", ".join(str(c.pid) for c in self.children.values()),
                self.threads,
            )

    def _schedule_restart(self, child: Child, status: int) -> None:
        self.restarts += 1
        lived = time.monotonic() - child.started
        wait = self._next_backoff(child.slot, lived)
        self._due[child.slot] = time.monotonic() + wait
        log.error(
            "server process %d (pid %d) died (%s) after %.1fs; starting it again%s (restart %d)",
            *(child.slot, child.pid, describe(status), lived),
            f" in {wait:.1f}s" if wait else "",
            self.restarts,
        )

    def _next_backoff(self, slot: int, lived: float) -> float:
        last = 0.0 if lived >= STABLE_S else self._backoff.get(slot, 0.0)
        wait = 0.0 if lived >= STABLE_S else min(MOST_BACKOFF_S, max(FIRST_BACKOFF_S, 2 * last))
        self._backoff[slot] = wait
        return wait

    # -- start and stop ----------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; the exit status (0: every child stopped cleanly)."""
        received: list[int] = []

        def on_signal(signum: int, frame: object) -> None:
            received.append(signum)

        previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
        try:
            if self.config.metrics_address:
                self._endpoint = self._serve_metrics(self.config.metrics_address)
            for slot in range(1, self.config.processes + 1):
                self._spawn(slot)
            while not received:
                failed = self._tend()
                if failed is not None:
                    self._stop_children(received)
                    return failed
            log.info(
                "%s received: stopping the %d server processes",
                *(signal.Signals(received[0]).name, len(self.alive())),
            )
            return 0 if self._stop_children(received) else 1
        except OSError as err:
            log.error("cannot start: %s", err)
            self._stop_children(received)
            return 1
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()

    def _stop_children(self, received: list[int]) -> bool:
        """SIGTERM to every child, and wait for all to exit: each drains (a signal received
        meanwhile is passed on: they exit at once). Whether all stopped cleanly."""
        self._due.clear()
        signalled = len(received)
        clean = True
        for child in self.alive():
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_grace_s + DRAIN_MARGIN_S
        while alive := self.alive():
            if len(received) > signalled:
                signalled, clean = len(received), False
                log.warning("signal again: the server processes exit without waiting")
                for child in alive:
                    child.process.send_signal(signal.SIGTERM)
            if time.monotonic() > deadline:
                log.warning("server processes %s did not stop: killed", [c.pid for c in alive])
                for child in alive:
                    child.process.kill()
                clean = False
            time.sleep(POLL_S)
        for child in self.children.values():
            status = child.process.wait()
            # One stopped before it had set up its handler (still starting) had nothing to do.
            if status != 0 and not (status == -signal.SIGTERM and not child.ready):
                log.warning(
                    "server process %d (pid %d) %s", child.slot, child.pid, describe(status)
                )
                clean = False
            child.close()
        self.children.clear()
        return clean

    def _serve_metrics(self, address: str) -> Any:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.metrics_dir)
        registry.register(SupervisorCollector(self))
        try:
            return serve_registry(registry, address)
        except OSError as err:
            raise OSError(f"cannot serve metrics on {address}: {err}") from None

    def close(self) -> None:
        if self._endpoint is not None:
            stop_endpoint(self._endpoint)
            self._endpoint = None
        self._reservation.close()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


class SupervisorCollector:
    """The parent's own metrics, read from it at scrape time."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Any]:
        yield CounterMetricFamily(
            "rnnlm_process_restarts",
            "Server processes (--processes) that died and were started again",
            value=self.supervisor.restarts,
        )
        yield GaugeMetricFamily(
            "rnnlm_processes",
            "Server processes (--processes) running",
            value=len(self.supervisor.alive()),
        )


def reserve_port(address: str) -> tuple[socket.socket, str]:
    """A socket bound with SO_REUSEPORT to ``address`` (host:port; port 0: a free one),
    not listening, so it takes no connections; and the address with its port."""
    host, _, port = address.rpartition(":")
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("--processes above 1 needs SO_REUSEPORT, which this system lacks")
    try:
        family, kind, proto, _, where = socket.getaddrinfo(
            host.strip("[]"), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as err:
        raise OSError(f"cannot listen on {address}: {err}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(where)
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {address}: {err}") from None
    return sock, f"{host}:{sock.getsockname()[1]}"


def describe(status: int) -> str:
    if status < 0:
        return f"killed by {signal.Signals(-status).name}"
    return f"exit status {status}"


def supervise(config: ServerConfig, argv: Sequence[str] | None) -> int:
    """``rnnlm serve`` with ``--processes`` above 1 (``app.main``)."""
    try:
        supervisor = Supervisor(config, sys.argv[1:] if argv is None else argv)
    except OSError as err:
        log.error("cannot start: %s", err)
        return 1
    return supervisor.run()


# -- in a child ----------------------------------------------------------------------------


def report_serving() -> bool:
    """In a server process that a supervisor started: tell it this process serves, and shut
    down (SIGTERM to itself: the graceful way) once the supervisor is gone; True. Elsewhere:
    nothing, False."""
    fds = os.environ.pop(SUPERVISED_ENV, None)
    if not fds:
        return False
    lifeline, ready = (int(fd) for fd in fds.split(","))
    os.write(ready, b"1")
    os.close(ready)
    watch = threading.Thread(target=_stop_with, args=(lifeline,), name="supervisor", daemon=True)
    watch.start()
    return True


def _stop_with(lifeline: int) -> None:
    while os.read(lifeline, 64):  # the supervisor never writes: b"" when it is gone
        pass
    log.warning("the supervising process is gone: shutting down")
    os.kill(os.getpid(), signal.SIGTERM)
