#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install keras_dssdn with one of its two tested
# stacks (docs/install.md), pinned by constraints/<stack>.txt:
#   tf217  TensorFlow 2.17.1 + tensorflow-io 0.37.1 (its native ops load), numpy 1.26   Python 3.10-3.12
#   tf221  TensorFlow 2.21.0, tf-keras 2.21, numpy 2, no tensorflow-io                 Python 3.10-3.13
#   both   Keras 3.15.1 (3.12.4 on Python 3.10)
#
# Usage (any folder):
#   bash tools/setup_env.sh                     ./.venv with a supported Python and the stack that matches it
#                                               (tf217 on Python 3.10-3.12, tf221 on 3.13)
#   PYTHON=python3.12 bash tools/setup_env.sh   that interpreter
#   STACK=tf221 bash tools/setup_env.sh         that stack (tf217 | tf221)
#   VENV=.venv313 bash tools/setup_env.sh       another location (relative to the repository root)
# An existing VENV is reused with its own Python; asking it for the other stack is refused (remove it
# or pick another VENV). Exits non-zero, with the reason, if no supported Python is found.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
STACK="${STACK:-}"

die() { echo "setup_env.sh: $*" >&2; exit 1; }

case "$STACK" in
  ""|tf217|tf221) ;;
  *) die "STACK=$STACK is not a stack; use tf217 (TensorFlow 2.17.1 + tensorflow-io) or tf221 (TensorFlow 2.21)." ;;
esac

# "3.11" for an interpreter, or nothing if it does not run
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; }

# Does Python $1 (e.g. 3.12) run stack $2 ("" = any)?
supports() {
  local minor="${1#3.}"
  [[ "$1" == 3.* && "$minor" =~ ^[0-9]+$ ]] || return 1
  case "$2" in
    tf217) (( minor >= 10 && minor <= 12 )) ;;
    *)     (( minor >= 10 && minor <= 13 )) ;;
  esac
}

default_stack() { if [ "${1#3.}" -ge 13 ]; then echo tf221; else echo tf217; fi; }

if [ -x "$VENV/bin/python" ]; then
  PY="$VENV/bin/python"
  VER="$(py_version "$PY")"
  [ -n "$VER" ] || die "$VENV/bin/python does not run; remove $VENV and run again."
  HAVE=""
  if [ -f "$VENV/keras_dssdn-stack" ]; then
    HAVE="$(cat "$VENV/keras_dssdn-stack")"
  else  # a venv made before the stack was recorded: read it from the installed TensorFlow
    case "$("$PY" -c 'import importlib.metadata as m; print(m.version("tensorflow"))' 2>/dev/null || true)" in
      2.17.*) HAVE=tf217 ;;
      2.21.*) HAVE=tf221 ;;
    esac
  fi
  if [ -n "$STACK" ] && [ -n "$HAVE" ] && [ "$STACK" != "$HAVE" ]; then
    die "$VENV already holds the $HAVE stack; remove it (rm -rf $VENV) or set VENV to another folder for $STACK."
  fi
  STACK="${STACK:-${HAVE:-$(default_stack "$VER")}}"
  supports "$VER" "$STACK" || die "$VENV has Python $VER, which the $STACK stack does not support (docs/install.md); remove $VENV."
else
  # Pick an interpreter: $PYTHON, else python3, else the newest python3.1x on PATH or in pyenv that fits STACK.
  CANDIDATES=()
  if [ -n "${PYTHON:-}" ]; then
    CANDIDATES=("$PYTHON")
  else
    CANDIDATES=(python3 python3.13 python3.12 python3.11 python3.10)
    PYENV_ROOT_DIR="${PYENV_ROOT:-$HOME/.pyenv}"
    for minor in 13 12 11 10; do
      for p in $(ls -d "$PYENV_ROOT_DIR"/versions/3."$minor".*/bin/python 2>/dev/null | sort -rV); do
        CANDIDATES+=("$p")
      done
    done
  fi
  PY=""
  for c in "${CANDIDATES[@]}"; do
    command -v "$c" >/dev/null 2>&1 || [ -x "$c" ] || continue
    VER="$(py_version "$c")"
    if [ -n "$VER" ] && supports "$VER" "$STACK"; then PY="$c"; break; fi
    [ -n "${PYTHON:-}" ] && [ -z "$VER" ] && die "PYTHON=$PYTHON does not run here (a pyenv shim of a version that is not active? use its full path, e.g. \$(pyenv root)/versions/3.13.0/bin/python, or PYENV_VERSION=3.13.0)."
    [ -n "${PYTHON:-}" ] && die "PYTHON=$PYTHON is Python ${VER:-?}; ${STACK:-keras_dssdn} needs $( [ "$STACK" = tf217 ] && echo 3.10-3.12 || echo 3.10-3.13 )."
  done
  if [ -z "$PY" ]; then
    die "no supported Python found. keras_dssdn needs Python 3.10-3.13 (3.10-3.12 for STACK=tf217, the tensorflow-io stack).
Install one (e.g. 'pyenv install 3.13', 'uv python install 3.13', or your system's python3.12 with its venv module)
and run again, with PYTHON=/path/to/python3.x if it is not on PATH."
  fi
  STACK="${STACK:-$(default_stack "$VER")}"
  echo "setup_env.sh: creating $VENV with $PY (Python $VER), stack $STACK"
  "$PY" -m venv "$VENV" || die "'$PY -m venv' failed (on Debian/Ubuntu: apt install python$VER-venv)."
  PY="$VENV/bin/python"
fi

EXTRAS=dev
[ "$STACK" = tf217 ] && EXTRAS=dev,tfio
"$PY" -m pip install --quiet --upgrade "pip>=24"
# constraints/<stack>.txt freezes the whole tested environment, per Python version (markers).
"$PY" -m pip install --quiet -c "constraints/$STACK.txt" -e ".[$EXTRAS]"
echo "$STACK" > "$VENV/keras_dssdn-stack"
ERR="$(mktemp)"
trap 'rm -f "$ERR"' EXIT
# The installed versions, and (tf221) what is unavailable without tensorflow-io's native ops, once.
"$PY" - 2>"$ERR" <<'EOF' || { cat "$ERR" >&2; die "the installed package does not import (see above)."; }
import sys
import keras, tensorflow as tf
import keras_dssdn
from keras_dssdn.audio import tfio_compat
print(f"keras_dssdn {keras_dssdn.__version__} | Python {sys.version.split()[0]} | tensorflow {tf.__version__} | "
      f"keras {keras.__version__}")
print(f"tensorflow-io: {tfio_compat.describe()}")
EOF
