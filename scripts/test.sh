#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test against real anvil and PostgreSQL.
# CI (.ci/run) runs exactly this. Installs anvil and PostgreSQL where missing (scripts/ensure-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/ensure-tools.sh
source scripts/ensure-tools.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
