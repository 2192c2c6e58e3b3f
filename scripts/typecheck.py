"""Type-check rnnlm.model, rnnlm.server and rnnlm.client with mypy (settings: pyproject.toml).

    python scripts/typecheck.py            # the three packages
    python scripts/typecheck.py server/jobs.py model/lm.py   # only these files' errors
    python scripts/typecheck.py --root DIR  # a copy laid out like this repository (tests)

The source folders are mapped into the ``rnnlm`` namespace by setuptools' ``package-dir``,
which mypy cannot read, so this script builds the namespace from symlinks in a temporary
folder, runs mypy there and prints every path back as the repository's own
(``rnnlm/server/jobs.py`` -> ``server/jobs.py``). Exit status: mypy's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# import name under rnnlm/ -> the folder that holds it (pyproject's package-dir)
PACKAGES = {"model": "model", "server": "server", "client": "client", "v1": "proto/rnnlm/v1"}
CHECKED = ("rnnlm.model", "rnnlm.server", "rnnlm.client")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="show only the errors in these paths")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository to check")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    with tempfile.TemporaryDirectory(prefix="rnnlm-typecheck-") as tmp:
        namespace = Path(tmp) / "rnnlm"
        namespace.mkdir()
        for name, folder in PACKAGES.items():
            (namespace / name).symlink_to(root / folder, target_is_directory=True)
        command = [sys.executable, "-m", "mypy", "--config-file", str(root / "pyproject.toml")]
        for package in CHECKED:
            command += ["-p", package]
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
    wanted = [str(Path(a)) for a in args.files]
    shown = 0
    for line in done.stdout.splitlines():
        line = _repository_path(line)
        if wanted and line.startswith(("Found ", "Success")):
            continue
        if wanted and not line.startswith(tuple(wanted)):
            continue
        print(line)
        shown += 1
    if wanted:
        print(f"{shown} lines for {', '.join(wanted)} (whole run: exit {done.returncode})")
        return 1 if shown else 0
    sys.stderr.write(done.stderr)
    return done.returncode


def _repository_path(line: str) -> str:
    for name, folder in PACKAGES.items():
        prefix = f"rnnlm/{name}/"
        if line.startswith(prefix):
            return folder + "/" + line[len(prefix) :]
    return line


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
