#!/usr/bin/env bash
# Install Debian's chromium (headless browser for tests/test_dashboard_browser.py) when missing.
# Idempotent: does nothing when a chromium binary is already on PATH (or GLM_CHROMIUM points at
# one). Needs root or passwordless sudo for apt-get; otherwise it says so and exits 1, and the
# browser test skips with that reason (GLM_REQUIRE_BROWSER=1 turns the skip into a failure).
set -euo pipefail

have_chromium() {
    if [ -n "${GLM_CHROMIUM:-}" ] && [ -x "${GLM_CHROMIUM}" ]; then
        return 0
    fi
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

if have_chromium; then
    echo "setup_browser: chromium present: $(command -v chromium || command -v chromium-browser || echo "$GLM_CHROMIUM")"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser: no apt-get on this system; install chromium yourself" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "setup_browser: not root and no passwordless sudo: cannot apt-get install chromium" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
echo "setup_browser: installing chromium with apt-get (a few minutes the first time)" >&2
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
have_chromium || { echo "setup_browser: chromium still missing after apt-get" >&2; exit 1; }
echo "setup_browser: chromium installed: $(command -v chromium)"
