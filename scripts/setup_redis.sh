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
# The package's own service is not needed: tests and the demo start their own redis-server on a
# loopback port.
# shellcheck source=scripts/_apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"
apt_install setup_redis redis-server || exit 1
have_redis || { echo "setup_redis: redis-server still missing after apt-get" >&2; exit 1; }
echo "setup_redis: redis-server installed: $(command -v redis-server)"
