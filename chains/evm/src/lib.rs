//! EVM chain adapter: implements [`chainmux_core::Network`] with alloy, every request going through the chain's
//! [`chainmux_rpc::Pool`] (plugged into alloy as a transport), so the indexer gets failover, retries and metrics for
//! free.
//!
//! In [`FetchMode::Full`] (the default) blocks are fetched with full transactions plus `eth_getBlockReceipts`
//! (falling back to `eth_getLogs` per block hash when an upstream lacks it), then normalized: transactions with
//! their receipt outcome, logs, and transfers decoded from ERC-20 / ERC-721 / ERC-1155 events and from top-level
//! native value transfers. In [`FetchMode::Logs`] only block headers and `eth_getLogs` over whole ranges are
//! fetched, in ranges that adapt to what the upstreams accept: logs and token transfers, no transactions.

pub mod catch_up;
pub mod events;
mod hints;
mod history;
mod logs;
mod network;
mod normalize;
mod range_limit;
mod transfers;
mod transport;

pub use events::{ContractSource, EventDecoder, SourceTarget};
pub use network::{EvmNetwork, EvmOptions, FetchMode};
pub use transfers::decode_transfers;
pub use transport::PoolTransport;
