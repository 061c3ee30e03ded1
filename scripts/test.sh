#!/usr/bin/env bash
# Lint, type-check and run the test suite. First run creates .venv with the dev extras.
# Extra arguments go to pytest, e.g. scripts/test.sh -k wire -x
# The llamacpp-marked integration tests need a real llama-server: scripts/setup_local_model.sh
# installs it first (a from-source build the first time, ~16 min on 2 cores; cached after). When
# that is impossible they SKIP and say why (pytest -rs); GLM_SKIP_LLAMACPP=1 skips them on purpose.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/_venv.sh
. "$ROOT/scripts/_venv.sh"
ensure_venv dev
echo "== llama.cpp (scripts/setup_local_model.sh)"
bash "$ROOT/scripts/setup_local_model.sh" ||
    echo "== llama.cpp unavailable: the llamacpp integration tests will be skipped (reason above)"
echo "== ruff" && "$VENV/bin/ruff" check gateway tests scripts
echo "== mypy (strict, gateway/)" && "$VENV/bin/mypy" gateway
echo "== pytest" && exec "$VENV/bin/pytest" -q -rs "$@"
