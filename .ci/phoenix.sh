#!/usr/bin/env bash
# Install Arize Phoenix (a local trace viewer that takes OTLP over HTTP) into its own venv,
# apart from the project's .venv so its many dependencies never meet treadle's.
#
# Idempotent: a second run with the venv in place only checks it. Progress goes to stderr;
# stdout is one line for the caller to eval:
#
#     eval "$(bash .ci/phoenix.sh)"    # sets TREADLE_PHOENIX_BIN for tests/tracing/test_tracing_phoenix.py
#
# Env: PYTHON (interpreter for the venv, default python3), PHOENIX_SPEC (pip requirement,
# default the version the tests were written against), PHOENIX_VENV (where to put it).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
SPEC="${PHOENIX_SPEC:-arize-phoenix==20.26.1}"
VENV="${PHOENIX_VENV:-.ci/.phoenix-venv}"
BIN="$VENV/bin/phoenix"
STAMP="$VENV/.treadle-spec"

log() { echo "phoenix.sh: $*" >&2; }

if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$SPEC" ]] && "$VENV/bin/python" -c "import importlib.metadata as m; m.version('arize-phoenix')" 2>/dev/null; then
    log "$SPEC already installed in $VENV"
else
    log "installing $SPEC into $VENV"
    start=$(date +%s)
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    echo '*' > "$VENV/.gitignore"  # the venv ignores itself (python < 3.13 does not do it)
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2 2> >(grep -v "^WARNING: Location" >&2 || true)
    "$VENV/bin/python" -m pip install -q "$SPEC" >&2 2> >(grep -v "^WARNING: Location" >&2 || true)
    "$VENV/bin/python" -c "import phoenix" >&2
    echo "$SPEC" > "$STAMP"
    log "installed in $(( $(date +%s) - start ))s, $(du -sh "$VENV" | cut -f1)"
fi

echo "export TREADLE_PHOENIX_BIN=$(cd "$(dirname "$BIN")" && pwd)/phoenix"
