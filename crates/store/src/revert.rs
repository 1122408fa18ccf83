//! Rolling a chain back to a common ancestor after a reorg: one transaction deletes every row above it and moves
//! the cursor there, so a crash leaves either the old branch with its cursor or the ancestor with its cursor.

use chainmux_core::{B256, BlockPtr};

use crate::{Result, Store, StoreError};

fn to_i64(value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange("block number"))
}

impl Store {
    /// Hash of the stored block of `chain` at `number`, if that block is indexed.
    pub async fn block_hash(&self, chain: &str, number: u64) -> Result<Option<B256>> {
        let hash: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM blocks WHERE chain = $1 AND number = $2")
                .bind(chain)
                .bind(to_i64(number)?)
                .fetch_optional(&self.pool)
                .await?;
        hash.map(|h| {
            B256::try_from(h.as_slice())
                .map_err(|_| StoreError::Corrupt(format!("block hash of {} bytes", h.len())))
        })
        .transpose()
    }

    /// The stored blocks of `chain` at `numbers` (those that are indexed, in ascending order): one round trip to
    /// tell which of many block pointers are still canonical.
    pub async fn blocks_at(&self, chain: &str, numbers: &[u64]) -> Result<Vec<BlockPtr>> {
        let numbers = numbers.iter().map(|&n| to_i64(n)).collect::<Result<Vec<i64>>>()?;
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT number, hash FROM blocks WHERE chain = $1 AND number = ANY($2) ORDER BY number",
        )
        .bind(chain)
        .bind(&numbers)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|(number, hash)| crate::read::ptr_from(number, hash)).collect()
    }

    /// The highest stored block of `chain` at or below `number`: where a walk back from `number` lands when the
    /// chain skips numbers (Solana slots without a block).
    pub async fn block_at_or_below(&self, chain: &str, number: u64) -> Result<Option<BlockPtr>> {
        // Every stored number fits an i64, so a larger bound means "any".
        let number = i64::try_from(number).unwrap_or(i64::MAX);
        let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT number, hash FROM blocks WHERE chain = $1 AND number <= $2 ORDER BY number DESC LIMIT 1",
        )
        .bind(chain)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(number, hash)| crate::read::ptr_from(number, hash)).transpose()
    }

    /// Deletes every row of `chain` above `ancestor` and moves the cursor from `expected` to `ancestor`, in one
    /// transaction. `ancestor` must be a stored block at or below the cursor. Returns how many blocks were removed.
    pub async fn revert_to(&self, chain: &str, expected: BlockPtr, ancestor: BlockPtr) -> Result<u64> {
        if ancestor.number > expected.number {
            return Err(StoreError::Discontinuous {
                chain: chain.to_owned(),
                reason: format!("ancestor {} is above the cursor {}", ancestor.number, expected.number),
            });
        }
        let mut tx = self.pool.begin().await?;
        if let Some(epoch) = self.fence {
            crate::leader::check_fence(&mut tx, chain, epoch, crate::leader::TermWrite::Revert).await?;
        }
        // Cursor first, conditional on its expected position: the same fence as batch writes.
        let moved = sqlx::query(
            "UPDATE cursors SET block_number = $2, block_hash = $3, updated_at = now() \
             WHERE chain = $1 AND block_number = $4 AND block_hash = $5",
        )
        .bind(chain)
        .bind(to_i64(ancestor.number)?)
        .bind(ancestor.hash.as_slice())
        .bind(to_i64(expected.number)?)
        .bind(expected.hash.as_slice())
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            let actual = self.cursor(chain).await?;
            return Err(StoreError::CursorMoved {
                chain: chain.to_owned(),
                expected: Some(expected),
                actual,
            });
        }
        let stored: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM blocks WHERE chain = $1 AND number = $2")
                .bind(chain)
                .bind(to_i64(ancestor.number)?)
                .fetch_optional(&mut *tx)
                .await?;
        if stored.as_deref() != Some(ancestor.hash.as_slice()) {
            return Err(StoreError::Discontinuous {
                chain: chain.to_owned(),
                reason: format!("block {} {} is not the stored one", ancestor.number, ancestor.hash),
            });
        }
        let above = to_i64(ancestor.number)?;
        // Children before parents is not required (no foreign keys), but every table goes, in one transaction.
        for delete in [
            "DELETE FROM events WHERE chain = $1 AND block_number > $2",
            // Factory children created on the abandoned branch; configured addresses have no block.
            "DELETE FROM contracts WHERE chain = $1 AND block_number > $2",
            "DELETE FROM instructions WHERE chain = $1 AND block_number > $2",
            "DELETE FROM transfers WHERE chain = $1 AND block_number > $2",
            "DELETE FROM logs WHERE chain = $1 AND block_number > $2",
            "DELETE FROM transactions WHERE chain = $1 AND block_number > $2",
        ] {
            sqlx::query(delete).bind(chain).bind(above).execute(&mut *tx).await?;
        }
        let removed = sqlx::query("DELETE FROM blocks WHERE chain = $1 AND number > $2")
            .bind(chain)
            .bind(above)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        crate::feed::notify(&mut tx, chain).await?;
        tx.commit().await?;
        Ok(removed)
    }
}
