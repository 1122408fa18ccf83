#!/usr/bin/env bash
# The demo in one command: local PostgreSQL + anvil + demo traffic + chainmux indexing and serving.
#
#   scripts/demo.sh                 # gateway on http://127.0.0.1:8080, anvil on 127.0.0.1:8545
#   DEMO_SOLANA=1 scripts/demo.sh   # the same plus a local Solana node on 127.0.0.1:8899 with SOL/SPL traffic
#                                   # (the node is built once into ~/.cache; the first build takes several minutes)
#
# Environment: DATABASE_URL (default: database "chainmux" on the local server, recreated on every start because
# the demo chain is new every time),
# ANVIL_PORT (8545), SOLANA_PORT (8899), CHAINMUX_LISTEN (127.0.0.1:8080). Ctrl-C stops everything it started.
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

config=config/local.toml
if [[ "${DEMO_SOLANA:-0}" == 1 ]]; then
    solana_node="$(scripts/ensure-solana-node.sh)"
    solana_port="${SOLANA_PORT:-8899}"
    export SOLANA_URL="http://127.0.0.1:$solana_port"
    "$solana_node" --port "$solana_port" >/dev/null &
    pids+=($!)
    for _ in $(seq 1 600); do
        curl -sf -X POST -H 'content-type: application/json' \
            -d '{"jsonrpc":"2.0","id":1,"method":"getHealth"}' "$SOLANA_URL" >/dev/null && break
        sleep 0.2
    done
    # A new scenario (fresh wallets, mints and token accounts) every few seconds.
    (
        seed=1
        while true; do
            "$(dirname "$solana_node")/chainmux-solana-traffic" --url "$SOLANA_URL" --seed "$seed" >/dev/null ||
                echo "demo: solana traffic round $seed failed" >&2
            seed=$((seed + 1))
            sleep 5
        done
    ) &
    pids+=($!)
    config=config/local-multichain.toml
fi

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
With DEMO_SOLANA=1 also:
  curl -s '$base/v1/chains/solana-local/transfers?limit=5'
  curl -s '$base/v1/chains/solana-local/instructions?limit=5'
Ctrl-C stops everything.

MSG
target/debug/chainmux run --config "$config"
