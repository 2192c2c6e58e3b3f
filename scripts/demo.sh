#!/usr/bin/env bash
# Install (scripts/setup.sh), then train a small GRU on Python's own help text, rank
# candidate sentences and generate some. Extra arguments go to `python -m rnnlm.model demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
"${RNNLM_VENV:-.venv}/bin/python" -m rnnlm.model demo "$@"
