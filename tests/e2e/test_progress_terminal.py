"""``rnnlm train`` as a person sees it: under a pseudo-terminal a tqdm bar with an ETA comes
within the first 10 s of a small job; piped, the same command prints plain lines."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import pytest

from rnnlm.server import RnnlmServer
from tests.e2e.conftest import Backend

# tqdm's bar: "training:  13%|#3      | 20/150 [00:02<00:13,  9.73 steps/s, epoch 1/4, ...]"
BAR_WITH_ETA = re.compile(r"training: +\d+%\|.*\| *\d+/\d+ \[\d\d:\d\d<\d\d:\d\d")
TRAIN = ["--cell", "gru", "--vocab-size", "400", "--embed-size", "24", "--hidden-size", "24"]
TRAIN += ["--epochs", "6", "--option", "batch_size=16"]  # log_every unset: events by the clock


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RnnlmServer:
    store = tmp_path_factory.mktemp("pty-store")
    server = RnnlmServer(Backend("local", store, None, "rnnlm").config())
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, pydoc_text) -> str:
    path = tmp_path_factory.mktemp("pty-corpus") / "pydoc.txt"
    path.write_text(pydoc_text[:30_000])
    return str(path)


def rnnlm(server: RnnlmServer, *args: str) -> list[str]:
    return [sys.executable, "-m", "rnnlm.client.cli", "--target", server.address, *args]


def run_in_terminal(argv: list[str], timeout: float = 120.0) -> tuple[int, str, float | None]:
    """Run ``argv`` with a pseudo-terminal (120 columns) as its stdin, stdout and stderr;
    returns the exit status, everything it wrote, and the seconds until a bar with an ETA
    was on the screen (None: never)."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, close_fds=True)
    os.close(child)
    screen, bar_at = b"", None
    try:
        while time.monotonic() - started < timeout:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # the child closed the terminal (EIO)
                    break
                if not data:
                    break
                screen += data
                if bar_at is None and BAR_WITH_ETA.search(screen.decode(errors="replace")):
                    bar_at = time.monotonic() - started
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    return code, screen.decode(errors="replace"), bar_at


def test_a_terminal_gets_a_bar_with_an_eta_within_10_seconds(server, corpus):
    code, screen, bar_at = run_in_terminal(rnnlm(server, "train", "tty", corpus, *TRAIN))
    assert code == 0, screen[-2000:]
    assert bar_at is not None and bar_at < 10.0, (bar_at, screen[-2000:])
    assert "uploading" in screen  # the upload had a bar too
    assert "\r" in screen  # redrawn in place, not scrolled
    assert "end of epoch 1/6" in screen and "valid ppl" in screen  # epochs above the bar
    assert "model tty version 1 is ready" in screen


def test_piped_output_is_plain_lines(server, corpus):
    result = subprocess.run(
        rnnlm(server, "train", "piped", corpus, *TRAIN),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "\r" not in result.stderr and "%|" not in result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("epoch 1/6  step ") and "ETA" in line for line in lines)
    assert any(line.startswith("end of epoch 6/6") for line in lines)
    assert re.fullmatch(r"j-[0-9a-f]{16}", result.stdout.strip())  # the job id, for scripts
