"""How many processes and math threads a server may use: ``--processes`` (``auto``: one per
core) times the math-library threads of each never exceeds the cores this process may run
on. Oversubscribed math threads do not merely share a core, they wait for each other at
every barrier of a parallel product: measured on this project's 2-core machine, two BLAS
threads on two busy cores ran 10-40x slower than one.
"""

from __future__ import annotations

import argparse

from rnnlm.model.engines import usable_cores

AUTO = "auto"


def parse_processes(text: str) -> int:
    """``--processes`` / ``RNNLM_PROCESSES``: a count >= 1, or ``auto`` (one per core)."""
    if text.strip().lower() == AUTO:
        return usable_cores()
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or {AUTO!r}, got {text!r}")
    return count


def check_processes(processes: int, torch_threads: int) -> None:
    """ValueError when ``processes`` (each with ``torch_threads`` math threads; 0: one core's
    share, ``threads_per_process``) would need more cores than there are."""
    if processes == 1:
        return  # one process: --torch-threads as before (0: torch's default)
    cores = usable_cores()
    if processes > cores:
        raise ValueError(
            f"processes ({processes}) is more than the {cores} cores this server may use: "
            f"at most {cores} (or {AUTO!r})"
        )
    if torch_threads and processes * torch_threads > cores:
        raise ValueError(
            f"processes ({processes}) x torch_threads ({torch_threads}) is more than the "
            f"{cores} cores: at most {cores // processes} threads each, or 0 (that share)"
        )


def threads_per_process(processes: int, torch_threads: int) -> int:
    """Math threads of each of ``processes`` server processes: ``torch_threads`` when set,
    else an equal share of the cores (at least one)."""
    return torch_threads or max(1, usable_cores() // processes)
