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
