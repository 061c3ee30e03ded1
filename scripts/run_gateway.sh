#!/usr/bin/env bash
# Run the gateway. First run creates .venv and installs the project.
#   scripts/run_gateway.sh --demo          simulated llama.cpp + Cerebras on loopback, nothing else needed;
#                                          prints the dashboard URL (http://127.0.0.1:8000/dashboard)
#   scripts/run_gateway.sh --demo-traffic  the demo plus a slow, varied stream of simulated requests
#   scripts/run_gateway.sh --demo --workers 2  the demo served by 2 processes on one port, sharing
#                                          state in a throw-away redis-server on a free loopback
#                                          port (installed by scripts/setup_redis.sh if missing;
#                                          stopped with the gateway)
#   scripts/run_gateway.sh --local-model   a real llama-server with a small model on 127.0.0.1:41447
#                                          (installed by scripts/setup_local_model.sh, run here first;
#                                          stopped with the gateway); Cerebras is the real API when
#                                          CEREBRAS_API_KEY is set, simulated otherwise
#   scripts/run_gateway.sh                 conf/gateway.yaml (llama.cpp on 127.0.0.1:41447, Cerebras API)
#   scripts/run_gateway.sh --doctor        check the config and both upstreams (a few tokens each), then
#                                          exit; with --config F, --json, --demo (glm-gateway doctor)
#   scripts/run_gateway.sh --help          every option (--config, --host, --port, --strategy ...)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# glibc's malloc: a fixed mmap threshold, so that a large transient buffer (a 1 MB stream event)
# is returned to the system when freed instead of raising the threshold and fragmenting the heap,
# and two arenas for the writer threads; RSS then stays flat under faults (docs/bench/memory.md).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-131072}"
# shellcheck source=scripts/_venv.sh
. "$ROOT/scripts/_venv.sh"
ensure_venv
demo=0
workers=0
for arg in "$@"; do
    case "$arg" in
        --demo | --demo-traffic) demo=1 ;;
        --workers | --workers=*) workers=1 ;;
    esac
done
if [ "$demo" = 1 ] && [ "$workers" = 1 ] && [ -z "${GATEWAY_REDIS_URL:-}" ]; then
    bash "$ROOT/scripts/setup_redis.sh" >&2 || {
        echo "run_gateway: --demo --workers needs redis-server (see above)" >&2
        exit 1
    }
fi
for arg in "$@"; do
    if [ "$arg" = "--local-model" ]; then
        bash "$ROOT/scripts/setup_local_model.sh" >&2 || {
            echo "run_gateway: cannot use --local-model (see above)" >&2
            exit 1
        }
        break
    fi
done
exec "$PY" -m gateway "$@"
