"""The import rules of DESIGN.md section 1 (pyproject's ``[tool.importlinter]``, run by
.ci/run): they hold on the tree, and ``lint-imports`` fails on a copy of the packages with a
forbidden import or an import cycle added, so that the check is known to be able to fail."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.common import ROOT, add_line

PACKAGES = ("model", "server", "client", "v1")  # under rnnlm, as pyproject's package-dir maps


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).parent / "lint-imports"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: the dev extra has it (import-linter); scripts/setup.sh")
    env = dict(os.environ)
    if pythonpath is not None:  # ahead of the installed rnnlm: the copy is what gets read
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(binary), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_of_the_packages(tmp_path: Path) -> Path:
    """tmp_path/rnnlm/{model,server,client,v1} copied from where they are installed from,
    and pyproject.toml beside it (the contracts)."""
    for name in PACKAGES:
        spec = importlib.util.find_spec(f"rnnlm.{name}")
        assert spec is not None and spec.submodule_search_locations, name
        source = Path(next(iter(spec.submodule_search_locations)))
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(source, tmp_path / "rnnlm" / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_import_rules_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module,line,broken",
    [
        (  # the engine reaching into the service
            "model/vocab.py",
            "from rnnlm.server import errors",
            "rnnlm.model is not allowed to import rnnlm.server",
        ),
        (  # a client module other than the CLI's serve/demo starting a server
            "client/_output.py",
            "from rnnlm.server import demo",
            "rnnlm.client is not allowed to import rnnlm.server",
        ),
        (  # the cycle TrainingState used to make: lm -> training -> dataset -> lm
            "model/lm.py",
            "from rnnlm.model import training",
            "No cycles are allowed in rnnlm.model.",
        ),
    ],
)
def test_lint_imports_fails_on(module, line, broken, tmp_path):
    copy = copy_of_the_packages(tmp_path)
    add_line(copy / "rnnlm" / module, "from __future__ import annotations", line)
    result = lint_imports(copy, pythonpath=copy)
    assert result.returncode != 0 and broken in result.stdout, result.stdout + result.stderr
