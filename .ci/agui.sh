#!/usr/bin/env bash
# Install the AG-UI client "@ag-ui/client" from the npm registry into a local folder (no global
# install), for the AG-UI face's client test (tests/server/test_agui_node.py).
#
# Idempotent: with the pinned version already in place it only checks it. Progress goes to
# stderr; stdout is one line for the caller to eval:
#
#     eval "$(bash .ci/agui.sh)"   # sets TREADLE_AGUI_NODE_MODULES (its node_modules folder, for NODE_PATH)
#
# Env: AGUI_CLIENT_SPEC (npm package spec, default the version the tests were written against),
# AGUI_NODE_DIR (where to install, default .ci/.agui-node).
set -euo pipefail
cd "$(dirname "$0")/.."

SPEC="${AGUI_CLIENT_SPEC:-@ag-ui/client@1.0.0}"
DIR="${AGUI_NODE_DIR:-.ci/.agui-node}"
PKG="$DIR/node_modules/@ag-ui/client"
STAMP="$DIR/.treadle-spec"

log() { echo "agui.sh: $*" >&2; }

command -v node >/dev/null || { log "node is not installed (need node >= 18)"; exit 1; }
command -v npm >/dev/null || { log "npm is not installed"; exit 1; }

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$SPEC" && -f "$PKG/package.json" ]]; then
    log "$SPEC already installed in $DIR"
else
    log "installing $SPEC into $DIR"
    start=$(date +%s)
    rm -rf "$DIR"
    mkdir -p "$DIR"
    echo '*' > "$DIR/.gitignore"
    # a private package.json so npm installs here and not into a parent project
    echo '{"name": "treadle-agui-ci", "private": true}' > "$DIR/package.json"
    npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error "$SPEC" >&2
    echo "$SPEC" > "$STAMP"
    log "installed in $(( $(date +%s) - start ))s"
fi

[[ -f "$PKG/package.json" ]] || { log "$PKG is missing"; exit 1; }
echo "export TREADLE_AGUI_NODE_MODULES=$(cd "$DIR/node_modules" && pwd)"
