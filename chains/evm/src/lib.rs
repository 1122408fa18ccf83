//! EVM chain adapter: implements [`chainmux_core::Network`] with alloy, every request going through the chain's
//! [`chainmux_rpc::Pool`] (plugged into alloy as a transport), so the indexer gets failover, retries and metrics for
//! free.
//!
//! Blocks are fetched with full transactions plus `eth_getBlockReceipts` (falling back to `eth_getLogs` for the
//! range when an upstream lacks it), then normalized: transactions with their receipt outcome, logs, and transfers
//! decoded from ERC-20 / ERC-721 / ERC-1155 events and from top-level native value transfers.

mod hints;
mod network;
mod normalize;
mod transfers;
mod transport;

pub use network::{EvmNetwork, EvmOptions};
pub use transfers::decode_transfers;
pub use transport::PoolTransport;
