"""Server configuration: one dataclass, filled from command-line flags whose defaults come from
``RNNLM_*`` environment variables (a flag beats the variable, the variable beats the default).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import ssl
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rnnlm.model.config import check_device

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Short keys are guessable; gRPC metadata values must be printable ASCII anyway.
MIN_API_KEY_LENGTH = 16
# Upper bounds of the durations (seconds; the batch wait in ms): generous, but finite.
MAX_SECONDS = {
    "batch_max_wait_ms": 10_000.0,
    "cache_refresh_s": 86_400.0,
    "shutdown_grace_s": 3_600.0,
    "job_lease_s": 86_400.0,
    "request_id_ttl_s": 366 * 86_400.0,
    "event_retention_s": 366 * 86_400.0,
    "checkpoint_retention_s": 366 * 86_400.0,
    "sweep_interval_s": 86_400.0,
    "orphan_grace_s": 7 * 86_400.0,
    "publish_retry_s": 7 * 86_400.0,
}


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
        default=None,
        repr=False,  # may hold a password
        metadata={
            "help": "redis://[[user]:password@]host:port/db, or rediss:// for TLS (CA file: "
            "?ssl_ca_certs=PATH); unset: local store",
            "secret": True,
        },
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
    publish_retry_s: float = field(
        default=900.0,
        metadata={
            "help": "how long a trained model waits in memory for an unavailable store to "
            "publish it (retrying, backing off); then its job fails"
        },
    )
    # Retention (docs/deployment.md, "Retention"): what is kept how long, and the sweep.
    request_id_ttl_s: float = field(
        default=86_400.0,
        metadata={
            "help": "how long a Train request_id is remembered (a retry within it "
            "returns the same job)"
        },
    )
    event_retention_s: float = field(
        default=7 * 86_400.0,
        metadata={"help": "how long an ended job's event log is kept (WatchTrainingJob)"},
    )
    checkpoint_retention_s: float = field(
        default=7 * 86_400.0,
        metadata={
            "help": "how long a cancelled or interrupted job's checkpoint is kept; "
            "then the job can no longer be resumed"
        },
    )
    sweep_interval_s: float = field(
        default=600.0,
        metadata={
            "help": "how often the sweep applies retention and removes orphaned data; 0: never"
        },
    )
    orphan_grace_s: float = field(
        default=3_600.0,
        metadata={"help": "orphaned data younger than this is left alone (writes in flight)"},
    )
    server_id: str = field(
        default_factory=default_server_id,
        metadata={"help": "this server's name in job records (default: host-pid-random)"},
    )
    reflection: bool = field(default=True, metadata={"help": "serve gRPC server reflection"})
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})
    shutdown_grace_s: float = field(
        default=8.0,
        metadata={
            "help": "on SIGTERM/SIGINT, how long calls in flight may take to finish "
            "(keep it below the orchestrator's kill timeout: Docker's is 10 s)"
        },
    )
    metrics_address: str | None = field(
        default=None,
        metadata={"help": "host:port of the Prometheus /metrics endpoint; unset: none"},
    )
    torch_threads: int = field(
        default=0,
        metadata={"help": "CPU threads of each torch operation; 0: torch's default (all cores)"},
    )
    # Secrets: never shown in --help (the default may come from the environment), never in
    # the dataclass repr.
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata={
            "help": "key required (x-api-key metadata) by the calls that change state; "
            "unset: no key",
            "secret": True,
        },
    )
    api_key_file: str | None = field(
        default=None,
        metadata={"help": "read the API key from this file (e.g. a Docker secret)"},
    )
    require_key_for_reads: bool = field(
        default=False,
        metadata={
            "help": "require the API key for every call (scoring, generation, listing, "
            "watching too), not only those that change state; health needs none"
        },
    )
    tls_cert: str | None = field(
        default=None, metadata={"help": "PEM certificate chain: serve TLS (needs --tls-key)"}
    )
    tls_key: str | None = field(default=None, metadata={"help": "PEM private key of --tls-cert"})
    tls_client_ca: str | None = field(
        default=None,
        metadata={"help": "PEM CA bundle: require client certificates it signed (mutual TLS)"},
    )

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
        for name in MAX_SECONDS:
            value = getattr(self, name)
            # inf and nan parse as floats; a timeout of either breaks the server later.
            if not isinstance(value, (int, float)) or not 0 <= value <= MAX_SECONDS[name]:
                raise ValueError(
                    f"{name} must be a number in [0, {MAX_SECONDS[name]:g}], got {value!r}"
                )
        if self.max_streams >= self.workers:
            raise ValueError(
                f"max_streams ({self.max_streams}) must be below workers ({self.workers}), so "
                "that unary calls always find a thread"
            )
        if not self.request_id_ttl_s > 0:
            raise ValueError(f"request_id_ttl_s must be > 0, got {self.request_id_ttl_s!r}")
        if not self.job_lease_s > 0:
            raise ValueError(f"job_lease_s must be > 0, got {self.job_lease_s!r}")
        check_address("address", self.address)
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads must be >= 0 (0: default), got {self.torch_threads}")
        if self.metrics_address:
            check_address("metrics_address", self.metrics_address)
        if self.redis_url:
            check_redis_url(self.redis_url)
        self._check_security()
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        self.log_level = self.log_level.upper()
        check_device("", self.device)

    def _check_security(self) -> None:
        """TLS files exist and come in pairs; the API key comes from one place and is read
        now, so that a missing secret stops the server at start, not at the first call."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: set both to serve TLS, or none")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        for name in ("tls_cert", "tls_key", "tls_client_ca", "api_key_file"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ValueError(f"{name}: no such file: {path!r}")
        if self.api_key is not None and self.api_key_file:
            raise ValueError("give the API key once: api_key or api_key_file, not both")
        if self.tls_cert and self.tls_key:
            check_tls_files(self.tls_cert, self.tls_key, self.tls_client_ca)
        if self.api_key_file:
            try:
                with open(self.api_key_file, encoding="utf-8") as f:
                    self.api_key = f.read().strip()
            except (OSError, UnicodeDecodeError) as err:
                raise ValueError(f"api_key_file {self.api_key_file!r}: {err}") from None
            if not self.api_key:
                raise ValueError(f"api_key_file {self.api_key_file!r} is empty")
        key = self.api_key
        if self.require_key_for_reads and key is None:
            raise ValueError(
                "require_key_for_reads needs an API key: set api_key or api_key_file too"
            )
        if key is not None and not (
            len(key) >= MIN_API_KEY_LENGTH and key.isascii() and key.isprintable()
        ):
            raise ValueError(
                f"api_key must be at least {MIN_API_KEY_LENGTH} printable ASCII characters "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
            )

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


def check_address(name: str, address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{name} must be host:port with a port in [0, 65535], got {address!r}")


def check_redis_url(url: str) -> None:
    """The scheme, and that the files a URL names (?ssl_ca_certs=...) exist: a typo there
    would otherwise look like an outage and leave the server NOT_SERVING for ever."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"redis_url must start with redis://, rediss:// (TLS) or unix://, got {parts.scheme!r}"
        )
    query = urllib.parse.parse_qs(parts.query)
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        for path in query.get(key, []):
            if not os.path.isfile(path):
                raise ValueError(f"redis_url: {key}: no such file: {path!r}")


def check_tls_files(cert: str, key: str, client_ca: str | None) -> None:
    """Load the certificate, key and CA once now, so that a wrong file is named at start
    rather than reported by gRPC as a failure to bind the port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as err:
        raise ValueError(
            f"tls_cert {cert!r} and tls_key {key!r} are not a PEM certificate chain and "
            f"its private key: {err}"
        ) from None
    if client_ca:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as err:
            raise ValueError(f"tls_client_ca {client_ca!r} is not a PEM CA bundle: {err}") from None


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


SECRET_FIELDS = frozenset(
    f.name for f in dataclasses.fields(ServerConfig) if f.metadata.get("secret")
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except of secrets: theirs may come from the environment."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.dest in SECRET_FIELDS:
            return action.help
        return super()._get_help_string(action)


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """One flag per field, e.g. ``--max-concurrent-jobs`` / ``RNNLM_MAX_CONCURRENT_JOBS``."""
    parser = argparse.ArgumentParser(
        prog="rnnlm serve",
        description="Serve rnnlm: train, score and generate over gRPC.",
        formatter_class=_HelpFormatter,
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
