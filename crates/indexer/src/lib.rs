//! The per-chain indexing pipeline: backfill from the configured start block to the head in batches, then follow
//! the head by polling. Knows only [`chainmux_core::Network`] and [`chainmux_store::Store`], never a chain.
//!
//! A fetch task reads batches ahead while the writer commits the previous one; each batch is written with the
//! cursor in one transaction, so a restart resumes exactly after the last committed block. A batch whose first
//! parent does not match the stored cursor is never written: the loop stops with an error naming the fork
//! (automatic reorg handling builds on exactly this check).

mod pipeline;

pub use pipeline::{Indexer, IndexerConfig, IndexerError};
