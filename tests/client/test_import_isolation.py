"""The client is what remote users install: importing it must not pull in the engine,
the server or their heavy dependencies (a fresh interpreter, so nothing is preloaded)."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("torch", "numpy", "redis", "rnnlm.server", "rnnlm.model")


def test_client_and_cli_import_no_engine_server_or_heavy_dependencies():
    code = (
        "import json, sys\n"
        "import rnnlm.client, rnnlm.client.cli, rnnlm.client.aio, rnnlm.client.demo\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == []


def test_cli_help_runs_without_the_server_packages():
    code = (
        "import sys\n"
        "from rnnlm.client.cli import main\n"
        "rc = main(['--help'])\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "sys.exit(rc or (3 if bad else 0))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "generate" in done.stdout
