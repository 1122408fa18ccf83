//! Solana adapter: implements [`chainmux_core::Network`] for Solana clusters over the chain's upstream pool.
//!
//! The pool is plugged into solana-client's nonblocking `RpcClient` as its [`RpcSender`](sender::PoolSender), so
//! every call gets failover, limits and metrics; [`normalize`] turns `getBlock` answers into the chain-independent
//! model (SOL and SPL transfers, instructions of configured programs).

mod hints;
mod network;
pub mod normalize;
mod sender;

pub use network::{Commitment, SolanaNetwork, SolanaOptions};
pub use normalize::{ProgramFilter, normalize_block};
pub use sender::{PoolSender, pool_error};
