#!/usr/bin/env bash
# Install the real Cline CLI (npm `cline@3.0.65`) for the Cline loop integration test
# (tests/system/test_cline_loop.py) and print the path of its `cline` binary.
#
# It goes into $GLM_CLINE_DIR (default .venv/cline), never globally; a second run that finds the
# right version installed does nothing. Needs Node.js 20+ and npm on PATH.
# Exit status 0 with the binary's path on stdout; 1 with the reason on stderr, also written to
# $GLM_CLINE_DIR/.unavailable (the test shows it when it skips).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="3.0.65"
DIR="${GLM_CLINE_DIR:-$ROOT/.venv/cline}"
BIN="$DIR/node_modules/.bin/cline"
NOTE="$DIR/.unavailable"

fail() {
    mkdir -p "$DIR"
    echo "setup_cline: $*" | tee "$NOTE" >&2
    exit 1
}

command -v node >/dev/null 2>&1 || fail "node is not installed (Node.js 20 or newer is needed)"
command -v npm >/dev/null 2>&1 || fail "npm is not installed"
major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$major" -ge 20 ] || fail "Node.js $(node --version) is too old (20 or newer is needed)"

installed=""
if [ -f "$DIR/node_modules/cline/package.json" ]; then
    installed="$(node -p "require('$DIR/node_modules/cline/package.json').version" 2>/dev/null || true)"
fi
if [ "$installed" != "$VERSION" ] || [ ! -x "$BIN" ]; then
    mkdir -p "$DIR"
    echo "setup_cline: installing cline@$VERSION into $DIR" >&2
    # --ignore-scripts: nothing but the package files is needed (no postinstall downloads).
    if ! npm install --prefix "$DIR" --no-audit --no-fund --ignore-scripts --loglevel=error \
        "cline@$VERSION" >&2; then
        fail "npm install cline@$VERSION failed (see the npm output above)"
    fi
fi
[ -x "$BIN" ] || fail "$BIN is missing after the install"
"$BIN" --version >/dev/null 2>&1 || fail "$BIN --version does not run"
rm -f "$NOTE"
echo "$BIN"
