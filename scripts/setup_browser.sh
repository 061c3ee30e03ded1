#!/usr/bin/env bash
# Install Debian's chromium (headless browser for tests/system/test_dashboard_browser.py) when missing.
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
# shellcheck source=scripts/_apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"
apt_install setup_browser chromium fonts-dejavu-core || exit 1
have_chromium || { echo "setup_browser: chromium still missing after apt-get" >&2; exit 1; }
echo "setup_browser: chromium installed: $(command -v chromium)"
