"""What the deployment tests share: where the files are, and which ``RNNLM_*`` variables
something in the image actually reads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rnnlm.server.config import ServerConfig, env_name

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"

# Variables a container may be given that are not server settings: the rnnlm CLI's, read by
# the HEALTHCHECK (`rnnlm health`, which must reach the server: over TLS it needs the CA and
# the certificate's name, with mutual TLS a client certificate too) and by `docker exec ...
# rnnlm ...`. Each is checked to still appear in the client's source (test_docker.py).
CLI_ENV = {
    "RNNLM_TARGET": "the server to ask: localhost:50051 in the image",
    "RNNLM_TLS": "connect with TLS",
    "RNNLM_CA_FILE": "the CA that signed the server's certificate",
    "RNNLM_SERVER_NAME": "the name in the server's certificate (the target is localhost)",
    "RNNLM_CLIENT_CERT": "client certificate, for mutual TLS",
    "RNNLM_CLIENT_KEY": "its key",
}


def server_env_names() -> set[str]:
    """Exactly the variables `rnnlm serve` reads: one per ServerConfig field."""
    return {env_name(f.name) for f in dataclasses.fields(ServerConfig)}


def known_env_names() -> set[str]:
    return server_env_names() | set(CLI_ENV)


def unknown_rnnlm_names(names: object) -> list[str]:
    known = known_env_names()
    return sorted(n for n in names if n.startswith("RNNLM_") and n not in known)


def add_line(path: Path, after: str, line: str) -> None:
    """Insert ``line`` after the first ``after`` in ``path`` (a deliberate fault in a copy)."""
    text = path.read_text()
    assert after in text, (path, after)
    path.write_text(text.replace(after, f"{after}\n{line}", 1))
