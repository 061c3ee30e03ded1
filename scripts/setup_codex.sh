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
TOOL="setup_codex"
PACKAGE="@openai/codex"
VERSION="0.171.0"
DIR="${GLM_CODEX_DIR:-$ROOT/.venv/codex}"
BIN="$DIR/node_modules/.bin/codex"
# shellcheck source=scripts/_npm_cli.sh
. "$ROOT/scripts/_npm_cli.sh"
npm_cli_install
npm_cli_done
