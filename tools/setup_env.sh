#!/usr/bin/env bash
# Create (or reuse) ./.venv and install keras_dssdn with its pinned stack.
# Usage: bash tools/setup_env.sh            (from the repository root)
# VENV=/path bash tools/setup_env.sh        (another location)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24"
# constraints.txt freezes the transitive dependencies of a tested install.
"$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[dev]"
"$VENV/bin/python" -c "import keras_dssdn, tensorflow as tf, keras; print('keras_dssdn', keras_dssdn.__version__, '| tensorflow', tf.__version__, '| keras', keras.__version__)" 2>/dev/null
