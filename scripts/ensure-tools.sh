#!/usr/bin/env bash
# Installs, where missing, what chainmux's tests and demo need on a Debian machine:
#   - anvil, cast (Foundry) and solcjs, as npm packages in the tools dir
#     ${CHAINMUX_TOOLS_DIR:-$HOME/.cache/chainmux-tools}
#   - the client libraries of the conformance tests (crates/cli/tests/clients.rs), pinned in tests/clients/:
#     viem and ethers (`npm ci` into <tools dir>/clients-js) and web3.py (a venv in <tools dir>/clients-py);
#     reinstalled only when the committed lock files change
#   - kubernetes-validate (a venv in <tools dir>/k8s-validate, pinned in tests/deploy/requirements.txt), for the
#     schema check of deploy/k8s/ (crates/cli/tests/deploy_manifests.rs)
#   - a local PostgreSQL on 127.0.0.1:5432 that trusts user postgres over TCP
#     (skipped when DATABASE_URL is set or something already answers there)
#   - Debian's chromium, for the headless test of the status page (crates/cli/tests/status_page.rs)
#   - promtool (Debian's prometheus package), for the alert rules' unit tests (deploy/prometheus/alerts.test.yml)
#   - Debian's redis-server binary, which the Redis tests start themselves on free ports (never as a service)
# Idempotent and quiet: installer output is only shown when a step fails.
#
# Usage:
#   bash scripts/ensure-tools.sh      # install/start only
#   source scripts/ensure-tools.sh    # also exports PATH (tools bin first) and DATABASE_URL

_chainmux_tools_dir="${CHAINMUX_TOOLS_DIR:-$HOME/.cache/chainmux-tools}"
_chainmux_default_db_url="postgres://postgres@127.0.0.1:5432/postgres"

_chainmux_log() { echo "ensure-tools: $*" >&2; }

# Runs a command with its output captured; prints the output only on failure.
_chainmux_quiet() {
    local log rc=0
    log="$(mktemp)"
    "$@" >"$log" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        _chainmux_log "failed ($rc): $*"
        cat "$log" >&2
    fi
    rm -f "$log"
    return "$rc"
}

_chainmux_as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _chainmux_log "need root for: $* (no sudo available)"
        return 1
    fi
}

_chainmux_apt_updated=0
_chainmux_apt_install() {
    if [[ $_chainmux_apt_updated -eq 0 ]]; then
        _chainmux_quiet _chainmux_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        _chainmux_apt_updated=1
    fi
    _chainmux_log "installing $* (apt)"
    _chainmux_quiet _chainmux_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}

_chainmux_ensure_node_tools() {
    local dir="$_chainmux_tools_dir"
    [[ -x "$dir/node_modules/.bin/anvil" && -x "$dir/node_modules/.bin/cast" && -x "$dir/node_modules/.bin/solcjs" ]] && return 0
    if ! command -v npm >/dev/null 2>&1; then
        _chainmux_apt_install nodejs npm
    fi
    mkdir -p "$dir"
    _chainmux_log "installing anvil, cast and solcjs into $dir (npm)"
    _chainmux_quiet npm install --no-audit --no-fund --loglevel=error --prefix "$dir" \
        @foundry-rs/anvil-linux-amd64@1.7.1 @foundry-rs/cast-linux-amd64@1.7.1 solc@0.8.37
}

_chainmux_repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# viem and ethers, exactly as tests/clients/js/package-lock.json pins them. A copy of the lock file taken after a
# successful install is the stamp of what is installed.
_chainmux_ensure_js_clients() {
    local src="$_chainmux_repo_dir/tests/clients/js" dir="$_chainmux_tools_dir/clients-js"
    if [[ -d "$dir/node_modules" ]] && cmp -s "$src/package-lock.json" "$dir/installed.lock.json"; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        _chainmux_apt_install nodejs npm
    fi
    mkdir -p "$dir"
    rm -f "$dir/installed.lock.json"
    cp "$src/package.json" "$src/package-lock.json" "$dir/"
    _chainmux_log "installing viem and ethers into $dir (npm ci)"
    _chainmux_quiet npm ci --no-audit --no-fund --loglevel=error --prefix "$dir" || return 1
    cp "$src/package-lock.json" "$dir/installed.lock.json"
}

# A venv under the tools dir with exactly what requirements file $1 pins (every transitive package too), named $2,
# whose copy of that file is the stamp of what is installed; $3 is a program the venv must provide.
_chainmux_ensure_venv() {
    local src="$_chainmux_repo_dir/$1" dir="$_chainmux_tools_dir/$2" program="$3"
    if [[ -x "$dir/bin/$program" ]] && cmp -s "$src" "$dir/requirements.txt"; then
        return 0
    fi
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        _chainmux_apt_install python3 python3-venv
    fi
    rm -rf "$dir"
    _chainmux_log "installing $1 into $dir (pip, venv)"
    _chainmux_quiet python3 -m venv "$dir" || return 1
    _chainmux_quiet "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$src" ||
        return 1
    cp "$src" "$dir/requirements.txt"
}

# web3.py for the client conformance tests.
_chainmux_ensure_py_clients() {
    _chainmux_ensure_venv tests/clients/py/requirements.txt clients-py python
}

# kubernetes-validate for the manifest test. It bundles the Kubernetes JSON schemas, so the test needs no network.
_chainmux_ensure_k8s_validate() {
    _chainmux_ensure_venv tests/deploy/requirements.txt k8s-validate kubernetes-validate
}

_chainmux_pg_ready() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1
}

_chainmux_ensure_postgres() {
    [[ -n "${DATABASE_URL:-}" ]] && return 0
    _chainmux_pg_ready && return 0

    if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
        _chainmux_apt_install postgresql
    fi

    local version
    version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)"
    if [[ -z "$version" ]]; then
        version="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
    fi
    local conf_dir="/etc/postgresql/$version/main"
    if [[ ! -d "$conf_dir" ]]; then
        _chainmux_quiet _chainmux_as_root pg_createcluster "$version" main
    fi

    # Trust local TCP connections (tests connect as postgres without a password).
    _chainmux_as_root sed -i -E \
        's#^([[:space:]]*host[[:space:]]+[^[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+(127\.0\.0\.1/32|::1/128)[[:space:]]+)[^[:space:]]+#\1trust#' \
        "$conf_dir/pg_hba.conf"

    if _chainmux_as_root pg_ctlcluster "$version" main status >/dev/null 2>&1; then
        _chainmux_quiet _chainmux_as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    else
        _chainmux_log "starting PostgreSQL $version"
        _chainmux_quiet _chainmux_as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi

    local i
    for ((i = 0; i < 60; i++)); do
        _chainmux_pg_ready && return 0
        sleep 0.5
    done
    _chainmux_log "PostgreSQL did not become ready on 127.0.0.1:5432"
    return 1
}

# A browser for the status page test, which drives it headless from the command line (no webdriver).
_chainmux_ensure_chromium() {
    [[ -n "${CHAINMUX_CHROMIUM:-}" ]] && return 0
    command -v chromium >/dev/null 2>&1 && return 0
    _chainmux_apt_install chromium
}

# redis-server for the shared-state tests (crates/gateway/src/shared.rs, crates/cli/tests/redis_limits.rs); they
# start their own instances, so the package's service is neither needed nor started here.
_chainmux_ensure_redis() {
    [[ -n "${REDIS_SERVER_BIN:-}" ]] && return 0
    command -v redis-server >/dev/null 2>&1 && return 0
    _chainmux_apt_install redis-server
}

# promtool, for the unit tests of the alert rules (deploy/prometheus/alerts.test.yml, run by
# crates/cli/tests/deploy_assets.rs). Debian ships it in the prometheus package, whose server the tests do not
# need: where systemd started it, it is stopped and disabled again, so it does not hold port 9090.
_chainmux_ensure_promtool() {
    command -v promtool >/dev/null 2>&1 && return 0
    _chainmux_apt_install prometheus || return 1
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        _chainmux_quiet _chainmux_as_root systemctl disable --now prometheus.service
    fi
}

_chainmux_ensure_main() {
    _chainmux_ensure_node_tools
    _chainmux_ensure_js_clients
    _chainmux_ensure_py_clients
    _chainmux_ensure_k8s_validate
    _chainmux_ensure_postgres
    _chainmux_ensure_chromium
    _chainmux_ensure_redis
    _chainmux_ensure_promtool
}

_chainmux_forget() {
    unset -f _chainmux_log _chainmux_quiet _chainmux_as_root _chainmux_apt_install \
        _chainmux_ensure_node_tools _chainmux_ensure_js_clients _chainmux_ensure_py_clients _chainmux_pg_ready \
        _chainmux_ensure_k8s_validate _chainmux_ensure_venv \
        _chainmux_ensure_postgres _chainmux_ensure_chromium _chainmux_ensure_main _chainmux_forget \
        _chainmux_ensure_redis _chainmux_ensure_promtool
    unset _chainmux_tools_dir _chainmux_default_db_url _chainmux_apt_updated _chainmux_repo_dir
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: do the work in a child bash (strict mode there cannot touch the caller's
    # shell, and errexit works, which it would not inside an `if`), then export here.
    if DATABASE_URL="${DATABASE_URL:-}" CHAINMUX_TOOLS_DIR="$_chainmux_tools_dir" bash "${BASH_SOURCE[0]}"; then
        case ":$PATH:" in
            *":$_chainmux_tools_dir/node_modules/.bin:"*) ;;
            *) export PATH="$_chainmux_tools_dir/node_modules/.bin:$PATH" ;;
        esac
        export DATABASE_URL="${DATABASE_URL:-$_chainmux_default_db_url}"
        _chainmux_forget
        return 0
    else
        _chainmux_log "failed; PATH and DATABASE_URL not changed"
        _chainmux_forget
        return 1
    fi
else
    set -euo pipefail
    _chainmux_ensure_main
fi
