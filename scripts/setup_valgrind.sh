#!/usr/bin/env bash
# Install Debian's valgrind (scripts/bench_instructions.py counts instructions with its callgrind
# tool) when missing. Idempotent; needs root or passwordless sudo, otherwise it says so and exits 1.
set -euo pipefail

if command -v valgrind >/dev/null 2>&1 && command -v callgrind_control >/dev/null 2>&1; then
    echo "setup_valgrind: valgrind present: $(command -v valgrind)"
    exit 0
fi
# shellcheck source=scripts/_apt.sh
. "$(dirname "${BASH_SOURCE[0]}")/_apt.sh"
apt_install setup_valgrind valgrind || exit 1
command -v callgrind_control >/dev/null 2>&1 ||
    { echo "setup_valgrind: callgrind_control still missing after apt-get" >&2; exit 1; }
echo "setup_valgrind: valgrind installed: $(command -v valgrind)"
