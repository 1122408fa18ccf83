//! The store as a source of chain events, for gateway replicas that do not index a chain themselves.
//!
//! Every batch and rollback transaction sends a `NOTIFY` on [`FEED_CHANNEL`] (delivered on commit, never for a
//! rolled-back write) naming the chain. Notifications only say *when* to look: what changed is read from the store
//! by [`Store::feed_delta`], relative to what a replica already delivered, so a lost notification or a dropped
//! listener connection delays an update but never loses one.

use chainmux_core::{B256, BlockPtr, Bytes, Log, NormalizedBlock};
use sqlx::{Postgres, Row, Transaction};

use crate::read::ptr_from;
use crate::write::to_i64;
use crate::{Result, Store, StoreError};

/// The `LISTEN` channel of batch and rollback commits; the payload is the chain's name.
pub const FEED_CHANNEL: &str = "chainmux_chain_events";

/// What changed in a chain's index since a replica last looked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedDelta {
    /// The indexed head now.
    pub cursor: Option<BlockPtr>,
    /// Set when some delivered blocks are no longer stored: everything above this block was rolled back.
    pub revert_to: Option<BlockPtr>,
    /// Blocks above the last delivered one still stored (or above `revert_to`), ascending, each with its header
    /// fields and logs only (no transactions, transfers or decoded events: feeds read those from the store).
    pub blocks: Vec<NormalizedBlock>,
    /// None of the delivered blocks is stored any more: the change is deeper than the caller remembers.
    pub lost: bool,
}

pub(crate) async fn notify(tx: &mut Transaction<'_, Postgres>, chain: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(FEED_CHANNEL).bind(chain).execute(&mut **tx).await?;
    Ok(())
}

impl Store {
    /// The change of `chain`'s index relative to `delivered` (the pointers a caller already passed on, ascending),
    /// read from one snapshot: at most `max_blocks` new blocks. With nothing delivered, only the cursor.
    pub async fn feed_delta(
        &self,
        chain: &str,
        delivered: &[BlockPtr],
        max_blocks: u64,
    ) -> Result<FeedDelta> {
        let mut tx = self.pool.begin().await?;
        // One snapshot: the cursor, the hashes and the new blocks must agree with each other.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let cursor = sqlx::query("SELECT block_number, block_hash FROM cursors WHERE chain = $1")
            .bind(chain)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| ptr_from(row.try_get("block_number")?, row.try_get("block_hash")?))
            .transpose()?;
        let mut delta = FeedDelta { cursor, ..FeedDelta::default() };
        let (Some(cursor), Some(last)) = (cursor, delivered.last()) else {
            tx.commit().await?;
            return Ok(delta);
        };
        let numbers =
            delivered.iter().map(|p| to_i64(p.number, "block number")).collect::<Result<Vec<_>>>()?;
        let stored = sqlx::query("SELECT number, hash FROM blocks WHERE chain = $1 AND number = ANY($2)")
            .bind(chain)
            .bind(&numbers)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| ptr_from(row.try_get("number")?, row.try_get("hash")?))
            .collect::<Result<Vec<_>>>()?;
        let common =
            delivered.iter().rev().find(|d| d.number <= cursor.number && stored.contains(d)).copied();
        let Some(common) = common else {
            delta.lost = true;
            tx.commit().await?;
            return Ok(delta);
        };
        if common != *last {
            delta.revert_to = Some(common);
        }
        if cursor.number > common.number {
            let to = cursor.number.min(common.number.saturating_add(max_blocks.max(1)));
            delta.blocks = feed_blocks(&mut tx, chain, common.number + 1, to).await?;
        }
        tx.commit().await?;
        Ok(delta)
    }
}

async fn feed_blocks(
    tx: &mut Transaction<'_, Postgres>,
    chain: &str,
    from: u64,
    to: u64,
) -> Result<Vec<NormalizedBlock>> {
    let (from, to) = (to_i64(from, "block number")?, to_i64(to, "block number")?);
    let rows = sqlx::query(
        "SELECT number, hash, parent_hash, parent_number, timestamp, height FROM blocks \
         WHERE chain = $1 AND number BETWEEN $2 AND $3 ORDER BY number",
    )
    .bind(chain)
    .bind(from)
    .bind(to)
    .fetch_all(&mut **tx)
    .await?;
    let mut blocks = Vec::with_capacity(rows.len());
    for row in &rows {
        let ptr = ptr_from(row.try_get("number")?, row.try_get("hash")?)?;
        let parent_number: Option<i64> = row.try_get("parent_number")?;
        // EVM rows older than the parent_number column have their parent right below.
        let parent = match parent_number.or_else(|| i64::try_from(ptr.number).ok()?.checked_sub(1)) {
            Some(number) if ptr.number > 0 => Some(ptr_from(number, row.try_get("parent_hash")?)?),
            _ => None,
        };
        let timestamp: i64 = row.try_get("timestamp")?;
        let height: Option<i64> = row.try_get("height")?;
        let mut block = NormalizedBlock::logs_only(ptr, Vec::new());
        block.parent = parent;
        block.timestamp = u64::try_from(timestamp).unwrap_or_default();
        block.height = height.and_then(|h| u64::try_from(h).ok());
        blocks.push(block);
    }
    let logs = sqlx::query(
        "SELECT block_number, log_index, tx_hash, tx_index, address, topic0, topic1, topic2, topic3, data \
         FROM logs WHERE chain = $1 AND block_number BETWEEN $2 AND $3 ORDER BY block_number, log_index",
    )
    .bind(chain)
    .bind(from)
    .bind(to)
    .fetch_all(&mut **tx)
    .await?;
    // Both are ordered by block number: walk them together.
    let mut at = 0;
    for row in &logs {
        let number: i64 = row.try_get("block_number")?;
        while blocks.get(at).is_some_and(|b| i64::try_from(b.ptr.number).is_ok_and(|n| n < number)) {
            at += 1;
        }
        let Some(block) = blocks.get_mut(at).filter(|b| i64::try_from(b.ptr.number).ok() == Some(number))
        else {
            return Err(StoreError::Corrupt(format!("log of block {number}, which is not stored")));
        };
        let mut topics = Vec::with_capacity(4);
        for column in ["topic0", "topic1", "topic2", "topic3"] {
            let Some(topic) = row.try_get::<Option<Vec<u8>>, _>(column)? else { break };
            topics.push(
                B256::try_from(topic.as_slice())
                    .map_err(|_| StoreError::Corrupt(format!("topic of {} bytes", topic.len())))?,
            );
        }
        let index = |column: &str| -> Result<u32> {
            let value: i32 = row.try_get(column)?;
            u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative {column}")))
        };
        block.logs.push(Log {
            tx_hash: Bytes::from(row.try_get::<Vec<u8>, _>("tx_hash")?),
            tx_index: index("tx_index")?,
            log_index: index("log_index")?,
            address: Bytes::from(row.try_get::<Vec<u8>, _>("address")?),
            topics,
            data: Bytes::from(row.try_get::<Vec<u8>, _>("data")?),
        });
    }
    Ok(blocks)
}

/// A `LISTEN` on [`FEED_CHANNEL`], on a connection of its own.
#[derive(Debug)]
pub struct FeedListener(sqlx::postgres::PgListener);

impl FeedListener {
    /// The chain of the next committed batch or rollback. After a lost connection it reconnects by itself;
    /// notifications sent meanwhile are lost (callers also poll).
    pub async fn next_chain(&mut self) -> Result<String> {
        let notification = self.0.recv().await?;
        Ok(notification.payload().to_owned())
    }
}

impl Store {
    /// Starts listening for committed batches and rollbacks of every chain.
    pub async fn feed_listener(&self) -> Result<FeedListener> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(FEED_CHANNEL).await?;
        Ok(FeedListener(listener))
    }
}
