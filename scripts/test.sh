#!/usr/bin/env bash
# Lint, type-check and run the test suite. First run creates .venv with the dev extras.
# Extra arguments go to pytest, e.g. scripts/test.sh -k wire -x
# A tier first runs only that tier (tests/<tier>/, see tests/tiers.py), after ruff and mypy:
#   --unit         no socket, no subprocess; sets nothing up (well under a minute)
#   --integration  the simulators and gateways on loopback, in-process; sets nothing up
#   --system       real processes: llama-server, redis-server, chromium, the agents' CLIs
# Without a tier it sets everything up and runs every test.
# The llamacpp-marked integration tests need a real llama-server: scripts/setup_local_model.sh
# installs it first (a portable from-source build the first time, ~15 min on 2 cores; kept after)
# and checks that it generates tokens. When that is impossible they SKIP and say why (pytest -rs);
# GLM_SKIP_LLAMACPP=1 skips them on purpose. scripts/setup_browser.sh installs Debian's chromium
# for the dashboard's browser test when it is missing (it skips, saying why, when that fails);
# scripts/setup_redis.sh installs Debian's redis-server for the shared-state tests the same way.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/_venv.sh
. "$ROOT/scripts/_venv.sh"
ensure_venv dev
tier=""
case "${1:-}" in
--unit | --integration | --system)
    tier="${1#--}"
    shift
    ;;
esac
if [ "$tier" = unit ] || [ "$tier" = integration ]; then
    echo "== ruff" && "$VENV/bin/ruff" check gateway tests scripts
    echo "== mypy (strict, gateway/)" && "$VENV/bin/mypy" gateway
    echo "== pytest ($tier tier)" && exec "$VENV/bin/pytest" -q -rs "tests/$tier" "$@"
fi
echo "== llama.cpp (scripts/setup_local_model.sh)"
bash "$ROOT/scripts/setup_local_model.sh" ||
    echo "== llama.cpp unavailable: the llamacpp integration tests will be skipped (reason above)"
echo "== chromium (scripts/setup_browser.sh)"
bash "$ROOT/scripts/setup_browser.sh" ||
    echo "== chromium unavailable: the dashboard browser test will be skipped (reason above)"
echo "== redis-server (scripts/setup_redis.sh)"
bash "$ROOT/scripts/setup_redis.sh" ||
    echo "== redis-server unavailable: the shared-state tests will be skipped (reason above)"
echo "== ruff" && "$VENV/bin/ruff" check gateway tests scripts
echo "== mypy (strict, gateway/)" && "$VENV/bin/mypy" gateway
if [ "$tier" = system ]; then
    echo "== pytest (system tier)" && exec "$VENV/bin/pytest" -q -rs tests/system "$@"
fi
echo "== pytest" && exec "$VENV/bin/pytest" -q -rs "$@"
