//! A chain-agnostic JSON-RPC 2.0 client over N redundant upstreams.
//!
//! One [`Pool`] per chain is shared by the indexer (through the chain adapter) and the gateway's `/rpc` proxy, so
//! both see the same health picture. The pool, not its callers, decides retries: an error that comes out of
//! [`Pool::call`] already had its failover, hedging and backoff, and carries its class ([`RpcError::is_retryable`]).
//!
//! Per upstream it keeps a latency window, error and throttle rates, the reported head, a circuit breaker and a
//! `governor` rate budget, and routes each call to the best-scoring eligible upstream (with hysteresis, so the
//! primary does not flap). Every exclusion has a reason shown in [`UpstreamStatus`]. Upstreams are verified before
//! use with the adapter's [`IdentityCheck`] (chain id on EVM) and probed with its [`HeadProbe`].

mod error;
mod policy;
mod pool;
mod upstream;

pub use error::{JsonRpcError, RpcError};
pub use policy::{BreakerConfig, HedgeDelay, PoolConfig, RateLimit, UpstreamPolicy};
pub use pool::{
    CallTrace, HeadProbe, HealthCheck, IdentityCheck, IdentityVerifier, Pool, RequestHints, RequestInspector,
    UpstreamConfig, WriteKind, is_write_method, method_class, write_kind,
};
pub use upstream::{BreakerState, UpstreamStatus, UpstreamTransition};
