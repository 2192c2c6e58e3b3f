"""Bad input over HTTP: the same errors as gRPC, as OpenAI's JSON with the matching status
(unknown model 404, bad JSON 400 naming the field, oversize body 413, missing key 401, over
a limit 429, shutting down 503), and the server answers normally afterwards."""

from __future__ import annotations

import socket

import grpc
import httpx
import openai
import pytest

from rnnlm.model.checkpoint import CheckpointError
from rnnlm.model.interpolation import NoNgramPart
from rnnlm.server import RnnlmServer
from rnnlm.server import errors as service_errors
from rnnlm.server.http.errors import BodyTooLarge, http_status
from rnnlm.server.interceptors import STATUS_OF
from tests.e2e.conftest import Backend
from tests.http.conftest import API_KEY, MAX_BODY_BYTES, MODEL, http_config

OK = {"model": MODEL, "prompt": "The value", "max_tokens": 2}


def error(reply: httpx.Response, status: int) -> dict:
    """The OpenAI-shaped error of ``reply``, which must have ``status``."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    return body


def test_unknown_model_is_404(http, base_url):
    body = error(http.post("/v1/completions", json={**OK, "model": "nope"}), 404)
    assert "'nope' does not exist" in body["message"] and body["type"] == "not_found_error"
    error(http.get("/v1/models/nope"), 404)
    error(http.get("/models/nope/tokenizer_info"), 404)
    with (
        openai.OpenAI(base_url=f"{base_url}/v1", api_key="-", max_retries=0) as sdk,
        pytest.raises(openai.NotFoundError),
    ):
        sdk.completions.create(model="nope", prompt="x", max_tokens=1)


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"max_tokens": "many"}, "max_tokens", "valid integer"),
        ({"max_tokens": -1}, "max_tokens", "greater than or equal to 0"),
        ({"logprobs": 99}, "logprobs", "less than or equal to 20"),
        ({"temperature": "hot"}, "temperature", "valid number"),
        ({"top_p": 0}, "top_p", "greater than 0"),
        ({"n": 0}, "n", "greater than or equal to 1"),
        ({"prompt": 3}, "prompt", "must be one of"),
        ({"prompt": []}, "prompt", "prompt is empty"),
        ({"prompt": [10**6]}, "prompt", "token id 1000000"),
        ({"echo": {"a": 1}}, "echo", "valid boolean"),
        ({"scorer": "best"}, "scorer", "'neural', 'ngram' or 'interpolated'"),
        ({"frobnicate": 1}, "frobnicate", "not a field"),
        ({"suffix": "x"}, "suffix", "not supported"),
        ({"logit_bias": {"5": 1.0}}, "logit_bias", "not supported"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        ({"model": None}, "model", "model is required"),
        ({"stream": True, "logprobs": 2}, "logprobs", "not streamed"),
    ],
)
def test_a_bad_field_is_400_naming_it(http, change, param, words):
    body = error(http.post("/v1/completions", json={**OK, **change}), 400)
    assert body["param"] == param and words in body["message"], body
    assert body["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"model": "m", "prompt": ', "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b"\xff\xfe garbage", "not valid JSON"),
        (b"", "JSON object"),
    ],
)
def test_a_body_that_is_not_a_request_is_400(http, content, words):
    reply = http.post(
        "/v1/completions", content=content, headers={"content-type": "application/json"}
    )
    assert words in error(reply, 400)["message"]


def test_the_services_own_errors_come_as_they_do_over_grpc(http):
    body = error(http.post("/v1/completions", json={**OK, "model": "bad id!"}), 400)
    assert "model_id 'bad id!' is not allowed" in body["message"]  # ids.check_model_id
    greedy_many = {**OK, "temperature": 0, "n": 2}
    assert (
        "greedy decoding gives one sentence"
        in error(http.post("/v1/completions", json=greedy_many), 400)["message"]
    )


def test_over_a_limit_is_429(http):
    body = error(http.post("/v1/completions", json={**OK, "max_tokens": 100_000}), 429)
    assert "--max-generated-tokens" in body["message"] and body["type"] == "rate_limit_error"
    lots = {**OK, "n": 10**9, "max_tokens": 0}  # nothing to generate: still n choices
    assert (
        "--max-generated-sentences"
        in error(http.post("/v1/completions", json=lots), 429)["message"]
    )
    many = {**OK, "prompt": ["a"] * 300, "max_tokens": 0}
    assert (
        "--max-sentences-per-request"
        in error(http.post("/v1/completions", json=many), 429)["message"]
    )


def test_an_oversize_body_is_413_with_or_without_a_length(http):
    big = b'{"model": "m", "prompt": "' + b"a " * MAX_BODY_BYTES + b'"}'
    body = error(http.post("/v1/completions", content=big), 413)
    assert "--max-message-bytes" in body["message"] and body["code"] == "request_too_large"

    def chunks():  # no Content-Length: counted as it arrives
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    assert error(http.post("/v1/completions", content=chunks()), 413)["code"] == "request_too_large"


@pytest.fixture(scope="module")
def keyed(store, server) -> str:
    """A second server on the same store that wants the key for every call."""
    keyed = RnnlmServer(http_config(store, api_key=API_KEY, require_key_for_reads=True))
    keyed.start()
    yield f"http://127.0.0.1:{keyed.http_port}"
    keyed.stop(grace=1.0)


def test_a_missing_or_wrong_key_is_401(keyed):
    with httpx.Client(base_url=keyed, timeout=30) as http:
        body = error(http.post("/v1/completions", json=OK), 401)
        assert (
            "Authorization: Bearer" in body["message"] and "POST /v1/completions" in body["message"]
        )
        error(http.get("/v1/models"), 401)
        wrong = {"Authorization": "Bearer " + "x" * 24}
        assert (
            "wrong API key"
            in error(http.post("/v1/completions", json=OK, headers=wrong), 401)["message"]
        )
        assert http.get("/health").status_code == 200  # open to load balancers
        assert http.get("/openapi.json").status_code == 200
    with (
        openai.OpenAI(base_url=f"{keyed}/v1", api_key="-", max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()
    with openai.OpenAI(base_url=f"{keyed}/v1", api_key=API_KEY) as sdk:
        assert sdk.completions.create(model=MODEL, prompt="The", max_tokens=1).choices


def test_a_draining_server_is_503(store, server):
    draining = RnnlmServer(http_config(store))
    draining.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{draining.http_port}") as http:
            assert http.get("/health").json() == {"status": "serving"}
            draining.interceptor.start_draining()  # what stop() does first
            body = error(http.post("/v1/completions", json=OK), 503)
            assert "shutting down" in body["message"]
            assert http.get("/health").status_code == 503
    finally:
        draining.stop(grace=1.0)
    with socket.socket() as sock:  # and then it stops listening
        assert sock.connect_ex(("127.0.0.1", draining.http_port)) != 0


def test_each_service_error_has_its_http_status():
    """The table of the gRPC front end (interceptors.STATUS_OF) decides, for every error."""
    expected = {
        grpc.StatusCode.INVALID_ARGUMENT: 400,
        grpc.StatusCode.FAILED_PRECONDITION: 400,
        grpc.StatusCode.UNAUTHENTICATED: 401,
        grpc.StatusCode.PERMISSION_DENIED: 403,
        grpc.StatusCode.NOT_FOUND: 404,
        grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
        grpc.StatusCode.CANCELLED: 499,
        grpc.StatusCode.DATA_LOSS: 500,
        grpc.StatusCode.UNAVAILABLE: 503,
    }
    for cls, code in STATUS_OF:
        assert http_status(cls("x")) == expected[code], cls
    assert http_status(service_errors.StoreMisconfigured("x")) == 503  # store down
    assert http_status(NoNgramPart("x")) == 400 and http_status(CheckpointError("x")) == 500
    assert http_status(BodyTooLarge("x")) == 413 and http_status(RuntimeError("x")) == 500


def test_garbage_leaves_the_server_answering(http, base_url):
    host, port = "127.0.0.1", int(base_url.rsplit(":", 1)[1])
    for junk in (
        b"\x00\xff" * 100,
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /v1/completions HTTP/1.1\r\n",
    ):
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(4096)
    error(http.get("/no/such/path"), 404)
    assert error(http.get("/v1/completions"), 405)["code"] == "method_not_allowed"
    assert http.post("/v1/completions", json=OK).status_code == 200


def test_the_store_down_is_503(redis_server, tmp_path):
    """A server on Redis whose Redis stops: a call that needs the store gets 503, and so
    does /health once the store check has run; both recover when Redis is back."""
    redis_server.start()
    config = Backend("redis", tmp_path, redis_server.url, "http503").config(
        http_address="127.0.0.1:0"
    )
    server = RnnlmServer(config)
    server.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.http_port}", timeout=30) as http:
            assert http.get("/v1/models").json()["data"] == []
            redis_server.stop()
            body = error(http.get("/v1/models"), 503)
            assert body["type"] == "server_error" and body["code"] == "unavailable"
            # The store's address is the operator's: in the log, not in the answer.
            assert "store unavailable" in body["message"] and "127.0.0.1" not in body["message"]
            server.check_store()  # what the server does every few seconds
            assert http.get("/health").status_code == 503
            redis_server.start()
            server.check_store()
            assert http.get("/health").status_code == 200
            assert http.get("/v1/models").status_code == 200
    finally:
        redis_server.start()
        server.stop(grace=1.0)
