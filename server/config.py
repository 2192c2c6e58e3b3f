"""Server configuration: one dataclass, filled from command-line flags whose defaults come from
``RNNLM_*`` environment variables (a flag beats the variable, the variable beats the default).

Not pydantic-settings (weighed for issue 11): to keep what tests and operators rely on
(messages that name the variable and the allowed range, ``--help`` listing the variables,
``from_args`` taking an environment mapping, ``ServerConfig`` a dataclass) we would override
most of what it brings, and it would add pydantic to the server's start-up (~85 ms).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import socket
import ssl
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rnnlm.model.checks import integer, number, one_of
from rnnlm.model.config import check_device
from rnnlm.server.cores import check_processes, parse_processes
from rnnlm.server.store.base import DEFAULT_PREFIX
from rnnlm.server.store.redis_sentinel import SCHEME as SENTINEL_SCHEME
from rnnlm.server.store.redis_sentinel import SentinelUrl

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
QUANTIZE_MODES = ("none", "int8")  # --quantize
# Short keys are guessable; gRPC metadata values must be printable ASCII anyway.
MIN_API_KEY_LENGTH = 16
_DAY = 86_400.0


def default_server_id() -> str:
    # Unique per process: a restarted server must not mistake its predecessor's jobs for
    # its own; operators who want immediate recovery set a stable --server-id.
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def setting(
    default: Any,
    text: str,
    *,
    least: int | None = None,
    most: float | None = None,
    secret: bool = False,
    factory: Callable[[], Any] | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """One setting: its default, its help text, and its bounds (checked in
    ``__post_init__``): ``least`` for counts, ``most`` for durations (``[0, most]``: generous,
    but finite, as a timeout of inf or nan breaks the server later). A secret is never shown:
    not in ``--help`` (its default may come from the environment), not in the repr.
    ``parse`` reads the flag or variable where the default's type would not do."""
    rule = None if least is None else integer(least)
    if most is not None:
        rule = number(f"[0, {most:g}]")
    metadata = {"help": text, "rule": rule, "secret": secret, "parse": parse}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, repr=not secret, metadata=metadata)


@dataclass
class ServerConfig:
    """Every setting of the server, each stated once here: ``from_args`` makes the flags and
    variables from these fields, and the README's table lists them (a test compares)."""

    address: str = setting("127.0.0.1:50051", "host:port to listen on (port 0: any free)")
    store_dir: str = setting("rnnlm-data", "directory of the local store (no Redis URL)")
    redis_url: str | None = setting(
        None,
        "redis://[[user]:password@]host:port/db, or rediss:// for TLS (CA file: "
        "?ssl_ca_certs=PATH), or redis+sentinel://[[user]:password@]host:port[,host:port...]"
        "/service_name[/db] for the primary Redis Sentinels name; unset: local store",
        secret=True,  # may hold a password
    )
    redis_prefix: str = setting(DEFAULT_PREFIX, "prefix of every Redis key")
    corpus_dir: str | None = setting(
        None, "directory whose files Train may name by server_path; unset: none"
    )
    device: str = setting("auto", "auto, cpu, cuda or cuda:N, for training and serving")
    workers: int = setting(32, "gRPC worker threads", least=1)
    processes: int = setting(
        1,
        "server processes sharing the port (SO_REUSEPORT), each with its own --workers, model "
        "cache and batcher, and its share of the cores for math threads; auto: one per core",
        least=1,
        parse=parse_processes,
    )
    max_concurrent_jobs: int = setting(2, "training jobs running at once on this server", least=1)
    max_sentences_per_request: int = setting(256, "sentences in one ScoreSentence request", least=1)
    max_tokens_per_sentence: int = setting(512, "words in one scored sentence or prompt", least=1)
    max_generated_tokens: int = setting(256, "max_tokens of one generated sentence", least=1)
    max_generated_sentences: int = setting(
        64, "sentences (or beam width) of one Generate request", least=1
    )
    max_streams: int = setting(
        16, "open Watch/Generate streams (each holds a worker thread)", least=1
    )
    max_model_params: int = setting(
        50_000_000, "parameters of a model a Train request may ask for", least=1
    )
    max_corpus_bytes: int = setting(
        256 * 1024 * 1024, "size of an uploaded or server-side corpus", least=1
    )
    max_message_bytes: int = setting(16 * 1024 * 1024, "size of one gRPC message", least=1)
    batching: bool = setting(True, "batch concurrent ScoreSentence calls")
    quantize: str = setting(
        "none", "int8: serve float32 gru/lstm (CPU) with int8 weights (docs/model.md); none: float"
    )
    batch_max_size: int = setting(128, "sentences in one batched forward pass", least=1)
    batch_max_wait_ms: float = setting(
        2.0, "how long a batch waits for more requests", most=10_000.0
    )
    batch_workers: int = setting(
        1, "threads running a model's batched forward passes (2: one overlaps the other)", least=1
    )
    cache_size: int = setting(4, "models kept loaded in memory", least=1)
    cache_refresh_s: float = setting(
        1.0, "how often a cached model checks the store for a new version", most=_DAY
    )
    checkpoint_every: int = setting(
        200, "training steps between checkpoints (a job may override)", least=1
    )
    keep_versions: int = setting(3, "model versions kept in the store", least=1)
    job_lease_s: float = setting(
        15.0, "a running job whose server is silent this long is interrupted", most=_DAY
    )
    publish_retry_s: float = setting(
        900.0,
        "how long a trained model waits in memory for an unavailable store to publish it "
        "(retrying, backing off); then its job fails",
        most=7 * _DAY,
    )
    # Retention (docs/deployment.md, "Retention"): what is kept how long, and the sweep.
    request_id_ttl_s: float = setting(
        _DAY,
        "how long a Train request_id is remembered (a retry within it returns the same job)",
        most=366 * _DAY,
    )
    event_retention_s: float = setting(
        7 * _DAY, "how long an ended job's event log is kept (WatchTrainingJob)", most=366 * _DAY
    )
    checkpoint_retention_s: float = setting(
        7 * _DAY,
        "how long a cancelled or interrupted job's checkpoint is kept; then the job can no "
        "longer be resumed",
        most=366 * _DAY,
    )
    sweep_interval_s: float = setting(
        600.0,
        "how often the sweep applies retention and removes orphaned data; 0: never",
        most=_DAY,
    )
    orphan_grace_s: float = setting(
        3_600.0,
        "orphaned data younger than this is left alone (writes in flight)",
        most=7 * _DAY,
    )
    server_id: str = setting(
        None,
        "this server's name in job records (default: host-pid-random)",
        factory=default_server_id,
    )
    reflection: bool = setting(True, "serve gRPC server reflection")
    log_level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR")
    shutdown_grace_s: float = setting(
        8.0,
        "on SIGTERM/SIGINT, how long calls in flight may take to finish (keep it below the "
        "orchestrator's kill timeout: Docker's is 10 s)",
        most=3_600.0,
    )
    metrics_address: str | None = setting(
        None, "host:port of the Prometheus /metrics endpoint; unset: none"
    )
    http_address: str | None = setting(
        None,
        "host:port of the OpenAI-compatible HTTP API (/v1/completions, /v1/models; "
        "docs/http.md), with the same key and TLS as gRPC; unset: none",
    )
    torch_threads: int = setting(
        0, "CPU threads of each torch operation; 0: torch's default (all cores)"
    )
    api_key: str | None = setting(
        None,
        "key required (x-api-key metadata) by the calls that change state; unset: no key",
        secret=True,
    )
    api_key_file: str | None = setting(
        None, "read the API key from this file (e.g. a Docker secret)"
    )
    require_key_for_reads: bool = setting(
        False,
        "require the API key for every call (scoring, generation, listing, watching too), "
        "not only those that change state; health needs none",
    )
    tls_cert: str | None = setting(None, "PEM certificate chain: serve TLS (needs --tls-key)")
    tls_key: str | None = setting(None, "PEM private key of --tls-cert")
    tls_client_ca: str | None = setting(
        None, "PEM CA bundle: require client certificates it signed (mutual TLS)"
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.metadata["rule"]:
                f.metadata["rule"].check(f.name, getattr(self, f.name))
        if self.max_streams >= self.workers:
            raise ValueError(
                f"max_streams ({self.max_streams}) must be below workers ({self.workers}), so "
                "that unary calls always find a thread"
            )
        for name in ("request_id_ttl_s", "job_lease_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        check_address("address", self.address)
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads must be >= 0 (0: default), got {self.torch_threads}")
        check_processes(self.processes, self.torch_threads)
        if self.metrics_address:
            check_address("metrics_address", self.metrics_address)
        if self.http_address:
            check_address("http_address", self.http_address)
            check_http_installed()
        if self.redis_url:
            check_redis_url(self.redis_url)
        self._check_security()
        self.log_level = one_of(LOG_LEVELS).check("log_level", self.log_level.upper())
        check_device("", self.device)
        one_of(QUANTIZE_MODES).check("quantize", self.quantize)

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

    @property
    def max_concurrent_calls(self) -> int:
        """Calls in flight at once, per front end (gRPC's maximum_concurrent_rpcs)."""
        return self.workers * 4

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


def check_address(name: str, address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{name} must be host:port with a port in [0, 65535], got {address!r}")


def check_http_installed() -> None:
    """The HTTP API's packages (the ``http`` extra), named at start rather than missed later."""
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(
            f"http_address needs {' and '.join(missing)}, which are not installed: "
            "pip install 'rnnlm[http]' (the server extra includes it)"
        )


def check_redis_url(url: str) -> None:
    """The scheme, and that the files a URL names (?ssl_ca_certs=...) exist: a typo there
    would otherwise look like an outage and leave the server NOT_SERVING for ever."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == SENTINEL_SCHEME:
        SentinelUrl.parse(url)  # says what is wrong, without repeating the password
        return
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"redis_url must start with redis://, rediss:// (TLS), unix:// or "
            f"{SENTINEL_SCHEME}:// (Sentinel), got {parts.scheme!r}"
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


def _parser_type(default: Any) -> Callable[[str], Any]:
    """What parses a flag or variable: by the type of the field's default (None: a string)."""
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, (int, float)):
        return type(default)
    return str


SECRET_FIELDS = frozenset(f.name for f in dataclasses.fields(ServerConfig) if f.metadata["secret"])


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
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        kind = f.metadata["parse"] or _parser_type(default)
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
            help=f"{f.metadata['help']} [env {env}]",
        )
    return parser
