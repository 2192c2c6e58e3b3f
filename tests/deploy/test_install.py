"""One install path: the README's quick start, CI and the Docker image (test_docker.py) all
go through scripts/setup.sh, which holds the only torch pin; its knobs for the image leave
the default install as the README describes it. As in test_docker.py, each check returns
its problems and is also run on a broken copy, so that it is known to be able to fail."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

from tests.deploy.common import DOCKER, ROOT

SETUP = "scripts/setup.sh"
TORCH_PIN = re.compile(r"torch==[\w.+]+")
INSTALLERS = (SETUP, "scripts/test.sh", "scripts/demo.sh")


def readme_problems(readme: str) -> list[str]:
    section = readme.partition("## Quick start")[2].partition("\n## ")[0]
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", section, re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    commands = [c for c in commands if c]
    problems = [] if commands else ["the README's quick start has no commands"]
    problems += [f"quick start runs {c!r}" for c in commands if not c.startswith(INSTALLERS)]
    return problems


def ci_problems(ci: str) -> list[str]:
    lines = [line.strip() for line in ci.splitlines() if not line.strip().startswith("#")]
    problems = []
    if not any(line.startswith(INSTALLERS) for line in lines):
        problems.append(".ci/run installs without scripts/setup.sh (or test.sh, demo.sh)")
    if not any("bin/hadolint" in line and "docker/hadolint.yaml" in line for line in lines):
        problems.append(".ci/run does not run hadolint with docker/hadolint.yaml")
    return problems


def code(text: str) -> str:
    return "\n".join(line.split("#")[0] for line in text.splitlines())


def pin_problems(install: dict[str, str], docs: dict[str, str]) -> list[str]:
    """Only scripts/setup.sh installs a pinned torch. Comments and documentation may quote
    the pin, but only the current one."""
    pins = TORCH_PIN.findall(code(install[SETUP]))
    if len(pins) != 1:
        return [f"{SETUP} should pin torch exactly once, has {pins}"]
    problems = [
        f"{name} pins torch: only {SETUP} may"
        for name, text in install.items()
        if name != SETUP and TORCH_PIN.search(code(text))
    ]
    for name, text in {**install, **docs}.items():
        quoted = set(TORCH_PIN.findall(text)) - set(pins)
        problems += [f"{name} quotes {p}, not {pins[0]}" for p in sorted(quoted)]
    return problems


def install_files() -> dict[str, str]:
    paths = [ROOT / ".ci/run", ROOT / "pyproject.toml", ROOT / ".dockerignore"]
    paths += [p for p in (ROOT / "scripts").iterdir() if p.is_file()]
    paths += [p for p in DOCKER.rglob("*") if p.is_file() and "secrets" not in p.parts]
    return {str(p.relative_to(ROOT)): p.read_text() for p in paths}


def doc_files() -> dict[str, str]:
    paths = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    return {str(p.relative_to(ROOT)): p.read_text() for p in paths}


def test_readme_quick_start_installs_through_setup_sh():
    assert readme_problems((ROOT / "README.md").read_text()) == []
    assert readme_problems("## Quick start\n\n```bash\npip install -e .\n```\n")
    assert readme_problems("## Quick start\n\nno commands\n")


def test_test_and_demo_scripts_run_setup_sh():
    for script in INSTALLERS[1:]:
        lines = [line.strip() for line in (ROOT / script).read_text().splitlines()]
        assert SETUP in lines, f"{script} does not run {SETUP}"


def test_ci_installs_through_setup_sh_and_lints_the_dockerfile():
    ci = (ROOT / ".ci/run").read_text()
    assert ci_problems(ci) == []
    assert len(ci_problems(ci.replace("scripts/test.sh", "pytest").replace("hadolint", "x"))) == 2


def test_torch_is_pinned_once():
    install, docs = install_files(), doc_files()
    assert pin_problems(install, docs) == []
    (pin,) = TORCH_PIN.findall(code(install[SETUP]))
    assert pin_problems({**install, "docker/Dockerfile": f"RUN pip install {pin}\n"}, docs)
    assert pin_problems(install, {**docs, "README.md": "pip install torch==0.0.1"})
    assert pin_problems({**install, SETUP: f"a={pin}\nb={pin}\n"}, docs)


def test_setup_sh_knobs(tmp_path):
    """The commands scripts/setup.sh runs, as recorded by a stand-in for the venv's python:
    by default those the README describes; with the image's knobs, a non-editable install
    of the server extra with torch from the given index."""
    log = tmp_path / "python.log"
    python = tmp_path / "venv/bin/python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> {shlex.quote(str(log))}\n')
    python.chmod(0o755)

    def run(**knobs: str) -> subprocess.CompletedProcess:
        log.unlink(missing_ok=True)
        env = {"PATH": os.environ["PATH"], "RNNLM_VENV": str(python.parents[1]), **knobs}
        cmd = ["bash", str(ROOT / SETUP)]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)

    def commands(**knobs: str) -> list[str]:
        result = run(**knobs)
        assert result.returncode == 0, result.stderr
        return log.read_text().splitlines()

    pip = "-m pip install --quiet --disable-pip-version-check"
    (pin,) = TORCH_PIN.findall(code((ROOT / SETUP).read_text()))
    assert commands() == [f"{pip} --upgrade pip", f"{pip} {pin}", f"{pip} -e .[server,dev]"]
    url = "https://download.pytorch.org/whl/cpu"
    image = commands(RNNLM_EXTRAS="server", RNNLM_EDITABLE="0", TORCH_INDEX_URL=url)
    assert image[1:] == [f"{pip} --index-url {url} {pin}", f"{pip} .[server]"]
    bad = run(RNNLM_EDITABLE="yes")
    assert bad.returncode != 0 and "RNNLM_EDITABLE" in bad.stderr and not log.exists()
