//! A chain-agnostic JSON-RPC 2.0 client over N redundant upstreams.
//!
//! One [`Pool`] per chain is shared by the indexer (through the chain adapter) and the gateway's `/rpc` proxy, so
//! both see the same health picture. The pool, not its callers, decides retries: an error that comes out of
//! [`Pool::call`] already had its failover and backoff, and carries its class ([`RpcError::is_retryable`]).
//!
//! Upstreams are verified before use with the adapter's [`IdentityCheck`] (chain id on EVM), and probed
//! periodically for liveness and head height with its [`HeadProbe`].

mod error;
mod pool;
mod upstream;

pub use error::{JsonRpcError, RpcError};
pub use pool::{
    HeadProbe, IdentityCheck, IdentityVerifier, Pool, PoolConfig, UpstreamConfig, is_write_method,
};
pub use upstream::{UpstreamState, UpstreamStatus};
