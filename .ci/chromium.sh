#!/usr/bin/env bash
# Install Debian's Chromium (never `playwright install`: no browser downloads) for the web
# UI tests in tests/server/test_ui_browser.py, which drive it with Playwright.
#
# Idempotent. Progress goes to stderr; stdout is one line for the caller to eval:
#
#     eval "$(bash .ci/chromium.sh)"   # sets TREADLE_CHROMIUM (the browser's path)
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }
SUDO=""
[[ "$(id -u)" != 0 ]] && SUDO="sudo"

if ! command -v chromium >/dev/null; then
    log "installing chromium from Debian packages"
    start=$(date +%s)
    $SUDO apt-get update -q >&2 || log "apt-get update failed; trying the cached package lists"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium >&2
    log "installed in $(( $(date +%s) - start )) s"
fi
path="$(command -v chromium)"
log "$("$path" --version 2>/dev/null || echo 'chromium (version unknown)')"
echo "export TREADLE_CHROMIUM=$path"
