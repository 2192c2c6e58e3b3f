"""The type check of .ci/run (``scripts/typecheck.py``: mypy over rnnlm.model, rnnlm.server and
rnnlm.client, settings in pyproject.toml) passes on the tree, and fails on a copy with a type
error added, so that the check is known to be able to fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.common import ROOT, add_line

SCRIPT = ROOT / "scripts" / "typecheck.py"
FOLDERS = ("model", "server", "client", "proto")


def typecheck(root: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("mypy", reason="the dev extra has mypy (scripts/setup.sh)")
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_tree_type_checks():
    result = typecheck(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


@pytest.mark.parametrize(
    "module,after,line,error",
    [
        (  # a wrong value for a declared type
            "model/vocab.py",
            "from __future__ import annotations",
            "LIMIT: int = 'many'",
            '"str", variable has type "int"',
        ),
        (  # a field the generated message stub does not have (mypy-protobuf's .pyi)
            "server/convert.py",
            "from __future__ import annotations",
            "def _typo(m: pb.TrainingJob) -> str:\n    return m.no_such_field",
            'has no attribute "no_such_field"',
        ),
    ],
)
def test_typecheck_fails_on(module, after, line, error, tmp_path):
    ignore = shutil.ignore_patterns("__pycache__", "*.safetensors")
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    add_line(tmp_path / module, after, line)
    result = typecheck(tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{module}:" in result.stdout and error in result.stdout, result.stdout
