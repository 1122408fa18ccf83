//! Batch writes: all rows of a batch and the cursor move commit together, or not at all.

use std::time::Instant;

use chainmux_core::{BlockPtr, NormalizedBlock};
use sqlx::{Postgres, Transaction};

use crate::{Result, Store, StoreError};

/// Rows inserted by one batch (rows already present are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub blocks: u64,
    pub transactions: u64,
    pub logs: u64,
    pub transfers: u64,
}

impl WriteStats {
    pub fn rows(&self) -> u64 {
        self.blocks + self.transactions + self.logs + self.transfers
    }
}

fn to_i64(value: u64, what: &'static str) -> Result<i64> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange(what))
}

impl Store {
    /// Writes `blocks` and moves the cursor of `chain` from `expected` to the last block, in one transaction.
    ///
    /// `blocks` must continue `expected` (the first block's parent is `expected`, each next block's parent the one
    /// before). The cursor update is conditional on the cursor still being `expected`; if another writer moved it,
    /// nothing is written and [`StoreError::CursorMoved`] is returned.
    pub async fn write_batch(
        &self,
        chain: &str,
        expected: Option<BlockPtr>,
        blocks: &[NormalizedBlock],
    ) -> Result<WriteStats> {
        let Some(last) = blocks.last() else { return Ok(WriteStats::default()) };
        check_continuity(chain, expected, blocks)?;
        let started = Instant::now();

        let mut tx = self.pool.begin().await?;
        // The cursor row goes first: its row lock serialises concurrent writers of one chain.
        move_cursor(&mut tx, chain, expected, last.ptr).await?;
        let stats = WriteStats {
            blocks: insert_blocks(&mut tx, chain, blocks).await?,
            transactions: insert_transactions(&mut tx, chain, blocks).await?,
            logs: insert_logs(&mut tx, chain, blocks).await?,
            transfers: insert_transfers(&mut tx, chain, blocks).await?,
        };
        tx.commit().await?;

        metrics::histogram!("chainmux_store_write_seconds", "chain" => chain.to_owned())
            .record(started.elapsed().as_secs_f64());
        for (table, rows) in [
            ("blocks", stats.blocks),
            ("transactions", stats.transactions),
            ("logs", stats.logs),
            ("transfers", stats.transfers),
        ] {
            metrics::counter!("chainmux_store_rows_written_total", "chain" => chain.to_owned(), "table" => table)
                .increment(rows);
        }
        Ok(stats)
    }
}

fn check_continuity(chain: &str, expected: Option<BlockPtr>, blocks: &[NormalizedBlock]) -> Result<()> {
    let discontinuous = |reason: String| StoreError::Discontinuous { chain: chain.to_owned(), reason };
    let mut previous = expected;
    for block in blocks {
        if let Some(prev) = previous
            && block.parent != Some(prev)
        {
            return Err(discontinuous(format!(
                "block {} has parent {:?}, expected {} {}",
                block.ptr.number, block.parent, prev.number, prev.hash
            )));
        }
        previous = Some(block.ptr);
    }
    Ok(())
}

async fn move_cursor(
    tx: &mut Transaction<'_, Postgres>,
    chain: &str,
    expected: Option<BlockPtr>,
    to: BlockPtr,
) -> Result<()> {
    let number = to_i64(to.number, "block number")?;
    let moved = match expected {
        None => {
            sqlx::query(
                "INSERT INTO cursors (chain, block_number, block_hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (chain) DO NOTHING",
            )
            .bind(chain)
            .bind(number)
            .bind(to.hash.as_slice())
            .execute(&mut **tx)
            .await?
        }
        Some(from) => {
            sqlx::query(
                "UPDATE cursors SET block_number = $2, block_hash = $3, updated_at = now() \
                 WHERE chain = $1 AND block_number = $4 AND block_hash = $5",
            )
            .bind(chain)
            .bind(number)
            .bind(to.hash.as_slice())
            .bind(to_i64(from.number, "block number")?)
            .bind(from.hash.as_slice())
            .execute(&mut **tx)
            .await?
        }
    };
    if moved.rows_affected() == 1 {
        return Ok(());
    }
    let actual =
        sqlx::query_as::<_, (i64, Vec<u8>)>("SELECT block_number, block_hash FROM cursors WHERE chain = $1")
            .bind(chain)
            .fetch_optional(&mut **tx)
            .await?
            .map(|(number, hash)| crate::read::ptr_from(number, hash))
            .transpose()?;
    Err(StoreError::CursorMoved { chain: chain.to_owned(), expected, actual })
}

async fn insert_blocks(
    tx: &mut Transaction<'_, Postgres>,
    chain: &str,
    blocks: &[NormalizedBlock],
) -> Result<u64> {
    let mut number = Vec::with_capacity(blocks.len());
    let mut hash = Vec::with_capacity(blocks.len());
    let mut parent_hash = Vec::with_capacity(blocks.len());
    let mut timestamp = Vec::with_capacity(blocks.len());
    let mut tx_count = Vec::with_capacity(blocks.len());
    let mut log_count = Vec::with_capacity(blocks.len());
    for block in blocks {
        number.push(to_i64(block.ptr.number, "block number")?);
        hash.push(block.ptr.hash.to_vec());
        parent_hash.push(block.parent_hash().to_vec());
        timestamp.push(to_i64(block.timestamp, "timestamp")?);
        tx_count
            .push(i32::try_from(block.transactions.len()).map_err(|_| StoreError::OutOfRange("tx_count"))?);
        log_count.push(i32::try_from(block.logs.len()).map_err(|_| StoreError::OutOfRange("log_count"))?);
    }
    let done = sqlx::query(
        "INSERT INTO blocks (chain, number, hash, parent_hash, timestamp, tx_count, log_count) \
         SELECT $1, * FROM UNNEST($2::bigint[], $3::bytea[], $4::bytea[], $5::bigint[], $6::int[], $7::int[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(chain)
    .bind(number)
    .bind(hash)
    .bind(parent_hash)
    .bind(timestamp)
    .bind(tx_count)
    .bind(log_count)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

async fn insert_transactions(
    tx: &mut Transaction<'_, Postgres>,
    chain: &str,
    blocks: &[NormalizedBlock],
) -> Result<u64> {
    let count: usize = blocks.iter().map(|b| b.transactions.len()).sum();
    if count == 0 {
        return Ok(0);
    }
    let mut block_number = Vec::with_capacity(count);
    let mut block_hash = Vec::with_capacity(count);
    let mut tx_index = Vec::with_capacity(count);
    let mut hash = Vec::with_capacity(count);
    let mut from = Vec::with_capacity(count);
    let mut to = Vec::with_capacity(count);
    let mut value = Vec::with_capacity(count);
    let mut nonce = Vec::with_capacity(count);
    let mut gas_limit = Vec::with_capacity(count);
    let mut gas_price = Vec::with_capacity(count);
    let mut gas_used = Vec::with_capacity(count);
    let mut status = Vec::with_capacity(count);
    let mut contract_address = Vec::with_capacity(count);
    let mut input = Vec::with_capacity(count);
    for block in blocks {
        let number = to_i64(block.ptr.number, "block number")?;
        for t in &block.transactions {
            block_number.push(number);
            block_hash.push(block.ptr.hash.to_vec());
            tx_index.push(i32::try_from(t.index).map_err(|_| StoreError::OutOfRange("tx_index"))?);
            hash.push(t.hash.to_vec());
            from.push(t.from.to_vec());
            to.push(t.to.as_ref().map(|a| a.to_vec()));
            value.push(t.value.to_string());
            nonce.push(t.nonce.to_string());
            gas_limit.push(t.gas_limit.to_string());
            gas_price.push(t.gas_price.map(|p| p.to_string()));
            gas_used.push(t.gas_used.map(|g| g.to_string()));
            status.push(t.status);
            contract_address.push(t.contract_address.as_ref().map(|a| a.to_vec()));
            input.push(t.input.to_vec());
        }
    }
    let done = sqlx::query(
        "INSERT INTO transactions (chain, block_number, block_hash, tx_index, hash, from_address, to_address, value, \
         nonce, gas_limit, gas_price, gas_used, status, contract_address, input) \
         SELECT $1, * FROM UNNEST($2::bigint[], $3::bytea[], $4::int[], $5::bytea[], $6::bytea[], $7::bytea[], \
         $8::text[]::numeric[], $9::text[]::numeric[], $10::text[]::numeric[], $11::text[]::numeric[], \
         $12::text[]::numeric[], $13::bool[], $14::bytea[], $15::bytea[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(chain)
    .bind(block_number)
    .bind(block_hash)
    .bind(tx_index)
    .bind(hash)
    .bind(from)
    .bind(to)
    .bind(value)
    .bind(nonce)
    .bind(gas_limit)
    .bind(gas_price)
    .bind(gas_used)
    .bind(status)
    .bind(contract_address)
    .bind(input)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

async fn insert_logs(
    tx: &mut Transaction<'_, Postgres>,
    chain: &str,
    blocks: &[NormalizedBlock],
) -> Result<u64> {
    let count: usize = blocks.iter().map(|b| b.logs.len()).sum();
    if count == 0 {
        return Ok(0);
    }
    let mut block_number = Vec::with_capacity(count);
    let mut block_hash = Vec::with_capacity(count);
    let mut log_index = Vec::with_capacity(count);
    let mut tx_hash = Vec::with_capacity(count);
    let mut tx_index = Vec::with_capacity(count);
    let mut address = Vec::with_capacity(count);
    let mut topics: [Vec<Option<Vec<u8>>>; 4] = Default::default();
    let mut data = Vec::with_capacity(count);
    for block in blocks {
        let number = to_i64(block.ptr.number, "block number")?;
        for log in &block.logs {
            block_number.push(number);
            block_hash.push(block.ptr.hash.to_vec());
            log_index.push(i32::try_from(log.log_index).map_err(|_| StoreError::OutOfRange("log_index"))?);
            tx_hash.push(log.tx_hash.to_vec());
            tx_index.push(i32::try_from(log.tx_index).map_err(|_| StoreError::OutOfRange("tx_index"))?);
            address.push(log.address.to_vec());
            for (i, column) in topics.iter_mut().enumerate() {
                column.push(log.topics.get(i).map(|t| t.to_vec()));
            }
            data.push(log.data.to_vec());
        }
    }
    let [topic0, topic1, topic2, topic3] = topics;
    let done = sqlx::query(
        "INSERT INTO logs (chain, block_number, block_hash, log_index, tx_hash, tx_index, address, \
         topic0, topic1, topic2, topic3, data) \
         SELECT $1, * FROM UNNEST($2::bigint[], $3::bytea[], $4::int[], $5::bytea[], $6::int[], $7::bytea[], \
         $8::bytea[], $9::bytea[], $10::bytea[], $11::bytea[], $12::bytea[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(chain)
    .bind(block_number)
    .bind(block_hash)
    .bind(log_index)
    .bind(tx_hash)
    .bind(tx_index)
    .bind(address)
    .bind(topic0)
    .bind(topic1)
    .bind(topic2)
    .bind(topic3)
    .bind(data)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

async fn insert_transfers(
    tx: &mut Transaction<'_, Postgres>,
    chain: &str,
    blocks: &[NormalizedBlock],
) -> Result<u64> {
    let count: usize = blocks.iter().map(|b| b.transfers.len()).sum();
    if count == 0 {
        return Ok(0);
    }
    let mut block_number = Vec::with_capacity(count);
    let mut block_hash = Vec::with_capacity(count);
    let mut log_index = Vec::with_capacity(count);
    let mut batch_index = Vec::with_capacity(count);
    let mut standard = Vec::with_capacity(count);
    let mut tx_hash = Vec::with_capacity(count);
    let mut token = Vec::with_capacity(count);
    let mut from = Vec::with_capacity(count);
    let mut to = Vec::with_capacity(count);
    let mut amount = Vec::with_capacity(count);
    let mut token_id = Vec::with_capacity(count);
    for block in blocks {
        let number = to_i64(block.ptr.number, "block number")?;
        for t in &block.transfers {
            block_number.push(number);
            block_hash.push(block.ptr.hash.to_vec());
            log_index.push(i32::try_from(t.log_index).map_err(|_| StoreError::OutOfRange("log_index"))?);
            batch_index
                .push(i32::try_from(t.batch_index).map_err(|_| StoreError::OutOfRange("batch_index"))?);
            standard.push(t.standard.as_str());
            tx_hash.push(t.tx_hash.to_vec());
            token.push(t.token.as_ref().map(|a| a.to_vec()));
            from.push(t.from.to_vec());
            to.push(t.to.to_vec());
            amount.push(t.amount.to_string());
            token_id.push(t.token_id.map(|id| id.to_string()));
        }
    }
    let done = sqlx::query(
        "INSERT INTO transfers (chain, block_number, block_hash, log_index, batch_index, standard, tx_hash, token, \
         from_address, to_address, amount, token_id) \
         SELECT $1, * FROM UNNEST($2::bigint[], $3::bytea[], $4::int[], $5::int[], $6::text[], $7::bytea[], \
         $8::bytea[], $9::bytea[], $10::bytea[], $11::text[]::numeric[], $12::text[]::numeric[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(chain)
    .bind(block_number)
    .bind(block_hash)
    .bind(log_index)
    .bind(batch_index)
    .bind(standard)
    .bind(tx_hash)
    .bind(token)
    .bind(from)
    .bind(to)
    .bind(amount)
    .bind(token_id)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}
