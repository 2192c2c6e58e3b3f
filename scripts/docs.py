"""Build the documentation site strictly (any warning fails), into a temporary directory
unless ``--site-dir`` names one: ``python scripts/docs.py``. CI runs this; for a live preview
run ``mkdocs serve``. Needs the ``docs`` extra (part of ``dev``)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(site_dir: Path) -> int:
    """``mkdocs build --strict`` of mkdocs.yml into ``site_dir``; its exit status."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    command += ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site_dir)]
    # The Material theme's notice about its end of life (2027) says nothing about this build.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site-dir", type=Path, help="keep the site here (default: discarded)")
    args = parser.parse_args(argv)
    if args.site_dir is not None:
        return build(args.site_dir)
    with tempfile.TemporaryDirectory(prefix="rnnlm-site-") as tmp:
        return build(Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
