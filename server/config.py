"""Server configuration: one dataclass, filled from command-line flags whose defaults come from
``RNNLM_*`` environment variables (a flag beats the variable, the variable beats the default).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rnnlm.model.config import check_device

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def default_server_id() -> str:
    # Unique per process: a restarted server must not mistake its predecessor's jobs for
    # its own; operators who want immediate recovery set a stable --server-id.
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class ServerConfig:
    """Every setting of the server. ``help`` metadata becomes the flag's help text."""

    address: str = field(
        default="127.0.0.1:50051", metadata={"help": "host:port to listen on (port 0: any free)"}
    )
    store_dir: str = field(
        default="rnnlm-data", metadata={"help": "directory of the local store (no Redis URL)"}
    )
    redis_url: str | None = field(
        default=None, metadata={"help": "redis://[:password@]host:port/db; unset: local store"}
    )
    redis_prefix: str = field(default="rnnlm", metadata={"help": "prefix of every Redis key"})
    corpus_dir: str | None = field(
        default=None,
        metadata={"help": "directory whose files Train may name by server_path; unset: none"},
    )
    device: str = field(
        default="auto", metadata={"help": "auto, cpu, cuda or cuda:N, for training and serving"}
    )
    workers: int = field(default=32, metadata={"help": "gRPC worker threads"})
    max_concurrent_jobs: int = field(
        default=2, metadata={"help": "training jobs running at once on this server"}
    )
    max_sentences_per_request: int = field(
        default=256, metadata={"help": "sentences in one ScoreSentence request"}
    )
    max_tokens_per_sentence: int = field(
        default=512, metadata={"help": "words in one scored sentence or prompt"}
    )
    max_generated_tokens: int = field(
        default=256, metadata={"help": "max_tokens of one generated sentence"}
    )
    max_generated_sentences: int = field(
        default=64, metadata={"help": "sentences (or beam width) of one Generate request"}
    )
    max_streams: int = field(
        default=16,
        metadata={"help": "open Watch/Generate streams (each holds a worker thread)"},
    )
    max_model_params: int = field(
        default=50_000_000, metadata={"help": "parameters of a model a Train request may ask for"}
    )
    max_corpus_bytes: int = field(
        default=256 * 1024 * 1024, metadata={"help": "size of an uploaded or server-side corpus"}
    )
    max_message_bytes: int = field(
        default=16 * 1024 * 1024, metadata={"help": "size of one gRPC message"}
    )
    batching: bool = field(default=True, metadata={"help": "batch concurrent ScoreSentence calls"})
    batch_max_size: int = field(
        default=128, metadata={"help": "sentences in one batched forward pass"}
    )
    batch_max_wait_ms: float = field(
        default=2.0, metadata={"help": "how long a batch waits for more requests"}
    )
    cache_size: int = field(default=4, metadata={"help": "models kept loaded in memory"})
    cache_refresh_s: float = field(
        default=1.0,
        metadata={"help": "how often a cached model checks the store for a new version"},
    )
    checkpoint_every: int = field(
        default=200, metadata={"help": "training steps between checkpoints (a job may override)"}
    )
    keep_versions: int = field(default=3, metadata={"help": "model versions kept in the store"})
    job_lease_s: float = field(
        default=15.0,
        metadata={"help": "a running job whose server is silent this long is interrupted"},
    )
    server_id: str = field(
        default_factory=default_server_id,
        metadata={"help": "this server's name in job records (default: host-pid-random)"},
    )
    reflection: bool = field(default=True, metadata={"help": "serve gRPC server reflection"})
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})

    def __post_init__(self) -> None:
        positive_ints = (
            "workers",
            "max_concurrent_jobs",
            "max_sentences_per_request",
            "max_tokens_per_sentence",
            "max_generated_tokens",
            "max_generated_sentences",
            "max_streams",
            "max_model_params",
            "max_corpus_bytes",
            "max_message_bytes",
            "batch_max_size",
            "cache_size",
            "checkpoint_every",
            "keep_versions",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("batch_max_wait_ms", "cache_refresh_s"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")
        if self.max_streams >= self.workers:
            raise ValueError(
                f"max_streams ({self.max_streams}) must be below workers ({self.workers}), so "
                "that unary calls always find a thread"
            )
        if not self.job_lease_s > 0:
            raise ValueError(f"job_lease_s must be > 0, got {self.job_lease_s!r}")
        host, _, port = self.address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"address must be host:port, got {self.address!r}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        self.log_level = self.log_level.upper()
        check_device("", self.device)

    @classmethod
    def from_args(
        cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> ServerConfig:
        """Flags, then ``RNNLM_*`` variables, then the defaults."""
        parser = build_parser(os.environ if environ is None else environ)
        args = parser.parse_args(argv)
        try:
            return cls(**vars(args))
        except ValueError as err:
            parser.error(str(err))
            raise  # unreachable: parser.error exits


def env_name(field_name: str) -> str:
    return "RNNLM_" + field_name.upper()


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _field_type(f: dataclasses.Field) -> Any:
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, (int, float)):
        return type(default)
    return str


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """One flag per field, e.g. ``--max-concurrent-jobs`` / ``RNNLM_MAX_CONCURRENT_JOBS``."""
    parser = argparse.ArgumentParser(
        prog="rnnlm serve",
        description="Serve rnnlm: train, score and generate over gRPC.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(ServerConfig):
        kind = _field_type(f)
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        env = env_name(f.name)
        if env in environ:
            try:
                default = kind(environ[env])
            except (ValueError, argparse.ArgumentTypeError) as err:
                parser.error(f"environment variable {env}={environ[env]!r}: {err}")
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=kind,
            default=default,
            metavar=f.name.upper() if kind is not _parse_bool else "BOOL",
            help=f"{f.metadata.get('help', '')} [env {env}]",
        )
    return parser
