#!/usr/bin/env bash
# Install the reference MCP server "server-everything" from the npm registry into a local
# folder (no global install), for the MCP integration tests in tests/mcp/.
#
# Idempotent: with the pinned version already in place it only checks it. Progress goes to
# stderr; stdout is one line for the caller to eval:
#
#     eval "$(bash .ci/mcp.sh)"   # sets TREADLE_MCP_EVERYTHING (the server's entry script, run with node)
#
# Env: MCP_EVERYTHING_SPEC (npm package spec, default the version the tests were written
# against), MCP_NODE_DIR (where to install, default .ci/.mcp-node).
set -euo pipefail
cd "$(dirname "$0")/.."

SPEC="${MCP_EVERYTHING_SPEC:-@modelcontextprotocol/server-everything@2026.8.31}"
DIR="${MCP_NODE_DIR:-.ci/.mcp-node}"
PKG="$DIR/node_modules/@modelcontextprotocol/server-everything"
STAMP="$DIR/.treadle-spec"

log() { echo "mcp.sh: $*" >&2; }

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
    echo '{"name": "treadle-mcp-ci", "private": true}' > "$DIR/package.json"
    npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error "$SPEC" >&2
    echo "$SPEC" > "$STAMP"
    log "installed in $(( $(date +%s) - start ))s"
fi

# the entry script named by the package's "bin" field
ENTRY=$(node -e '
const path = require("path");
const dir = process.argv[1];
const pkg = require(path.resolve(dir, "package.json"));
const bin = typeof pkg.bin === "string" ? pkg.bin : Object.values(pkg.bin)[0];
process.stdout.write(path.resolve(dir, bin));
' "$PKG")
[[ -f "$ENTRY" ]] || { log "entry script $ENTRY is missing"; exit 1; }
echo "export TREADLE_MCP_EVERYTHING=$ENTRY"
