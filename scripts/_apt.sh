# Sourced by the setup scripts: install Debian packages with apt-get, as root or with
# passwordless sudo. `apt_install WHO PACKAGE...` prints what it does (prefixed with WHO) and
# returns 1, saying why, when it cannot: no apt-get, no root, or apt-get failing.
apt_install() {
    local who="$1"
    shift
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$who: no apt-get on this system; install $* yourself" >&2
        return 1
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "$who: not root and no passwordless sudo: cannot apt-get install $*" >&2
            return 1
        fi
    fi
    echo "$who: installing $* with apt-get" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
        { echo "$who: apt-get update failed" >&2; return 1; }
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >&2 ||
        { echo "$who: apt-get install $* failed" >&2; return 1; }
}
