"""Security settings end to end: the API key on the calls that change state, TLS and mutual
TLS between client and server, and a Redis that wants a password and speaks only TLS."""

from __future__ import annotations

import logging
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import pytest

from rnnlm.client import TLS, LMClient, NotFound, Unauthenticated, Unavailable
from rnnlm.client.cli import main as cli_main
from rnnlm.server import RnnlmServer, ServerConfig
from rnnlm.server.errors import StoreMisconfigured
from rnnlm.v1 import rnnlm_pb2 as pb
from rnnlm.v1 import rnnlm_pb2_grpc
from tests.fixtures_redis import free_port

from .conftest import SMALL_MODEL, train_small

API_KEY = "test-key-0123456789abcdef"
FLUENT = "the function returns a new list of the items ."


@contextmanager
def running(tmp_path, **settings) -> Iterator[RnnlmServer]:
    config = {"address": "127.0.0.1:0", "store_dir": str(tmp_path / "store"), "device": "cpu"}
    server = RnnlmServer(ServerConfig(**{**config, **settings}))
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=1.0)


# Each protected call with a target that does not exist: with the right key the server gets
# as far as looking (NOT_FOUND); without it, it must not even tell that much.
PROTECTED_CALLS = {
    "UploadCorpus": lambda c: c.upload_corpus(b"a few words .", filename="x.txt"),
    "Train": lambda c: c.train("m", "c-" + "0" * 32, **SMALL_MODEL),
    "CancelTrainingJob": lambda c: c.cancel("j-nope"),
    "ResumeTrainingJob": lambda c: c.resume("j-nope"),
    "DeleteModel": lambda c: c.delete_model("nope"),
    "DeleteCorpus": lambda c: c.delete_corpus("c-" + "0" * 32),
    "DeleteTrainingJob": lambda c: c.delete_job("j-nope"),
}


def test_the_api_key_guards_every_call_that_changes_state(tmp_path, corpus_bytes):
    with running(tmp_path, api_key=API_KEY) as server:
        with LMClient(server.address, retries=0) as anonymous:
            for method, call in PROTECTED_CALLS.items():
                with pytest.raises(Unauthenticated, match="requires an API key") as missing:
                    call(anonymous)
                assert method in missing.value.details and "x-api-key" in missing.value.details
            # Reads need no key.
            assert anonymous.models() == [] and anonymous.jobs() == []
            assert anonymous.health() == "SERVING"
        with LMClient(server.address, retries=0, api_key=API_KEY[:-1] + "X") as wrong:
            for call in PROTECTED_CALLS.values():
                with pytest.raises(Unauthenticated, match="wrong API key"):
                    call(wrong)
        with LMClient(server.address, retries=0, api_key=API_KEY) as keyed:
            corpus = keyed.upload_corpus(b"a few words .", filename="x.txt")
            assert corpus.size_bytes == 13
            not_found = ("CancelTrainingJob", "ResumeTrainingJob", "DeleteModel", "DeleteCorpus")
            for method in (*not_found, "DeleteTrainingJob"):
                with pytest.raises(NotFound):
                    PROTECTED_CALLS[method](keyed)
            job = train_small(keyed, corpus_bytes, model_id="keyed", epochs=1)
            assert job.state == "completed"
            assert keyed.delete_model("keyed") == 1


def test_the_key_may_come_as_a_bearer_token_or_from_a_file(tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")  # as `echo KEY > file` writes it
    with running(tmp_path, api_key_file=str(key_file)) as server:
        channel = grpc.insecure_channel(server.address)
        stub = rnnlm_pb2_grpc.LanguageModelServiceStub(channel)
        request = pb.DeleteModelRequest(model_id="nope")
        for metadata, expected in (
            ((("authorization", f"Bearer {API_KEY}"),), grpc.StatusCode.NOT_FOUND),
            ((("authorization", "Bearer not-the-key"),), grpc.StatusCode.UNAUTHENTICATED),
            ((("authorization", f"Basic {API_KEY}"),), grpc.StatusCode.UNAUTHENTICATED),
            ((("x-api-key", API_KEY),), grpc.StatusCode.NOT_FOUND),
        ):
            with pytest.raises(grpc.RpcError) as failure:
                stub.DeleteModel(request, metadata=metadata, timeout=10)
            assert failure.value.code() == expected, metadata
        channel.close()


def test_the_cli_sends_the_key_from_the_environment(tmp_path, monkeypatch, capsys):
    with running(tmp_path, api_key=API_KEY) as server:
        monkeypatch.delenv("RNNLM_API_KEY", raising=False)
        assert cli_main(["--target", server.address, "delete", "nope"]) == 1
        assert "UNAUTHENTICATED" in capsys.readouterr().err
        monkeypatch.setenv("RNNLM_API_KEY", API_KEY)
        assert cli_main(["--target", server.address, "delete", "nope"]) == 1
        assert "NOT_FOUND" in capsys.readouterr().err


def test_tls_with_a_private_ca(tmp_path, tls_files):
    settings = {"tls_cert": str(tls_files.server_cert), "tls_key": str(tls_files.server_key)}
    with running(tmp_path, **settings) as server:
        port = server.port
        for target in (f"localhost:{port}", f"127.0.0.1:{port}"):
            with LMClient(target, retries=0, tls=TLS(ca_file=tls_files.ca)) as client:
                assert client.models() == [] and client.health() == "SERVING"
        # A certificate for "localhost" checked under another name: only with the override.
        with LMClient(
            f"127.0.0.1:{port}",
            retries=0,
            tls=TLS(ca_file=tls_files.ca, server_name="localhost"),
        ) as client:
            assert client.health() == "SERVING"
        refused = [
            LMClient(f"localhost:{port}", retries=0, timeout=5),  # plaintext
            LMClient(
                f"localhost:{port}", retries=0, timeout=5, tls=TLS(ca_file=tls_files.other_ca)
            ),
            LMClient(f"localhost:{port}", retries=0, timeout=5, tls=True),  # system CAs
        ]
        for client in refused:
            with client, pytest.raises(Unavailable):
                client.models()


def test_mutual_tls_requires_a_client_certificate(tmp_path, tls_files):
    settings = {
        "tls_cert": str(tls_files.server_cert),
        "tls_key": str(tls_files.server_key),
        "tls_client_ca": str(tls_files.ca),
    }
    with running(tmp_path, **settings) as server:
        target = f"localhost:{server.port}"
        with_cert = TLS(tls_files.ca, tls_files.client_cert, tls_files.client_key)
        with LMClient(target, retries=0, tls=with_cert) as client:
            assert client.health() == "SERVING"
        with (
            LMClient(target, retries=0, timeout=5, tls=TLS(ca_file=tls_files.ca)) as client,
            pytest.raises(Unavailable),
        ):
            client.models()
        with pytest.raises(ValueError, match="go together"):
            LMClient(target, tls=TLS(ca_file=tls_files.ca, cert_file=tls_files.client_cert))


def test_the_cli_health_command_over_tls(tmp_path, tls_files, capsys):
    settings = {"tls_cert": str(tls_files.server_cert), "tls_key": str(tls_files.server_key)}
    with running(tmp_path, **settings) as server:
        target = f"localhost:{server.port}"
        assert cli_main(["--target", target, "--ca-file", str(tls_files.ca), "health"]) == 0
        assert capsys.readouterr().out.strip() == "SERVING"
        assert cli_main(["--target", target, "--timeout", "3", "health"]) == 1  # plaintext
        assert "UNAVAILABLE" in capsys.readouterr().err
    assert cli_main(["--target", f"127.0.0.1:{free_port()}", "--timeout", "2", "health"]) == 1


def test_a_redis_with_a_password_over_tls(tmp_path, secure_redis_server, corpus_bytes, caplog):
    caplog.set_level(logging.INFO)
    url = secure_redis_server.url  # rediss://:<percent-encoded password>@.../0?ssl_ca_certs=
    settings = {"redis_url": url, "redis_prefix": "secure"}
    with running(tmp_path, **settings) as server, LMClient(server.address, retries=0) as client:
        assert client.health() == "SERVING"
        train_small(client, corpus_bytes, model_id="secure", epochs=1)
        assert client.score("secure", [FLUENT]).model_version == 1
        assert "rediss://127.0.0.1" in server.store.describe()
    assert "rnnlm serving on" in caplog.text and "rediss://127.0.0.1" in caplog.text
    for secret in (secure_redis_server.password, urllib.parse.quote(secure_redis_server.password)):
        assert secret not in caplog.text  # never logged


@pytest.mark.parametrize(
    "wrong", ["password", "ca"], ids=["wrong password", "untrusted certificate"]
)
def test_wrong_redis_credentials_stop_the_server_at_start(tmp_path, secure_redis_server, wrong):
    redis = secure_redis_server
    url = (
        redis.url_with("not-it")
        if wrong == "password"
        else redis.url_with(redis.password, redis.tls.other_ca)
    )
    server = RnnlmServer(ServerConfig(address="127.0.0.1:0", redis_url=url, device="cpu"))
    with pytest.raises(StoreMisconfigured, match="credentials" if wrong == "password" else "CA"):
        server.start()
    server.stop(0)


def test_rnnlm_serve_exits_2_on_a_wrong_redis_password(secure_redis_server):
    command = [sys.executable, "-m", "rnnlm.server", "--address", f"127.0.0.1:{free_port()}"]
    command += ["--redis-url", secure_redis_server.url_with("not-it")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "refused the credentials of the Redis URL" in done.stderr
    assert "not-it" not in done.stderr
