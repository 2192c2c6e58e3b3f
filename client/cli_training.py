"""The training commands of ``rnnlm``: train (check, upload, start, watch), follow and manage
jobs, and the uploaded corpora.

    rnnlm train news corpus.txt --cell gru --hidden-size 256 --epochs 5
    rnnlm jobs; rnnlm job ID; rnnlm watch ID; rnnlm cancel ID; rnnlm resume ID --watch
    rnnlm corpora; rnnlm delete-corpus ID; rnnlm delete-job ID
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from rnnlm.client import _output as out
from rnnlm.client import _progress as progress
from rnnlm.client._common import option_type, parse_option
from rnnlm.client._output import eprint
from rnnlm.client.sync import LMClient
from rnnlm.client.types import Corpus

# Training options with a flag of their own; any other field goes through --option k=v.
TRAIN_FLAGS = {
    "cell": "gru (default), lstm or rnn (NumPy, hand-written BPTT)",
    "vocab_size": "most frequent words kept, special tokens included",
    "embed_size": "word embedding size",
    "hidden_size": "hidden state size",
    "num_layers": "stacked layers",
    "dropout": "dropout in [0, 1)",
    "epochs": "passes over the corpus",
    "batch_size": "sentences per step",
    "learning_rate": "initial learning rate",
    "optimizer": "sgd, rmsprop, adam or adamw (default)",
    "seed": "seed for the split, weights and batch order",
    "words": "nltk (default) or whitespace (pre-tokenised text, as MT pipelines write it)",
    "ngram_order": "order of the built-in Kneser-Ney n-gram part, 1-6 (default 4; 0: none)",
    "output_classes": "word classes of the softmax (default sqrt(vocab_size); 0: full softmax)",
    "adaptive_cutoffs": "gru/lstm: adaptive softmax cut-offs by word rank, e.g. 2000,10000",
    "device": "auto, cpu, cuda or cuda:N",
    "checkpoint_every": "steps between checkpoints",
    "processes": "data-parallel training processes on the server's host (gru/lstm)",
}


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the commands with the parser's ``command(name, func, help, **kw)``."""
    p = command("train", cmd_train, "upload a corpus, train a model and watch the job")
    p.add_argument("model", help="model id to train (a new version if it exists)")
    p.add_argument("corpus_file", nargs="?", help="text or CSV file to upload ('-': stdin)")
    p.add_argument("--server-path", help="a file under the server's --corpus-dir instead")
    p.add_argument("--format", default="auto", choices=["auto", "text", "csv"])
    p.add_argument("--csv-column", help="CSV column with the text (default body)")
    p.add_argument("--paragraphs", default="blank-line", choices=["blank-line", "line"])
    for name, text in TRAIN_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, dest=name, type=option_type(name), help=text)
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other ModelConfig/TrainingOptions field, e.g. --option patience=0",
    )
    p.add_argument("--arpa", metavar="FILE", help="an ARPA file as the n-gram part (uploaded)")
    p.add_argument("--detach", action="store_true", help="print the job id and return")

    p = command("jobs", cmd_jobs, "list training jobs, newest first")
    p.add_argument("--model", help="only this model's jobs")
    p.add_argument("--limit", type=int, default=0, help="at most this many (default 100)")
    p = command("job", cmd_job, "show a training job")
    p.add_argument("job_id")
    p = command("watch", cmd_watch, "follow a training job's progress until it ends")
    p.add_argument("job_id")
    p.add_argument("--after", metavar="EVENT_ID", help="only events after this one")
    command("cancel", cmd_cancel, "stop a running job (resumable)").add_argument("job_id")
    p = command("delete-job", cmd_delete_job, "delete an ended job with its events and checkpoint")
    p.add_argument("job_id")
    p = command("corpora", cmd_corpora, "list uploaded corpora, newest first")
    p.add_argument("--limit", type=int, default=0, help="at most this many (default 100)")
    p = command("delete-corpus", cmd_delete_corpus, "delete an uploaded corpus")
    p.add_argument("corpus_id")
    p = command("resume", cmd_resume, "continue a cancelled or interrupted job")
    p.add_argument("job_id")
    p.add_argument("--epochs", type=int, default=0, help="raise the total epochs")
    p.add_argument("--watch", action="store_true", help="follow the job")


# -- commands: each takes the parsed arguments and a client, and returns the exit code ---


def cmd_train(args: argparse.Namespace, client: LMClient) -> int:
    options = dict(parse_option(text) for text in args.option)
    options.update({n: v for n in TRAIN_FLAGS if (v := getattr(args, n)) is not None})
    if (args.corpus_file is None) == (args.server_path is None):
        raise ValueError("give exactly one of CORPUS_FILE (to upload) and --server-path")
    source = {k: getattr(args, k) for k in ("server_path", "format", "csv_column", "paragraphs")}
    for local in (args.corpus_file, args.arpa):
        if local not in (None, "-"):
            os.stat(local)  # a missing file is the first thing to say
    # The server checks the options (and a --server-path) before anything is uploaded.
    client.train(args.model, None, validate_only=True, **source, **options)
    corpus = None if args.corpus_file is None else _upload(client, args.corpus_file)
    job = client.train(args.model, corpus, arpa=args.arpa, **source, **options)
    for warning in job.warnings if args.detach else ():  # watching shows them at the end
        eprint(f"warning: {warning}")
    # On stdout, for scripts: JOB=$(rnnlm train --detach ...), or the job as JSON.
    out.say(args.json, job.job_id, job)
    return 0 if args.detach else progress.watch_and_report(client, job.job_id, as_json=args.json)


def _upload(client: LMClient, path: str) -> Corpus:
    """Upload a corpus file ('-': stdin) with a progress bar on a terminal."""
    stdin = path == "-"
    source: str | bytes = sys.stdin.buffer.read() if stdin else path
    size = len(source) if isinstance(source, bytes) else os.path.getsize(path)
    with progress.bytes_bar(sys.stderr, size, "uploading") as bar:
        corpus = client.upload_corpus(
            source, filename="stdin.txt" if stdin else None, on_progress=bar.update
        )
    eprint(f"uploaded {corpus.filename} ({corpus.size_bytes:,} bytes): {corpus.corpus_id}")
    return corpus


def cmd_jobs(args: argparse.Namespace, client: LMClient) -> int:
    return out.print_listing(client.jobs(args.model, args.limit), args.json, out.jobs_table)


def cmd_delete_job(args: argparse.Namespace, client: LMClient) -> int:
    client.delete_job(args.job_id)
    out.say(args.json, f"deleted job {args.job_id}", {"job_id": args.job_id, "deleted": True})
    return 0


def cmd_corpora(args: argparse.Namespace, client: LMClient) -> int:
    return out.print_listing(client.corpora(args.limit), args.json, out.corpora_table)


def cmd_delete_corpus(args: argparse.Namespace, client: LMClient) -> int:
    freed = client.delete_corpus(args.corpus_id)
    text = f"deleted corpus {args.corpus_id} ({freed:,} bytes)"
    out.say(args.json, text, {"corpus_id": args.corpus_id, "bytes_freed": freed})
    return 0


def cmd_job(args: argparse.Namespace, client: LMClient) -> int:
    job = client.job(args.job_id)
    out.say(args.json, out.job_view(job), job)
    return 0


def cmd_watch(args: argparse.Namespace, client: LMClient) -> int:
    return progress.watch_and_report(client, args.job_id, args.after, as_json=args.json)


def cmd_cancel(args: argparse.Namespace, client: LMClient) -> int:
    job = client.cancel(args.job_id)
    if job.done:
        text = f"job {job.job_id} is {job.state}"
    else:  # the run sees the request before its next step, checkpoints and stops
        text = f"cancelling job {job.job_id}: it stops after its current step (resumable)"
    out.say(args.json, text, job)
    return 0


def cmd_resume(args: argparse.Namespace, client: LMClient) -> int:
    seen = None  # the ended job's last event: watching shows only what the resumed run does
    for event in client.watch(args.job_id) if args.watch else ():
        seen = event.event_id
    job = client.resume(args.job_id, args.epochs)
    out.say(args.json, f"resumed job {job.job_id} ({job.state})", job)
    if not args.watch:
        return 0
    return progress.watch_and_report(client, job.job_id, seen, as_json=args.json)
