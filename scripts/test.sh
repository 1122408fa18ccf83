#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test against real anvil and PostgreSQL.
# CI (.ci/run) runs exactly this. Installs anvil and PostgreSQL where missing (scripts/ensure-tools.sh), and builds
# the local Solana node the Solana integration tests run against (scripts/ensure-solana-node.sh; cached outside
# the clone, so only the first run pays for it).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/ensure-tools.sh
source scripts/ensure-tools.sh

scripts/ensure-solana-node.sh >/dev/null

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
