//! Test-only support for chainmux: real anvil, a real local Solana node, Postgres, fixtures, chain builders.
//!
//! Everything here talks to real processes: [`Anvil`] spawns an `anvil` dev node,
//! [`TestDb`] creates a throwaway database on a real PostgreSQL server, [`Eth`] is a
//! minimal raw JSON-RPC client, and [`populate_transfers`] deploys the Solidity test
//! contracts in `contracts/` and fills a chain with a known mix of token transfers.
//! [`solana`] runs the local Solana JSON-RPC node and sends it a known scenario of SOL and SPL traffic.
//! [`FaultProxy`] stands between code under test and a node to inject the failures a real node
//! cannot produce on demand (refused connections, hangs, HTTP errors, garbage, lag, a wrong chain id,
//! Solana skipped slots, forks and slots a node cannot serve).
//!
//! The tools come from `scripts/ensure-tools.sh`; nothing here is meant for production code.

mod anvil;
pub mod contracts;
mod db;
mod eth;
mod fault;
mod populate;
mod redis_server;
pub mod solana;

use std::path::PathBuf;

pub use anvil::{Anvil, anvil_binary, free_port};
pub use db::{TestDb, admin_url};
pub use eth::Eth;
pub use fault::{Fault, FaultProxy};
pub use populate::{TransferMix, populate_transfers};
pub use redis_server::RedisServer;

/// `<crate dir>/fixtures`: recorded data for tests, each file with its source and licence notes.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Installs rustls' `ring` provider as the process-wide default (idempotent).
///
/// reqwest is built with `rustls-no-provider`, so code under test that builds its own
/// `reqwest::Client` needs a process-level provider; tests call this first. [`Eth`] does not
/// need it (it brings its own TLS config).
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    #[test]
    fn fixtures_dir_is_in_the_crate() {
        let dir = super::fixtures_dir();
        assert!(dir.join("README.md").is_file(), "{}", dir.display());
    }

    #[test]
    fn anvil_is_found_without_configuration() {
        assert!(super::anvil_binary().is_file());
    }
}
