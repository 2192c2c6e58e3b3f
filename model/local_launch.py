"""The ``processes`` training option: a data-parallel run in local processes.

``train_in_processes`` (the caller's side) starts ``processes`` Python processes
(``python -m rnnlm.model.distributed``, the processes' side), which join one gloo (CPU) or
NCCL (one GPU each) process group as ``torchrun`` would start them, and sends rank 0 what
to train. Rank 0
reports back on a pipe of its own (JSON lines, each followed by the bytes it announces):
progress events, resumable checkpoints, then the trained model; the caller hands each to
its callbacks, so a server's job sees a data-parallel run like any other. Stopping (a
cancel, a server shutting down) is one line on rank 0's stdin; every rank stops at the
same step (``data_parallel``).

A process that dies (killed, out of memory) ends the run with ``WorkerLost``: the others
are stopped, nothing is returned, and the last checkpoint stands. A process whose caller
dies sees its stdin close and exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from rnnlm.model.config import ModelConfig, TrainConfig
from rnnlm.model.corpus import Corpus
from rnnlm.model.data_parallel import (
    pack_start,
)
from rnnlm.model.engines import check_device_available, usable_cores
from rnnlm.model.lm import LanguageModel
from rnnlm.model.ngram import NgramModel
from rnnlm.model.progress import ProgressEvent
from rnnlm.model.state import STATUS_COMPLETED, STATUS_EARLY_STOPPED, WorkerLost

log = logging.getLogger("rnnlm.model")

# How often the caller's side checks its stop condition and the processes' health.
POLL_SECONDS = 0.2
# How long the processes get to leave after the run ended (or failed) before they are killed.
EXIT_GRACE_SECONDS = 30.0
STOP_LINE = b"stop\n"
# The environment variable naming rank 0's report pipe (a file descriptor it inherits).
REPORT_FD = "RNNLM_REPORT_FD"


def _free_port() -> int:
    """A free TCP port on the loopback for the process group's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


class _Run:
    """The processes of one run, seen from the caller."""

    def __init__(self, processes: int, label: str, device: str) -> None:
        self.processes = processes
        self.report_read, report_write = os.pipe()
        port = _free_port()
        # Each process's share of the cores (oversubscribed math threads wait for each other at
        # every barrier; see server/cores.py).
        threads = str(max(1, usable_cores() // processes))
        self.children: list[subprocess.Popen[bytes]] = []
        for rank in range(processes):
            env = dict(
                os.environ,
                RANK=str(rank),
                LOCAL_RANK=str(rank),
                WORLD_SIZE=str(processes),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
                OMP_NUM_THREADS=threads,
                MKL_NUM_THREADS=threads,
                RNNLM_TRAIN_DEVICE=device,
            )
            if rank == 0:
                env[REPORT_FD] = str(report_write)
            command = [sys.executable, "-m", "rnnlm.model.distributed", "--job", label]
            self.children.append(
                subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    env=env,
                    pass_fds=(report_write,) if rank == 0 else (),
                    # Not in the caller's process group: a Ctrl-C or a supervisor's SIGTERM
                    # reaches the caller, which stops the run at a step boundary.
                    start_new_session=True,
                )
            )
        os.close(report_write)  # rank 0 holds the only writer: its exit ends the reports
        self.reports = os.fdopen(self.report_read, "rb")
        self.lost: str = ""  # which process died, and how
        self._stop_sent = False

    @property
    def leader_stdin(self) -> IO[bytes]:
        stdin = self.children[0].stdin
        assert stdin is not None
        return stdin

    def send_start(self, payload: bytes) -> None:
        with contextlib.suppress(BrokenPipeError):  # rank 0 died: the watch says so
            self.leader_stdin.write(payload)
            self.leader_stdin.flush()

    def ask_stop(self) -> None:
        if not self._stop_sent:
            self._stop_sent = True
            with contextlib.suppress(BrokenPipeError, ValueError):
                self.leader_stdin.write(STOP_LINE)
                self.leader_stdin.flush()

    def watch(self, should_stop: Callable[[], bool] | None, done: threading.Event) -> None:
        """Until the run is over: pass a stop on, and end the run when a process dies (the
        others are killed, which closes the report pipe the caller reads)."""
        while not done.wait(POLL_SECONDS):
            if should_stop is not None and should_stop():
                self.ask_stop()
            if self.find_lost():
                log.warning("data-parallel run: %s; stopping the others", self.lost)
                self.kill()
                return

    def find_lost(self) -> str:
        """Which process failed, and how (``lost``; empty while none has): one killed by a
        signal is the cause, the others failed after it."""
        failed = [
            (rank, code)
            for rank, child in enumerate(self.children)
            if (code := child.poll()) is not None and code != 0
        ]
        if failed and not self.lost:
            rank, code = min(failed, key=lambda f: (f[1] >= 0, f[0]))
            how = _describe_exit(code)
            self.lost = f"training process {rank} of {self.processes} ended ({how})"
        return self.lost

    def kill(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()

    def close(self) -> None:
        """Close rank 0's stdin (each process exits on its own end of input), wait, kill."""
        for child in self.children:
            with contextlib.suppress(BrokenPipeError, OSError):
                if child.stdin is not None:
                    child.stdin.close()
        for child in self.children:
            try:
                child.wait(EXIT_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.reports.close()


def _read_report(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    line = stream.readline()
    if not line:
        return None
    header = json.loads(line)
    data = stream.read(header.get("bytes", 0)) if header.get("bytes") else b""
    return header, data


def train_in_processes(
    corpus: Corpus,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    on_progress: Callable[[Any], None] | None,
    on_checkpoint: Callable[[LanguageModel], None] | None,
    should_stop: Callable[[], bool] | None,
    resume_from: LanguageModel | None,
    ngram: NgramModel | None,
    ngram_source: str,
) -> LanguageModel:
    """``train`` for ``train_config.processes`` > 1 (see the module's docstring); the
    callbacks are called in this thread. Raises what rank 0 raised (ValueError,
    FloatingPointError), or ``WorkerLost``."""
    from rnnlm.model.interpolation import add_ngram_part

    check_device_available(model_config.cell, train_config.device, train_config.processes)
    checkpoint = resume_from.to_bytes(resumable=True) if resume_from is not None else b""
    # With an ARPA model of the caller's, rank 0 leaves the n-gram part to this side.
    payload = pack_start(corpus, model_config, train_config, checkpoint, own_ngram=ngram is None)
    # The processes are named after the caller's thread (a server's job thread is named
    # after its job), so that ps shows whose they are.
    label = threading.current_thread().name
    run = _Run(train_config.processes, label, train_config.device)
    done = threading.Event()
    watcher = threading.Thread(target=run.watch, args=(should_stop, done), daemon=True)
    watcher.start()
    trained: LanguageModel | None = None
    failure: dict[str, Any] | None = None
    try:
        run.send_start(len(payload).to_bytes(8, "big") + payload)
        while (report := _read_report(run.reports)) is not None:
            header, data = report
            kind = header["kind"]
            if kind == "progress" and on_progress is not None:
                on_progress(ProgressEvent(**header["event"]))
            elif kind == "checkpoint" and on_checkpoint is not None:
                on_checkpoint(LanguageModel.from_bytes(data, device="cpu"))
            elif kind == "done":
                trained = LanguageModel.from_bytes(data, device=train_config.device)
            elif kind == "error":
                failure = header
    finally:
        done.set()
        watcher.join()
        if trained is None:
            # The reports ended early: rank 0 has exited; say which process failed first.
            with contextlib.suppress(subprocess.TimeoutExpired):
                run.children[0].wait(EXIT_GRACE_SECONDS)
            run.find_lost()
            run.kill()
        run.close()
    if failure is not None:  # rank 0 refused the run (its exit ended the others)
        error = {"ValueError": ValueError, "FloatingPointError": FloatingPointError}
        raise error.get(failure["type"], RuntimeError)(failure["message"])
    if run.lost and trained is None:
        raise WorkerLost(run.lost)
    if trained is None:
        raise WorkerLost("training process 0 ended without a result (see the server log)")
    status = trained.training_state.status if trained.training_state else ""
    if ngram is not None and status in (STATUS_COMPLETED, STATUS_EARLY_STOPPED):
        from rnnlm.model.dataset import prepare

        _, _, train_seqs, _, _, valid_sentences = prepare(
            corpus, model_config, train_config, trained
        )
        add_ngram_part(trained, train_seqs, valid_sentences, ngram, ngram_source)
    return trained
