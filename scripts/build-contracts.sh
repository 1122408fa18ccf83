#!/usr/bin/env bash
# Compiles the Solidity test contracts in crates/testkit/contracts/ into
# crates/testkit/contracts/build/<Contract>.bin (creation bytecode, hex, no 0x)
# and <Contract>.abi (JSON). The artefacts are committed, so tests and CI do not
# need solc; rerun this script after editing a .sol file and commit the result.
#
# Uses solcjs from the tools dir (${CHAINMUX_TOOLS_DIR:-$HOME/.cache/chainmux-tools});
# install it with scripts/ensure-tools.sh.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
contracts_dir="$repo_root/crates/testkit/contracts"
build_dir="$contracts_dir/build"
tools_dir="${CHAINMUX_TOOLS_DIR:-$HOME/.cache/chainmux-tools}"

solcjs="$tools_dir/node_modules/.bin/solcjs"
if [[ ! -x "$solcjs" ]]; then
    if command -v solcjs >/dev/null 2>&1; then
        solcjs="$(command -v solcjs)"
    else
        echo "build-contracts: solcjs not found in $tools_dir; run scripts/ensure-tools.sh first" >&2
        exit 1
    fi
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Compile from inside the contracts dir with bare file names so the metadata
# (and therefore the bytecode) does not depend on where the repo is checked out.
sources=()
for f in "$contracts_dir"/*.sol; do
    sources+=("$(basename "$f")")
done
(cd "$contracts_dir" && "$solcjs" --bin --abi --optimize --base-path . -o "$tmp" "${sources[@]}")

# solcjs names outputs <file>_sol_<Contract>.{bin,abi}; keep only the contract name.
rm -rf "$build_dir"
mkdir -p "$build_dir"
shopt -s nullglob
count=0
for out in "$tmp"/*_sol_*.bin "$tmp"/*_sol_*.abi; do
    base="$(basename "$out")"
    contract="${base##*_sol_}"
    if [[ -e "$build_dir/$contract" ]]; then
        echo "build-contracts: duplicate contract name ${contract%.*}" >&2
        exit 1
    fi
    cp "$out" "$build_dir/$contract"
    count=$((count + 1))
done
if [[ $count -eq 0 ]]; then
    echo "build-contracts: solcjs produced no output" >&2
    exit 1
fi
echo "build-contracts: wrote $count files to crates/testkit/contracts/build/ ($("$solcjs" --version))"
