"""Server configuration: flags beat RNNLM_* variables beat defaults; bad values are refused
with the setting's name; the README documents every setting."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from rnnlm.server.config import ServerConfig, env_name


def test_flags_beat_environment_beats_defaults():
    env = {"RNNLM_MAX_CONCURRENT_JOBS": "5", "RNNLM_REFLECTION": "false", "RNNLM_DEVICE": "cpu"}
    config = ServerConfig.from_args([], env)
    assert config.max_concurrent_jobs == 5 and config.reflection is False
    assert config.device == "cpu" and config.cache_size == ServerConfig().cache_size
    config = ServerConfig.from_args(["--max-concurrent-jobs", "7", "--reflection", "yes"], env)
    assert config.max_concurrent_jobs == 7 and config.reflection is True


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {"RNNLM_WORKERS": "many"}, "RNNLM_WORKERS='many'"),
        (["--cache-size", "0"], {}, "cache_size must be an integer >= 1"),
        (["--address", "localhost"], {}, "address must be host:port"),
        (["--device", "tpu"], {}, "device"),
        (["--log-level", "chatty"], {}, "log_level must be one of"),
        (["--batching", "maybe"], {}, "expected true or false"),
        (["--shutdown-grace-s", "inf"], {}, "shutdown_grace_s must be a number in [0, 3600]"),
        ([], {"RNNLM_SHUTDOWN_GRACE_S": "nan"}, "shutdown_grace_s must be a number"),
        (["--job-lease-s", "0"], {}, "job_lease_s must be > 0"),
        (["--metrics-address", "0.0.0.0:99999"], {}, "port in [0, 65535]"),
        (["--torch-threads", "-1"], {}, "torch_threads must be >= 0"),
        (["--api-key", "short"], {}, "at least 16 printable ASCII characters"),
        ([], {"RNNLM_API_KEY": ""}, "at least 16 printable ASCII characters"),
        (["--api-key", "é" * 20], {}, "printable ASCII"),
        (["--api-key-file", "/nonexistent/key"], {}, "api_key_file: no such file"),
        (["--tls-cert", "/etc/hostname"], {}, "tls_cert and tls_key go together"),
        (["--redis-url", "http://localhost:6379"], {}, "redis_url must start with redis://"),
        (
            ["--redis-url", "rediss://:pw@localhost:6380/0?ssl_ca_certs=/nonexistent/ca.pem"],
            {},
            "redis_url: ssl_ca_certs: no such file: '/nonexistent/ca.pem'",
        ),
    ],
)
def test_bad_settings_name_the_setting(capsys, argv, env, message):
    with pytest.raises(SystemExit) as caught:
        ServerConfig.from_args(argv, env)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_readme_documents_every_setting():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = set(re.findall(r"^\| `--([a-z-]+)` \| `(RNNLM_[A-Z_]+)` \|", readme, re.M))
    expected = {
        (f.name.replace("_", "-"), env_name(f.name)) for f in dataclasses.fields(ServerConfig)
    }
    assert documented == expected


def test_security_files_are_checked_at_start(tmp_path, tls_files):
    cert, key = str(tls_files.server_cert), str(tls_files.server_key)
    config = ServerConfig(tls_cert=cert, tls_key=key, tls_client_ca=str(tls_files.ca))
    assert config.tls_client_ca == str(tls_files.ca)
    with pytest.raises(ValueError, match="not a PEM certificate chain and its private key"):
        ServerConfig(tls_cert=cert, tls_key=str(tls_files.client_key))  # another key
    with pytest.raises(ValueError, match="tls_client_ca .* is not a PEM CA bundle"):
        ServerConfig(tls_cert=cert, tls_key=key, tls_client_ca=str(tls_files.server_key))
    with pytest.raises(ValueError, match="needs tls_cert"):
        ServerConfig(tls_client_ca=str(tls_files.ca))
    key_file = tmp_path / "key"
    key_file.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        ServerConfig(api_key_file=str(key_file))
    key_file.write_bytes(b"\xff\xfe not text")
    with pytest.raises(ValueError, match="api_key_file"):
        ServerConfig(api_key_file=str(key_file))
    key_file.write_text("k" * 20 + "\n")
    assert ServerConfig(api_key_file=str(key_file)).api_key == "k" * 20
    with pytest.raises(ValueError, match="not both"):
        ServerConfig(api_key="k" * 20, api_key_file=str(key_file))


def test_secrets_stay_out_of_help_and_repr(capsys):
    env = {"RNNLM_API_KEY": "secret-api-key-0123456789", "RNNLM_REDIS_URL": "redis://:pw1234@h:1/0"}
    with pytest.raises(SystemExit):
        ServerConfig.from_args(["--help"], env)
    shown = capsys.readouterr().out
    assert "--api-key" in shown and "--redis-url" in shown
    assert "secret-api-key" not in shown and "pw1234" not in shown
    config = ServerConfig.from_args([], env)
    assert config.api_key == env["RNNLM_API_KEY"]
    assert "secret-api-key" not in repr(config) and "pw1234" not in repr(config)
