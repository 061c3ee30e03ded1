# Sourced by the scripts: create the project's virtualenv and install the project the first time,
# and again whenever pyproject.toml changes. GLM_VENV overrides the location (default .venv).
# Both functions set VENV (the virtualenv) and PY (its python); ROOT must be set by the caller.
#   ensure_python_venv        only create the virtualenv if it is missing (nothing installed)
#   ensure_venv [extra]       that, plus the project itself, e.g. ensure_venv dev

ensure_python_venv() {
    VENV="${GLM_VENV:-$ROOT/.venv}"
    PY="$VENV/bin/python"
    if [ ! -x "$PY" ]; then
        local base="${PYTHON:-python3}"
        if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
            exit 1
        fi
        echo "creating virtualenv in $VENV" >&2
        "$base" -m venv "$VENV" || {
            echo "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
            exit 1
        }
        "$PY" -m pip install --quiet --upgrade pip >&2
    fi
}

ensure_venv() {
    local extra="${1:-}"
    ensure_python_venv
    local spec="$ROOT"
    [ -n "$extra" ] && spec="$ROOT[$extra]"
    local stamp="$VENV/.glm-installed${extra:+-$extra}"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "installing glm-token-saver${extra:+ [$extra]} into $VENV" >&2
        "$PY" -m pip install --quiet -e "$spec" >&2
        touch "$stamp"
    fi
}
