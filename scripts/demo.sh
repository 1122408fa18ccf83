#!/usr/bin/env bash
# The demo in one command: local PostgreSQL + anvil + demo traffic + chainmux indexing and serving.
#
#   scripts/demo.sh            # gateway on http://127.0.0.1:8080, anvil on 127.0.0.1:8545
#
# Environment: DATABASE_URL (default: database "chainmux" on the local server, recreated on every start because
# the demo chain is new every time),
# ANVIL_PORT (8545), CHAINMUX_LISTEN (127.0.0.1:8080). Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

user_database_url="${DATABASE_URL:-}"
# shellcheck source=scripts/ensure-tools.sh
source scripts/ensure-tools.sh
if [[ -z "$user_database_url" ]]; then
    # The demo's anvil starts a new chain every time, so its index starts afresh too.
    psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS chainmux WITH (FORCE)" -c "CREATE DATABASE chainmux"
    export DATABASE_URL="${DATABASE_URL%/*}/chainmux"
fi

anvil_port="${ANVIL_PORT:-8545}"
export ANVIL_URL="http://127.0.0.1:$anvil_port"
export CHAINMUX_LISTEN="${CHAINMUX_LISTEN:-127.0.0.1:8080}"

echo "demo: building chainmux (first build takes a few minutes)" >&2
cargo build --quiet --bin chainmux --bin demo-traffic

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

anvil --port "$anvil_port" --block-time 1 --quiet &
pids+=($!)
for _ in $(seq 1 100); do
    curl -sf -X POST -H 'content-type: application/json' \
        -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}' "$ANVIL_URL" >/dev/null && break
    sleep 0.1
done
target/debug/demo-traffic --rpc "$ANVIL_URL" --interval-ms 400 &
pids+=($!)

base="http://$CHAINMUX_LISTEN"
cat >&2 <<MSG

demo: anvil on $ANVIL_URL (a block per second), demo transfers flowing, chainmux starting on $base
  curl -s $base/v1/chains
  curl -s '$base/v1/chains/local/transfers?limit=5'
  curl -s '$base/v1/chains/local/logs?limit=5'
  curl -s $base/v1/chains/local/blocks/1
  curl -s -X POST $base/rpc/local -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}'
  target/debug/chainmux status --url $base
  curl -s $base/metrics | grep ^chainmux_
Ctrl-C stops everything.

MSG
target/debug/chainmux run --config config/local.toml
