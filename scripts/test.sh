#!/usr/bin/env bash
# Lint, type-check and run the test suite. First run creates .venv with the dev extras.
# Extra arguments go to pytest, e.g. scripts/test.sh -k wire -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/_venv.sh
. "$ROOT/scripts/_venv.sh"
ensure_venv dev
echo "== ruff" && "$VENV/bin/ruff" check gateway tests scripts
echo "== mypy (strict, gateway/)" && "$VENV/bin/mypy" gateway
echo "== pytest" && exec "$VENV/bin/pytest" -q "$@"
