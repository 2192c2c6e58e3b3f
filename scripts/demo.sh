#!/usr/bin/env bash
# The main job, end to end: install (scripts/setup.sh), then `rnnlm demo`: start the service
# on the embedded local store, upload Python's own help text, train a small GRU while
# showing its progress, rank candidate sentences, generate some, stop the service.
# Extra arguments go to `rnnlm demo` (e.g. --corpus FILE, --epochs N, --keep-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
"${RNNLM_VENV:-.venv}/bin/rnnlm" demo "$@"
