"""What every call of the HTTP API goes through before its route, as the gRPC interceptor
does for the service: refused while the server drains (503) or is at its concurrent calls
(429), without the API key it needs (401), or with a body over --max-message-bytes (413).
A plain ASGI middleware, so that these answers come before the body is read or parsed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException

from rnnlm.server.errors import ResourceExhausted, Unavailable
from rnnlm.server.http.errors import BodyTooLarge, error_of
from rnnlm.server.security import ApiKeyCheck

# Open to all: the API's description and the health check (load balancers call it).
OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
HOW_TO_SEND = (
    "send it as an 'Authorization: Bearer KEY' header (the OpenAI SDK's api_key, "
    "lm-eval's OPENAI_API_KEY)"
)


def rpc_of(path: str) -> str:
    """The RPC whose access rule an HTTP call follows (``security.READ_METHODS``)."""
    if path.startswith("/v1/models"):
        return "ListModels"
    if path.endswith("/completions"):
        return "ScoreSentence"
    return "GetModel"  # the tokenizer of a model: its vocabulary


class Gate:
    def __init__(
        self,
        app: Any,
        *,
        max_body_bytes: int,
        max_calls: int,
        draining: Callable[[], bool],
        api_key: ApiKeyCheck,
    ) -> None:
        self.app = app
        self.max_body_bytes, self.max_calls = max_body_bytes, max_calls
        self.draining, self.api_key = draining, api_key
        self.in_flight = 0  # touched only from the event loop's thread

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await _answer(send, *error_of(refusal, f"{scope['method']} {scope['path']}"))
                return
            await self.app(scope, self._limited(receive), send)
        finally:
            self.in_flight -= 1

    def _refusal(self, scope: dict) -> Exception | None:
        if self.draining():
            return Unavailable("this server is shutting down; retry the call on another replica")
        if self.in_flight > self.max_calls:
            return ResourceExhausted(
                f"{self.max_calls} calls are in flight on this server, its limit "
                "(--workers x 4); retry later or on another replica"
            )
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            shown = f"{scope['method']} {scope['path']}"
            self.api_key.check(rpc_of(scope["path"]), headers.items(), HOW_TO_SEND, shown)
        except Exception as err:
            return err
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return BodyTooLarge(too_large(int(length), self.max_body_bytes))
        return None

    def _limited(self, receive: Callable) -> Callable:
        """``receive`` that refuses a body (sent in chunks, without a length) once it is
        over the limit: 413 through FastAPI, which passes an HTTPException on."""
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise HTTPException(413, too_large(received, self.max_body_bytes))
            return message

        return limited


def too_large(size: int, limit: int) -> str:
    return (
        f"the request body is {size:,} bytes (or more); at most {limit:,} are accepted "
        "(--max-message-bytes): split the request"
    )


async def _answer(send: Callable, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
