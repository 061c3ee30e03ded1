#!/usr/bin/env bash
# Install the real Claude Code CLI (npm `@anthropic-ai/claude-code@2.1.332`) for the Claude Code
# loop test (tests/system/test_claude_code_loop.py) and print the path of its `claude` binary.
#
# It goes into $GLM_CLAUDE_CODE_DIR (default .venv/claude-code), never globally; a second run that
# finds the right version installed does nothing. The native binary comes in the optional
# dependency @anthropic-ai/claude-code-linux-<arch>; the package's own install.cjs (its postinstall,
# run here explicitly and only for this package) hard-links it into place, with no download.
# Needs Node.js 20+ and npm on PATH.
# Exit status 0 with the binary's path on stdout; 1 with the reason on stderr, also written to
# $GLM_CLAUDE_CODE_DIR/.unavailable (the test shows it when it skips).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PACKAGE="@anthropic-ai/claude-code"
VERSION="2.1.332"
DIR="${GLM_CLAUDE_CODE_DIR:-$ROOT/.venv/claude-code}"
BIN="$DIR/node_modules/.bin/claude"
NOTE="$DIR/.unavailable"

fail() {
    mkdir -p "$DIR"
    echo "setup_claude_code: $*" | tee "$NOTE" >&2
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
    echo "setup_claude_code: installing $PACKAGE@$VERSION into $DIR" >&2
    if ! npm install --prefix "$DIR" --no-audit --no-fund --ignore-scripts --loglevel=error \
        "$PACKAGE@$VERSION" >&2; then
        fail "npm install $PACKAGE@$VERSION failed (see the npm output above)"
    fi
fi
PKG_DIR="$DIR/node_modules/$PACKAGE"
if ! DISABLE_AUTOUPDATER=1 "$BIN" --version >/dev/null 2>&1; then
    (cd "$PKG_DIR" && node install.cjs >&2) \
        || fail "$PACKAGE's install.cjs could not put the native binary for $(uname -m) in place"
fi
[ -x "$BIN" ] || fail "$BIN is missing after the install"
DISABLE_AUTOUPDATER=1 "$BIN" --version >/dev/null 2>&1 \
    || fail "$BIN --version does not run (is the native package for $(uname -m) installed?)"
rm -f "$NOTE"
echo "$BIN"
