#!/usr/bin/env bash
# Run the gateway. First run creates .venv and installs the project.
#   scripts/run_gateway.sh --demo          simulated llama.cpp + Cerebras on loopback, nothing else needed
#   scripts/run_gateway.sh                 conf/gateway.yaml (llama.cpp on 127.0.0.1:41447, Cerebras API)
#   scripts/run_gateway.sh --help          every option (--config, --host, --port, --strategy ...)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/_venv.sh
. "$ROOT/scripts/_venv.sh"
ensure_venv
exec "$PY" -m gateway "$@"
