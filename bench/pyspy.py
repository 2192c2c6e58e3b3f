"""Sampling profiles of a benchmark's server with py-spy (``pip install py-spy``): where its
time goes under load, as the top frames by own samples and by samples under them.

    profile = start(server_pid, seconds, "generate.txt")   # beside the load
    ...                                                    # run the load
    print("\\n".join(summary(finish(profile))))
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Frames that only wait (a thread pool idling, a lock, a select): left out of the tables.
IDLE = ("wait (threading.py", "_worker (concurrent", "select (selectors.py", "get (queue.py")


def available() -> bool:
    return _binary() is not None


def _binary() -> str | None:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def start(pid: int, seconds: float, path: str) -> tuple[subprocess.Popen, str]:
    """Record ``pid`` (every thread, native frames left out) for ``seconds`` into ``path``
    (collapsed stacks); ``--idle`` off, so waiting threads are not sampled."""
    binary = _binary()
    if binary is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    command = [binary, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds)))]
    command += ["--rate", "200", "--format", "raw", "--nonblocking", "-o", path]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), path


def finish(profile: tuple[subprocess.Popen, str]) -> str:
    process, path = profile
    _, err = process.communicate(timeout=120)
    if process.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
    return path


def summary(path: str, top: int = 12) -> list[str]:
    """The top frames by own samples and by inclusive samples, as table lines."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or any(idle in stack.rsplit(";", 1)[-1] for idle in IDLE):
            continue
        samples = int(count)
        frames = stack.split(";")  # outermost first
        total += samples
        own[_short(frames[-1])] += samples
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += samples
    lines = [f"{total:,} busy samples; own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("inclusive (the frame and what it called):")
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return lines


def _short(frame: str) -> str:
    """'fn (path/to/module.py:12)' -> 'fn (module.py)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name
