#!/usr/bin/env bash
# Create a virtual environment and install rnnlm into it with the server and dev extras.
# The README, CI and docker/Dockerfile all install through this script; the knobs below
# exist for the image and leave the default (README/CI) behaviour as it was.
#   RNNLM_VENV       where the environment goes (default: .venv in the repository)
#   PYTHON           the interpreter that creates it (default: python3)
#   RNNLM_EXTRAS     extras to install, comma-separated (default: server,dev)
#   RNNLM_EDITABLE   1 (default): pip install -e, for working on the code;
#                    0: a regular install that does not need the source tree afterwards
#   TORCH_INDEX_URL  where torch comes from (default: empty, i.e. pip's usual indexes; there
#                    torch is the CUDA build on Linux x86_64, its CUDA libraries as wheels);
#                    https://download.pytorch.org/whl/cpu gives the small CPU-only build
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${RNNLM_VENV:-.venv}
extras=${RNNLM_EXTRAS:-server,dev}
editable=${RNNLM_EDITABLE:-1}
torch_index_url=${TORCH_INDEX_URL:-}
# The one place the torch version is pinned (the README and the image defer to it).
torch_pin="torch==2.13.0"
case "$editable" in
  1) package=(-e ".[$extras]") ;;
  0) package=(".[$extras]") ;;
  *) echo "RNNLM_EDITABLE must be 1 or 0, got '$editable'" >&2; exit 2 ;;
esac
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
pip=("$py" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
# torch first and pinned: left to resolve "torch>=2.6" on a clean machine, pip would pick
# the newest release with several GB of CUDA packages. On this project's machines the pin
# is a CPU build kept locally; once it is installed the extra's range is satisfied and
# nothing more is fetched.
if [ -n "$torch_index_url" ]; then
  echo "== installing $torch_pin from $torch_index_url"
  "${pip[@]}" --index-url "$torch_index_url" "$torch_pin"
else
  echo "== installing $torch_pin"
  "${pip[@]}" "$torch_pin"
fi
echo "== installing rnnlm[$extras]"
"${pip[@]}" "${package[@]}"
