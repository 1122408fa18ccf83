//! The contract between the indexer and a chain adapter.

use std::ops::RangeInclusive;

use async_trait::async_trait;

use crate::{BlockPtr, ChainSpec, Heads, NormalizedBlock};

/// What the indexer needs from a chain, and nothing more.
///
/// Implementations route every call through the chain's upstream pool, which owns retries and failover: an `Err`
/// from here means the pool already gave up, and [`NetworkError::is_retryable`] tells the indexer whether trying the
/// same call again later can help.
#[async_trait]
pub trait Network: Send + Sync + 'static {
    fn spec(&self) -> &ChainSpec;

    /// The best tips the upstreams currently agree on.
    async fn heads(&self) -> Result<Heads, NetworkError>;

    /// The canonical block at `height`. `Ok(None)` means the chain has no block there (not yet produced, or a
    /// skipped slot on chains that have them); an unreachable upstream is an `Err`, never `None`.
    async fn block_ptr(&self, height: u64) -> Result<Option<BlockPtr>, NetworkError>;

    /// Whether the chain leaves heights without a block (Solana's skipped slots). On such a chain
    /// [`block_ptr`](Self::block_ptr) answering `None` below the head is proof the height is empty on the canonical
    /// fork, and a stored block there lost a fork.
    fn skips_heights(&self) -> bool {
        false
    }

    /// The blocks of `range`, ascending, all on one fork: every block's parent is the previous element (except
    /// the first, whose parent is whatever precedes the range). Heights the chain skips are absent, never faked.
    /// A block that does not exist yet is an error, so a returned batch is always complete.
    /// Calling it twice for the same range of a settled chain returns equal values.
    async fn fetch(&self, range: RangeInclusive<u64>) -> Result<Vec<NormalizedBlock>, NetworkError>;
}

/// Why a [`Network`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The upstream pool failed the request after its own retries.
    #[error("upstream request failed: {message}")]
    Upstream { message: String, retryable: bool },
    /// Upstream answers that contradict each other (a reorg racing the fetch, or a lagging upstream):
    /// asking again usually resolves it.
    #[error("inconsistent chain data: {0}")]
    Inconsistent(String),
    /// A block the caller expected is not there (yet).
    #[error("block {0} is not available")]
    BlockUnavailable(u64),
    /// An answer that does not decode into the model: a bug or a non-conforming upstream.
    #[error("malformed upstream data: {0}")]
    Malformed(String),
}

impl NetworkError {
    /// Whether the same call may succeed if repeated later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Upstream { retryable, .. } => *retryable,
            Self::Inconsistent(_) | Self::BlockUnavailable(_) => true,
            Self::Malformed(_) => false,
        }
    }
}
