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
TOOL="setup_cline"
PACKAGE="cline"
VERSION="3.0.65"
DIR="${GLM_CLINE_DIR:-$ROOT/.venv/cline}"
BIN="$DIR/node_modules/.bin/cline"
# shellcheck source=scripts/_npm_cli.sh
. "$ROOT/scripts/_npm_cli.sh"
npm_cli_install
npm_cli_done
