"""The HTTP front end's routes, as thin as the gRPC servicer: each converts and delegates
to ``completions.Completions`` (which calls the service core, ``Serving``), and every error
is raised and answered in one place, as OpenAI's JSON (``errors.py``).

Every call of the API first passes ``Gate``: refused with 503 while the server drains,
429 over the server's concurrent calls (--workers x 4, gRPC's limit too), 401 without the
API key where the server wants one (the same key, as ``Authorization: Bearer KEY``), 413
for a body over --max-message-bytes. The API's description (/openapi.json, /docs) and
/health are open to all.

Blocking work (tokenising, scoring, generating) runs in the threads of the ASGI server's
pool, which is sized to --workers; a stream pulls each chunk in one of them.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from rnnlm.server.config import ServerConfig
from rnnlm.server.errors import ServiceError, quote
from rnnlm.server.http import schema
from rnnlm.server.http.completions import Completions
from rnnlm.server.http.errors import BadField, error_body, error_of
from rnnlm.server.http.gate import OPEN_PATHS, Gate
from rnnlm.server.http.tokens import model_card, text_of_ids, tokenize, tokenizer_info
from rnnlm.server.ids import check_model_id
from rnnlm.server.security import ApiKeyCheck

# What each of the documented error statuses means here.
ERRORS = {
    400: "A field is malformed or out of range (`param` names it), or the body is not JSON.",
    401: "The server requires an API key: `Authorization: Bearer KEY`.",
    404: "No such model.",
    413: "The body is over --max-message-bytes.",
    429: "Over a limit of the server (words, sentences, streams, calls): split or retry.",
    503: "The store is unreachable, or the server is shutting down: retry elsewhere.",
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": schema.ErrorBody, "description": text} for status, text in ERRORS.items()
}
SSE = "text/event-stream"


def build_app(
    completions: Completions,
    config: ServerConfig,
    api_key: ApiKeyCheck,
    draining: Callable[[], bool],
    serving: Callable[[], bool],
) -> FastAPI:
    """The API over ``completions``; ``draining()``: the server is shutting down;
    ``serving()``: its store answers (health)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.workers
        yield

    app = FastAPI(
        title="rnnlm",
        summary="OpenAI-compatible completions with exact prompt log-probabilities",
        description="Score and continue text with rnnlm's recurrent language models. "
        "Tokens are the model's words; see docs/http.md.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(
        Gate,  # a plain ASGI middleware class
        max_body_bytes=config.max_message_bytes,
        max_calls=config.max_concurrent_calls,
        draining=draining,
        api_key=api_key,
    )
    _add_error_handlers(app)
    limit = config.max_tokens_per_sentence
    registry = completions.serving.cache.registry

    def loaded(model_id: str):
        return completions.serving.cache.get(check_model_id(model_id))

    @app.get("/v1/models", response_model=schema.ModelList, responses=RESPONSES)
    def list_models() -> dict:
        """The models that can serve (those with a trained version)."""
        return {"object": "list", "data": [model_card(m) for m in registry.list() if m.current]}

    @app.get("/v1/models/{model_id}", response_model=schema.ModelCard, responses=RESPONSES)
    def get_model(model_id: str) -> dict:
        return model_card(registry.get(model_id))

    def complete(request: schema.CompletionRequest, model_id: str | None) -> Any:
        if not request.stream:
            return JSONResponse(completions.complete(request, model_id))
        stop = threading.Event()
        chunks = completions.stream(request, model_id, stop.is_set)
        first = next(chunks)  # errors so far are the call's status; then the stream's
        return StreamingResponse(_events(first, chunks, stop), media_type=SSE)

    completion_responses = {
        **RESPONSES,
        200: {
            "model": schema.Completion,
            "description": "The completion; with stream, server-sent events: "
            "`data: {Completion}` chunks, then `data: [DONE]`.",
            "content": {SSE: {}},
        },
    }

    @app.post("/v1/completions", response_model=None, responses=completion_responses)
    def create_completion(request: schema.CompletionRequest) -> Any:
        """Continue prompts, or score them (`echo` with `logprobs` and `max_tokens` 0)."""
        return complete(request, None)

    @app.post(
        "/models/{model_id}/v1/completions", response_model=None, responses=completion_responses
    )
    def create_model_completion(model_id: str, request: schema.CompletionRequest) -> Any:
        """The same, for the model of the path: a base URL per model, as
        `lm-evaluation-harness` wants one for its tokenizer (`tokenizer_backend=remote`)."""
        return complete(request, model_id)

    @app.get(
        "/models/{model_id}/tokenizer_info",
        response_model=schema.TokenizerInfo,
        responses=RESPONSES,
    )
    def get_tokenizer_info(model_id: str) -> dict:
        return tokenizer_info(loaded(model_id), limit)

    @app.post("/models/{model_id}/tokenize", response_model=schema.Tokens, responses=RESPONSES)
    def tokenize_text(model_id: str, request: schema.TokenizeRequest) -> dict:
        """A text as the model's token ids, tokenised as its training text was."""
        _same_model(model_id, request.model)
        ids = tokenize(loaded(model_id), request.prompt, request.add_special_tokens, limit)
        return {"tokens": ids, "count": len(ids), "max_model_len": limit}

    @app.post(
        "/models/{model_id}/detokenize", response_model=schema.Detokenized, responses=RESPONSES
    )
    def detokenize_ids(model_id: str, request: schema.DetokenizeRequest) -> dict:
        _same_model(model_id, request.model)
        return {"prompt": text_of_ids(loaded(model_id), request.tokens)}

    @app.get("/health", response_model=schema.Health, responses={503: {"model": schema.Health}})
    def health() -> Any:
        """`serving` while the store answers and the server is not shutting down."""
        if serving() and not draining():
            return {"status": "serving"}
        return JSONResponse({"status": "not_serving"}, status_code=503)

    assert {"/health", "/openapi.json", "/docs"} <= OPEN_PATHS
    _without_422(app)
    return app


def _same_model(path_model: str, body_model: str | None) -> None:
    if body_model not in (None, path_model):
        raise BadField("model", f"model is {body_model!r}; the path names {path_model!r}")


async def _events(first: dict, chunks: Iterator[dict], stop: threading.Event):
    """Server-sent events as the OpenAI SDK reads them: ``data: {json}`` and a blank line
    per chunk, ``data: [DONE]`` at the end. An error once the stream has begun is sent as
    a last ``data: {"error": ...}``. When the client goes away, ``stop`` ends the
    generating at its next word, and the stream's slot is given back."""
    try:
        yield f"data: {json.dumps(first)}\n\n"
        while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"
    except Exception as err:
        _, body = error_of(err, "POST completions (stream)")
        yield f"data: {json.dumps(body)}\n\n"
    finally:
        stop.set()
        with contextlib.suppress(ValueError):  # still running in a thread: stop ends it
            chunks.close()  # type: ignore[attr-defined]


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc.errors())
        return JSONResponse(error_body(400, message, param, "invalid_argument"), 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        body = error_body(exc.status_code, str(exc.detail), None, code.get(exc.status_code))
        return JSONResponse(body, exc.status_code, headers=exc.headers)

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        status, body = error_of(exc, f"{request.method} {request.url.path}")
        return JSONResponse(body, status)

    # What the service raises (interceptors.STATUS_OF's classes: ServiceErrors, the model's
    # ValueErrors), and anything else: 500. (Starlette logs the last again, re-raised.)
    for cls in (ServiceError, ValueError, Exception):
        app.add_exception_handler(cls, failed)


def validation_message(errors: Any) -> tuple[str, str | None]:
    """One message for what pydantic found, naming the field (``param``); None for a body
    that is not JSON at all."""
    first = errors[0]
    loc = [str(part) for part in first["loc"]]
    if first["type"] == "json_invalid":
        why = first.get("ctx", {}).get("error", "")
        return f"the body is not valid JSON: {why} at character {loc[-1]}", None
    if loc == ["body"]:
        return "the body must be a JSON object of the request's fields", None
    param = loc[1] if len(loc) > 1 and loc[0] == "body" else loc[-1]
    if first["type"] == "extra_forbidden":
        return f"{param} is not a field of this request (see /openapi.json)", param
    forms = sorted({e["loc"][2] for e in errors if len(e["loc"]) > 2 and e["loc"][1] == param})
    if len(forms) > 1:  # a union: no form fitted
        got = quote(first.get("input"), 60)
        return f"{param} must be one of: {', '.join(map(str, forms))}; got {got}", param
    where = ".".join(loc[1:]) or param
    return f"{where}: {first['msg']} (got {quote(first.get('input'), 60)})", param


def _without_422(app: FastAPI) -> None:
    """The document lists 400 for invalid requests (OpenAI's status), not FastAPI's 422."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            for path in document.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            schemas = document.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
