#!/usr/bin/env bash
# Builds, where missing or out of date, the local Solana JSON-RPC node used by the Solana
# integration tests (crates/testkit/solana-node, kept outside the workspace) and its traffic
# generator, and prints the node binary's path on stdout; `chainmux-solana-traffic` is built
# next to it (same directory).
#
# The build goes to ${CHAINMUX_SOLANA_NODE_DIR:-$HOME/.cache/chainmux-solana-node}/target,
# outside the clone, so CI and later runs reuse it. A cold debug build takes ~4-5 minutes on
# 2 cores; afterwards this is a hash check. Idempotent and quiet: cargo's output is shown
# only when the build fails (one line on stderr says a build is starting).
#
# Usage:
#   node="$(scripts/ensure-solana-node.sh)"
#   "$node" [--port N] [--ws-port N]     # prints "ready http://127.0.0.1:PORT" when up
#   "$(dirname "$node")/chainmux-solana-traffic" --url http://127.0.0.1:PORT [--seed N]  # JSON manifest
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
crate="$repo/crates/testkit/solana-node"
cache_dir="${CHAINMUX_SOLANA_NODE_DIR:-$HOME/.cache/chainmux-solana-node}"
target_dir="$cache_dir/target"
bin="$target_dir/debug/chainmux-solana-node"
traffic_bin="$target_dir/debug/chainmux-solana-traffic"
stamp="$target_dir/chainmux-solana-node.stamp"

log() { echo "ensure-solana-node: $*" >&2; }

# What the binaries were built from (every file under src/, so src/bin/ too): a fresh clone
# gives new mtimes, so compare contents.
sources_hash() {
    (cd "$crate" && find Cargo.toml Cargo.lock src -type f -print0 | LC_ALL=C sort -z |
        xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

want="$(sources_hash)"
if [[ -x "$bin" && -x "$traffic_bin" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$bin"
    exit 0
fi

mkdir -p "$target_dir"
log "building chainmux-solana-node and chainmux-solana-traffic into $target_dir (a cold build takes ~5 minutes on 2 cores)"
build_log="$(mktemp)"
trap 'rm -f "$build_log"' EXIT
if ! cargo build --locked --quiet --manifest-path "$crate/Cargo.toml" \
    --target-dir "$target_dir" >"$build_log" 2>&1; then
    log "cargo build failed:"
    cat "$build_log" >&2
    exit 1
fi
for built in "$bin" "$traffic_bin"; do
    if [[ ! -x "$built" ]]; then
        log "build succeeded but $built is missing"
        exit 1
    fi
done
echo "$want" >"$stamp"
echo "$bin"
