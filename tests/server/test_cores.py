"""``--processes`` and the math threads of each: ``auto``, the refusals that keep processes x
threads within the cores, and each process' share."""

from __future__ import annotations

import pytest

from rnnlm.server.config import ServerConfig
from rnnlm.server.cores import threads_per_process, usable_cores

CORES = usable_cores()


def test_processes_come_from_a_flag_or_the_environment_and_auto_is_one_per_core():
    assert ServerConfig.from_args([]).processes == 1
    assert ServerConfig.from_args(["--processes", "auto"]).processes == CORES
    assert ServerConfig.from_args([], {"RNNLM_PROCESSES": "AUTO"}).processes == CORES
    assert ServerConfig.from_args(["--processes", "1"], {"RNNLM_PROCESSES": "auto"}).processes == 1


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5", ""])
def test_a_count_that_is_not_one_or_more_is_refused(capsys, text):
    with pytest.raises(SystemExit) as caught:
        ServerConfig.from_args(["--processes", text])
    assert caught.value.code == 2
    assert "expected an integer >= 1 or 'auto'" in capsys.readouterr().err


def test_more_processes_or_threads_than_cores_are_refused():
    with pytest.raises(ValueError, match=f"more than the {CORES} cores this server may use"):
        ServerConfig(processes=CORES + 1)
    if CORES >= 2:
        with pytest.raises(ValueError, match=r"processes \(2\) x torch_threads"):
            ServerConfig(processes=2, torch_threads=CORES)
        assert ServerConfig(processes=2, torch_threads=CORES // 2).torch_threads == CORES // 2
    # One process keeps --torch-threads as it was: any count (0: torch's default).
    assert ServerConfig(processes=1, torch_threads=CORES + 3).torch_threads == CORES + 3


def test_each_process_gets_its_share_of_the_cores_unless_told():
    assert threads_per_process(1, 0) == CORES
    assert threads_per_process(CORES, 0) == 1
    assert threads_per_process(2, 1) == 1
    assert threads_per_process(CORES * 4, 0) == 1  # never none
