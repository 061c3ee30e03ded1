#!/usr/bin/env bash
# Install Debian's redis-server (shared gateway state; tests/redis_support.py starts its own) when
# missing. Idempotent: does nothing when redis-server is already on PATH (or GLM_REDIS_SERVER
# points at one). Runs `apt-get update` once, then installs; needs root or passwordless sudo,
# otherwise it says so and exits 1, and the Redis tests skip with that reason
# (GLM_REQUIRE_REDIS=1 turns the skip into a failure).
set -euo pipefail

have_redis() {
    if [ -n "${GLM_REDIS_SERVER:-}" ] && [ -x "${GLM_REDIS_SERVER}" ]; then
        return 0
    fi
    command -v redis-server >/dev/null 2>&1
}

if have_redis; then
    echo "setup_redis: redis-server present: $(command -v redis-server || echo "$GLM_REDIS_SERVER")"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_redis: no apt-get on this system; install redis-server yourself" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "setup_redis: not root and no passwordless sudo: cannot apt-get install redis-server" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
echo "setup_redis: installing redis-server with apt-get" >&2
"${SUDO[@]}" apt-get update -qq || { echo "setup_redis: apt-get update failed" >&2; exit 1; }
# --no-install-recommends and policy-rc.d-free: the package's service is not needed (tests and
# the demo start their own redis-server on a loopback port).
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends redis-server >&2 ||
    { echo "setup_redis: apt-get install redis-server failed" >&2; exit 1; }
have_redis || { echo "setup_redis: redis-server still missing after apt-get" >&2; exit 1; }
echo "setup_redis: redis-server installed: $(command -v redis-server)"
