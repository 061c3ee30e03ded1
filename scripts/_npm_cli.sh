# Sourced by scripts/setup_cline.sh, setup_claude_code.sh and setup_codex.sh: install one pinned
# npm CLI into a project-local prefix (never globally) and print the path of its binary.
# The caller sets TOOL (its name in messages), PACKAGE, VERSION, DIR (the prefix) and BIN, then
# calls npm_cli_install, any step of its own, and npm_cli_done. CHECK_ENV (optional, "K=V ...")
# is set for the binary's `--version` check. A failure prints its reason, writes it to
# $DIR/.unavailable (the tests show it when they skip) and exits 1.

npm_cli_fail() {
    mkdir -p "$DIR"
    echo "$TOOL: $*" | tee "$DIR/.unavailable" >&2
    exit 1
}

npm_cli_runs() {
    # shellcheck disable=SC2086  # CHECK_ENV is a list of K=V words
    env ${CHECK_ENV:-} "$BIN" --version >/dev/null 2>&1
}

# Install $PACKAGE@$VERSION into $DIR unless that version is there already. --ignore-scripts:
# only the package files are needed (no postinstall downloads).
npm_cli_install() {
    command -v node >/dev/null 2>&1 ||
        npm_cli_fail "node is not installed (Node.js 20 or newer is needed)"
    command -v npm >/dev/null 2>&1 || npm_cli_fail "npm is not installed"
    local major installed=""
    major="$(node -p 'process.versions.node.split(".")[0]')"
    [ "$major" -ge 20 ] ||
        npm_cli_fail "Node.js $(node --version) is too old (20 or newer is needed)"
    if [ -f "$DIR/node_modules/$PACKAGE/package.json" ]; then
        installed="$(node -p "require('$DIR/node_modules/$PACKAGE/package.json').version" \
            2>/dev/null || true)"
    fi
    if [ "$installed" != "$VERSION" ] || [ ! -x "$BIN" ]; then
        mkdir -p "$DIR"
        echo "$TOOL: installing $PACKAGE@$VERSION into $DIR" >&2
        if ! npm install --prefix "$DIR" --no-audit --no-fund --ignore-scripts --loglevel=error \
            "$PACKAGE@$VERSION" >&2; then
            npm_cli_fail "npm install $PACKAGE@$VERSION failed (see the npm output above)"
        fi
    fi
    [ -x "$BIN" ] || npm_cli_fail "$BIN is missing after the install"
}

npm_cli_done() {
    npm_cli_runs || npm_cli_fail \
        "$BIN --version does not run (is the native package for $(uname -m) installed?)"
    rm -f "$DIR/.unavailable"
    echo "$BIN"
}
