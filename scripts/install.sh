#!/usr/bin/env bash
# One install script for every machine: developers, CI (.ci/run) and the Docker image.
# Usage: scripts/install.sh [VENV_DIR] [EXTRAS]
#   VENV_DIR  where the virtual environment goes (default .venv)
#   EXTRAS    pip extras of this project: "demo" (service + demo models), "test" (everything CI needs)
set -euo pipefail
VENV_DIR="${1:-.venv}"
EXTRAS="${2:-test}"
PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ ! -x "$VENV_DIR/bin/python" ]; then
  "$PYTHON" -m venv "$VENV_DIR"
fi
PIP=("$VENV_DIR/bin/python" -m pip install --disable-pip-version-check --progress-bar off)
# torch first and pinned: an unpinned torch (or one pulled in by another package) is a multi-GB CUDA build.
# The GPU image passes TORCH_SPEC (e.g. a CUDA wheel index) instead.
"${PIP[@]}" ${TORCH_SPEC:-torch==2.13.0}
"${PIP[@]}" -e "$HERE[$EXTRAS]"
