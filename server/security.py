"""Who may call what: the optional API key on the calls that change state, and TLS.

The key travels as call metadata (``x-api-key: KEY``, or ``authorization: Bearer KEY`` as
sent by generic gRPC tools). By default reads (scoring, generation, listing, watching) need
no key: the key protects stored data, not the compute. With ``require_for_reads``
(``--require-key-for-reads``) every call of the service needs it, since reads show a model's
whole vocabulary, sample its training text and list jobs with their corpus ids, request ids
and server names. The gRPC health service never needs a key (load balancers call it); it is
not ours, so the interceptor never sees it.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc

from rnnlm.server.errors import Unauthenticated

API_KEY_HEADER = "x-api-key"
# The calls that only read. Every other call of the service writes to the store or starts
# or stops work (uploads, training, cancel, resume, deletes, AttachNgramModel), so it needs
# the key: a new RPC is protected until it is listed here, never open by omission.
READ_METHODS = frozenset(
    {
        *("ListCorpora", "WatchTrainingJob", "GetTrainingJob", "ListTrainingJobs"),
        *("ScoreSentence", "Generate", "ListModels", "GetModel", "ExportArpa"),
        "MeasureGradientFlow",
    }
)
_HOW_TO_SEND = (
    f"send it as {API_KEY_HEADER!r} call metadata (rnnlm --api-key or env RNNLM_API_KEY; "
    "LMClient(api_key=...))"
)


def presented_key(metadata: Iterable[Any] | None) -> str | None:
    for item in metadata or ():
        key, value = item
        if key == API_KEY_HEADER and isinstance(value, str):
            return value
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return None


class ApiKeyCheck:
    """Raises ``Unauthenticated`` for a protected call without the right key: the calls that
    change state, or every call with ``require_for_reads``."""

    def __init__(self, api_key: str | None, require_for_reads: bool = False) -> None:
        self._key = api_key.encode() if api_key else None
        if require_for_reads and self._key is None:
            raise ValueError("require_for_reads needs an API key")
        self._every_call = require_for_reads

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def check(
        self,
        method: str,
        metadata: Iterable[Any] | None,
        how_to_send: str = _HOW_TO_SEND,
        shown_as: str | None = None,
    ) -> None:
        """``method`` is the RPC's name (the HTTP front end names the RPC its call does, and
        shows the client its own ``shown_as``, e.g. "POST /v1/completions")."""
        if self._key is None or (method in READ_METHODS and not self._every_call):
            return
        sent = presented_key(metadata)
        shown = shown_as or method
        if not sent:
            why = (
                "reads stored data (--require-key-for-reads)"
                if method in READ_METHODS
                else "changes stored state"
            )
            raise Unauthenticated(
                f"{shown} {why} and this server requires an API key: " + how_to_send
            )
        # Constant time: the comparison must not tell an attacker how much of a guess matched.
        if not hmac.compare_digest(sent.encode(), self._key):
            raise Unauthenticated(f"wrong API key for {shown}; " + how_to_send)


def server_credentials(
    cert: str | None, key: str | None, client_ca: str | None
) -> grpc.ServerCredentials | None:
    """TLS credentials from PEM files, or None for plaintext. With ``client_ca`` the server
    requires a client certificate signed by that CA (mutual TLS)."""
    if not cert or not key:
        return None
    pair = (Path(key).read_bytes(), Path(cert).read_bytes())
    ca = Path(client_ca).read_bytes() if client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=bool(ca))
