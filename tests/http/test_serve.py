"""``rnnlm serve --http-address`` in a child process: the HTTP API comes up beside gRPC, and
on SIGTERM it stops listening while a call in flight still gets its answer; exit status 0."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request

import pytest

from rnnlm.server import ServerConfig
from tests.e2e.conftest import Backend, serve_process, wait_until
from tests.fixtures_redis import free_port


def health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return reply.status
    except (urllib.error.URLError, OSError):
        return None


def refused(port: int) -> bool | None:
    with socket.socket() as sock:
        return True if sock.connect_ex(("127.0.0.1", port)) != 0 else None


def test_serve_with_http_stops_gracefully(tmp_path):
    backend = Backend("local", tmp_path / "store", None, "rnnlm")
    grpc_port, http_port = free_port(), free_port()
    process = serve_process(
        backend, grpc_port, "--http-address", f"127.0.0.1:{http_port}", log=tmp_path / "log"
    )
    try:
        wait_until(lambda: health(http_port) == 200 or None, timeout=60, what="the HTTP API")
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1/models") as reply:
            assert json.load(reply) == {"object": "list", "data": []}
        # A call in flight: its headers and half its body sent, the rest after the signal.
        body = json.dumps({"model": "nope", "prompt": "the cat", "max_tokens": 1}).encode()
        call = socket.create_connection(("127.0.0.1", http_port), timeout=30)
        head = (
            f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        call.sendall(head + body[:10])
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        wait_until(lambda: refused(http_port), timeout=20, what="the port to close")
        call.sendall(body[10:])
        with call, call.makefile("rb") as reply:  # the server closes it after the answer
            answer = reply.read().decode()
        assert answer.startswith("HTTP/1.1 404"), answer  # answered: the model is unknown
        assert '"not_found_error"' in answer
        assert process.wait(timeout=30) == 0, (tmp_path / "log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = (tmp_path / "log").read_text()
    assert "OpenAI-compatible HTTP API on" in log and "stopped" in log


def test_the_http_address_is_checked():
    with pytest.raises(ValueError, match="http_address must be host:port"):
        ServerConfig(http_address="8080")
