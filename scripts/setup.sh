#!/usr/bin/env bash
# Create a virtual environment and install rnnlm into it with the server and dev extras.
#   RNNLM_VENV  where the environment goes (default: .venv in the repository)
#   PYTHON      the interpreter that creates it (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${RNNLM_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check --upgrade pip
# torch first and pinned: left to resolve "torch>=2.2" on a clean machine, pip would pick
# the newest release with several GB of CUDA packages. On this project's machines 2.13.0
# is a CPU build kept locally; once it is installed the extra's range is satisfied and
# nothing more is fetched.
echo "== installing torch==2.13.0"
"$py" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
echo "== installing rnnlm[server,dev]"
"$py" -m pip install --quiet --disable-pip-version-check -e ".[server,dev]"
