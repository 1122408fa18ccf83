//! The per-chain indexing pipeline: backfill from the configured start block to the head in batches, then follow
//! the head by polling. Knows only [`chainmux_core::Network`] and [`chainmux_store::Store`], never a chain.
//!
//! A fetch task reads batches ahead while the writer commits the previous one; each batch is written with the
//! cursor in one transaction, so a restart resumes exactly after the last committed block. A batch whose first
//! parent does not match the stored cursor is never written: if the canonical chain no longer contains the indexed
//! head, the indexer walks back to the common ancestor and rolls back to it in one transaction (emitting
//! [`chainmux_core::ChainEvent::Revert`]), then indexes the new branch; a chain that is merely shorter (a lagging
//! node) is waited out, and a reorg deeper than `max_reorg_depth` or below finality stops the chain's loop.

mod leader;
mod pipeline;
pub mod progress;
mod status;

pub use leader::{LeadershipConfig, lead};
pub use pipeline::{Indexer, IndexerConfig, IndexerError};
pub use progress::{ChainProgress, ProgressBoard};
