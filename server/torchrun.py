"""Training on several machines: the entry point that ``torchrun`` starts on each of them.

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m rnnlm.server.torchrun --model news --corpus-id c-1f2e... \\
        --model-config '{"cell": "lstm", "hidden_size": 512}' --train-config '{"epochs": 5}' \\
        -- --redis-url redis://redis:6379/0

Rank 0 acts as a server's job runner on the store that the flags after ``--`` (or the
``RNNLM_*`` variables) name, exactly as ``rnnlm serve`` reads them: it creates the training
job (or takes over the job of ``--resume``), holds its lease, reads its corpus from the
store, and writes progress, checkpoints and the published version there, so every server on
that store lists, watches, cancels and resumes the job like one it runs itself. The other
ranks need no store: rank 0 sends them what to train (``model/data_parallel.py``).

A rank that dies ends the run (``torchrun`` stops the others); rank 0 records the job
INTERRUPTED, or, if rank 0 itself died, a server marks it so when its lease runs out. Either
way it resumes from its last checkpoint, with ``--resume JOB`` here or ``rnnlm resume JOB``
on a server that has the cores or GPUs. Exit status: 0 when the job completed, 1 when it
ended otherwise, 2 for a request refused before it started.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from rnnlm.model import ModelConfig, TrainConfig
from rnnlm.model.data_parallel import DataParallel, init_from_env, leave_group
from rnnlm.model.distributed import follow
from rnnlm.server.config import ServerConfig
from rnnlm.server.corpora import CorpusRegistry
from rnnlm.server.errors import ServiceError
from rnnlm.server.job_states import JobState
from rnnlm.server.jobs import JobManager
from rnnlm.server.metrics import Metrics
from rnnlm.server.models import ModelRegistry
from rnnlm.server.store import open_store

log = logging.getLogger("rnnlm.server")

PROG = "torchrun ... -m rnnlm.server.torchrun"
# How often rank 0's main thread looks up from waiting for the run (signals are handled then).
WAIT_SECONDS = 0.5
SUCCEEDED = (JobState.COMPLETED, JobState.EARLY_STOPPED)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train one job data-parallel on the processes torchrun starts. "
        "After '--': the store settings of 'rnnlm serve' (--redis-url, --store-dir, "
        "--redis-prefix; or their RNNLM_* variables).",
    )
    parser.add_argument("--model", help="model id to train (a new version if it exists)")
    parser.add_argument("--corpus-id", help="an uploaded corpus (rnnlm corpora lists them)")
    parser.add_argument("--server-path", help="a file under the store's --corpus-dir instead")
    parser.add_argument("--format", default="auto", choices=["auto", "text", "csv"])
    parser.add_argument("--csv-column", default="body", help="CSV column with the text")
    parser.add_argument("--paragraphs", default="blank-line", choices=["blank-line", "line"])
    parser.add_argument("--arpa-id", default="", help="an uploaded ARPA n-gram model")
    parser.add_argument("--model-config", default="{}", help="JSON: the ModelConfig fields")
    parser.add_argument("--train-config", default="{}", help="JSON: the TrainConfig fields")
    parser.add_argument("--resume", metavar="JOB", help="resume this cancelled/interrupted job")
    parser.add_argument("--epochs", type=int, default=0, help="with --resume: new total epochs")
    return parser


def _json_option(parser: argparse.ArgumentParser, name: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        parser.error(f"--{name} must be a JSON object: {err.msg} at character {err.pos}")
    if not isinstance(value, dict):
        parser.error(f"--{name} must be a JSON object, got {type(value).__name__}")
    return value


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, ServerConfig]:
    """The job's flags, and the server settings after ``--``."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = build_parser()
    args = parser.parse_args(argv[:split])
    if not args.resume and not args.model:
        parser.error("give --model (and --corpus-id or --server-path), or --resume JOB")
    if not args.resume and not (args.corpus_id or args.server_path):
        parser.error(
            "give the corpus: --corpus-id (an uploaded corpus: rnnlm corpora lists them) "
            "or --server-path"
        )
    args.model_config = _json_option(parser, "model-config", args.model_config)
    args.train_config = _json_option(parser, "train-config", args.train_config)
    return args, ServerConfig.from_args(argv[split + 1 :])


def _start(jobs: JobManager, args: argparse.Namespace) -> str:
    """Create (or take over) the job; its run starts training as rank 0. Returns its id."""
    if args.resume:
        return jobs.resume(args.resume, args.epochs).job_id
    # The job records the processes per machine, as the training option means them.
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    model_config = ModelConfig.from_dict(args.model_config)
    train_config = TrainConfig.from_dict({**args.train_config, "processes": per_node})
    source = {"format": args.format, "csv_column": args.csv_column, "paragraphs": args.paragraphs}
    if args.corpus_id:
        source["corpus_id"] = args.corpus_id
    else:
        source["server_path"] = args.server_path
    job = jobs.submit(args.model, source, model_config, train_config, arpa_id=args.arpa_id)
    return job.job_id


def lead(group: DataParallel, args: argparse.Namespace, config: ServerConfig) -> int:
    """Rank 0: run the job as a server would, training as rank 0 of ``group``."""
    store = open_store(config.redis_url, config.store_dir, prefix=config.redis_prefix)
    models = ModelRegistry(store, config.keep_versions)
    corpora = CorpusRegistry(store, config.max_corpus_bytes, config.corpus_dir)
    jobs = JobManager(store, models, corpora, config, Metrics())
    jobs.runner.distributed = group
    # SIGTERM (torchrun stopping, a pod deleted): the run stops at its next step on every
    # rank, writes a checkpoint and is recorded interrupted, as on a server that shuts down.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: jobs.shutdown(timeout=0))
    try:
        try:
            job_id = _start(jobs, args)
        except (ServiceError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"job {job_id}: training on {group.world} processes; rnnlm watch {job_id}")
        sys.stdout.flush()
        while (run := jobs.runs.get(job_id)) is not None and run.thread is not None:
            run.thread.join(WAIT_SECONDS)
            if not run.thread.is_alive():
                break
        job = jobs.get(job_id)
        print(f"job {job_id}: {job.state}" + (f" ({job.error})" if job.error else ""))
        return 0 if job.state in SUCCEEDED else 1
    finally:
        if not group.shared:  # refused or failed before training: the others wait for word
            group.share_start(None)
        jobs.shutdown(timeout=0)
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args, config = parse(sys.argv[1:] if argv is None else argv)
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s",
    )
    device = args.train_config.get("device", config.device)
    started = time.monotonic()
    group = init_from_env(device if isinstance(device, str) else "auto")
    log.info("rank %d of %d joined in %.1f s", group.rank, group.world, time.monotonic() - started)
    try:
        if group.leader:
            return lead(group, args, config)
        # Rank 0 decides when to stop (a cancel, a SIGTERM it received); a signal here would
        # only cut the run short of its checkpoint.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        follow(group)
        return 0
    finally:
        leave_group()


if __name__ == "__main__":
    sys.exit(main())
