"""The processes of a local data-parallel run (``local_launch`` starts them as
``python -m rnnlm.model.distributed``): rank 0 reads what to train on its stdin, trains and
reports on its pipe; the other ranks follow it (``follow``). Several machines start
``rnnlm.server.torchrun`` instead, whose ranks other than 0 also call ``follow``."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
from typing import IO, Any

from rnnlm.model.data_parallel import DataParallel, init_from_env, leave_group, unpack_start
from rnnlm.model.lm import LanguageModel
from rnnlm.model.local_launch import REPORT_FD, STOP_LINE
from rnnlm.model.state import WorkerLost
from rnnlm.model.training import train

log = logging.getLogger("rnnlm.model")


def follow(group: DataParallel) -> None:
    """A rank other than 0: train as rank 0 says, until the run ends (a cancel stops it at
    the same step as rank 0). Nothing is reported or written from here."""
    start = unpack_start(group.receive_start())
    if start is None:
        log.info("rank %d: rank 0 has nothing to train; stopping", group.rank)
        return
    corpus, model_config, train_config, checkpoint, _ = start
    lm = LanguageModel.from_bytes(checkpoint, device=str(group.device))
    train(corpus, model_config, train_config, resume_from=lm, distributed=group)


class _Reporter:
    """Rank 0's reports to the caller: one JSON line, then the bytes it announces."""

    def __init__(self, fd: int) -> None:
        self.stream = os.fdopen(fd, "wb")
        self.lock = threading.Lock()

    def send(self, kind: str, data: bytes = b"", **fields: Any) -> None:
        header = json.dumps({"kind": kind, "bytes": len(data), **fields}).encode() + b"\n"
        with self.lock:
            self.stream.write(header + data)
            self.stream.flush()


def _watch_stdin(stream: IO[bytes], stop: threading.Event) -> None:
    """A stop line asks for a stop; the end of input means the caller is gone: exit."""
    for line in stream:
        if line == STOP_LINE:
            stop.set()
    os._exit(3)


def _lead(group: DataParallel) -> None:
    """Rank 0: read the start, train, report."""

    stdin = sys.stdin.buffer
    size = int.from_bytes(stdin.read(8), "big")
    start = unpack_start(stdin.read(size))
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stdin, stop), daemon=True).start()
    reporter = _Reporter(int(os.environ[REPORT_FD]))
    assert start is not None, "train_in_processes always sends a start"
    corpus, model_config, train_config, checkpoint, own_ngram = start
    device = str(group.device)
    resume_from = LanguageModel.from_bytes(checkpoint, device=device) if checkpoint else None

    def progress(event: Any) -> None:
        reporter.send("progress", event=dataclasses.asdict(event))

    def checkpointed(lm: LanguageModel) -> None:
        reporter.send("checkpoint", lm.to_bytes(resumable=True))

    try:
        lm = train(
            corpus,
            model_config,
            train_config,
            on_progress=progress,
            on_checkpoint=checkpointed,
            should_stop=stop.is_set,
            resume_from=resume_from,
            distributed=group,
            add_ngram=own_ngram,
        )
    except (ValueError, FloatingPointError) as err:
        reporter.send("error", type=type(err).__name__, message=str(err))
        raise
    reporter.send("done", lm.to_bytes())


def main() -> None:
    """A process of a local data-parallel run (started by ``train_in_processes``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rnnlm.model.distributed")
    parser.add_argument("--job", default="", help="whose run this is (shown by ps)")
    parser.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    # Rank 0 speaks for the run; the others log only what goes wrong.
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s",
    )
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    code = 0
    try:
        group = init_from_env(os.environ.get("RNNLM_TRAIN_DEVICE", "auto"))
        if group.leader:
            _lead(group)
        else:
            unused = threading.Event()  # rank 0 decides when to stop
            threading.Thread(
                target=_watch_stdin, args=(sys.stdin.buffer, unused), daemon=True
            ).start()
            follow(group)
    except WorkerLost as err:
        log.warning("%s", err)
        code = 2
    except BaseException:
        log.exception("training process %d failed", rank)
        code = 1
    finally:
        leave_group()
    # os._exit: the thread reading stdin must not hold up (or abort) the interpreter's exit.
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
