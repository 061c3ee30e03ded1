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
TOOL="setup_claude_code"
PACKAGE="@anthropic-ai/claude-code"
VERSION="2.1.332"
DIR="${GLM_CLAUDE_CODE_DIR:-$ROOT/.venv/claude-code}"
BIN="$DIR/node_modules/.bin/claude"
CHECK_ENV="DISABLE_AUTOUPDATER=1"
# shellcheck source=scripts/_npm_cli.sh
. "$ROOT/scripts/_npm_cli.sh"
npm_cli_install
if ! npm_cli_runs; then
    (cd "$DIR/node_modules/$PACKAGE" && node install.cjs >&2) ||
        npm_cli_fail "$PACKAGE's install.cjs could not put the native binary for $(uname -m) in place"
fi
npm_cli_done
