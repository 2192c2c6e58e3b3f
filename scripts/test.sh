#!/usr/bin/env bash
# Install (scripts/setup.sh) and run the whole test suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
"${RNNLM_VENV:-.venv}/bin/python" -m pytest "$@"
