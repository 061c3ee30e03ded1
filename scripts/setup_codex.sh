#!/usr/bin/env bash
# Install the real Codex CLI (npm `@openai/codex@0.171.0`) for the Codex loop test
# (tests/system/test_codex_loop.py) and print the path of its `codex` binary.
#
# It goes into $GLM_CODEX_DIR (default .venv/codex), never globally; a second run that finds the
# right version installed does nothing. The native binary comes in an optional platform
# dependency of the package; nothing else is downloaded (no postinstall).
# Needs Node.js 20+ and npm on PATH.
# Exit status 0 with the binary's path on stdout; 1 with the reason on stderr, also written to
# $GLM_CODEX_DIR/.unavailable (the test shows it when it skips).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE="@openai/codex"
VERSION="0.171.0"
DIR="${GLM_CODEX_DIR:-$ROOT/.venv/codex}"
BIN="$DIR/node_modules/.bin/codex"
NOTE="$DIR/.unavailable"

fail() {
    mkdir -p "$DIR"
    echo "setup_codex: $*" | tee "$NOTE" >&2
    exit 1
}

command -v node >/dev/null 2>&1 || fail "node is not installed (Node.js 20 or newer is needed)"
command -v npm >/dev/null 2>&1 || fail "npm is not installed"
major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$major" -ge 20 ] || fail "Node.js $(node --version) is too old (20 or newer is needed)"

installed=""
if [ -f "$DIR/node_modules/$PACKAGE/package.json" ]; then
    installed="$(node -p "require('$DIR/node_modules/$PACKAGE/package.json').version" \
        2>/dev/null || true)"
fi
if [ "$installed" != "$VERSION" ] || [ ! -x "$BIN" ]; then
    mkdir -p "$DIR"
    echo "setup_codex: installing $PACKAGE@$VERSION into $DIR" >&2
    if ! npm install --prefix "$DIR" --no-audit --no-fund --ignore-scripts --loglevel=error \
        "$PACKAGE@$VERSION" >&2; then
        fail "npm install $PACKAGE@$VERSION failed (see the npm output above)"
    fi
fi
[ -x "$BIN" ] || fail "$BIN is missing after the install"
"$BIN" --version >/dev/null 2>&1 \
    || fail "$BIN --version does not run (is the native package for $(uname -m) installed?)"
rm -f "$NOTE"
echo "$BIN"
