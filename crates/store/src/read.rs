//! Read queries behind the REST API. Filters are bound parameters; pages are keyset-paginated on the primary key
//! order, so a page boundary never skips or repeats a row while new blocks arrive.

use chainmux_core::{B256, BlockPtr, Heads};
use sqlx::{FromRow, Postgres, QueryBuilder};

use crate::{Result, Store, StoreError};

pub(crate) fn ptr_from(number: i64, hash: Vec<u8>) -> Result<BlockPtr> {
    let number =
        u64::try_from(number).map_err(|_| StoreError::Corrupt(format!("negative block number {number}")))?;
    let hash = B256::try_from(hash.as_slice())
        .map_err(|_| StoreError::Corrupt(format!("block hash of {} bytes", hash.len())))?;
    Ok(BlockPtr::new(number, hash))
}

/// What the store knows about a chain: its identity, how far it is indexed and the last seen heads.
#[derive(Debug, Clone)]
pub struct ChainState {
    pub name: String,
    pub kind: String,
    pub chain_id: i64,
    pub cursor: Option<BlockPtr>,
    pub heads: Option<Heads>,
}

#[derive(FromRow)]
struct ChainStateRow {
    name: String,
    kind: String,
    chain_id: i64,
    head_number: Option<i64>,
    safe_number: Option<i64>,
    finalized_number: Option<i64>,
    cursor_number: Option<i64>,
    cursor_hash: Option<Vec<u8>>,
}

impl ChainStateRow {
    fn into_state(self) -> Result<ChainState> {
        let cursor = match (self.cursor_number, self.cursor_hash) {
            (Some(number), Some(hash)) => Some(ptr_from(number, hash)?),
            _ => None,
        };
        let as_u64 = |n: i64| u64::try_from(n).ok();
        let heads = self.head_number.and_then(as_u64).map(|latest| Heads {
            latest,
            safe: self.safe_number.and_then(as_u64),
            finalized: self.finalized_number.and_then(as_u64),
        });
        Ok(ChainState { name: self.name, kind: self.kind, chain_id: self.chain_id, cursor, heads })
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct BlockRow {
    pub number: i64,
    pub hash: Vec<u8>,
    pub parent_hash: Vec<u8>,
    pub timestamp: i64,
    pub tx_count: i32,
    pub log_count: i32,
}

#[derive(Debug, Clone, FromRow)]
pub struct TransactionRow {
    pub block_number: i64,
    pub block_hash: Vec<u8>,
    pub tx_index: i32,
    pub hash: Vec<u8>,
    pub from_address: Vec<u8>,
    pub to_address: Option<Vec<u8>>,
    pub value: String,
    pub nonce: String,
    pub gas_limit: String,
    pub gas_price: Option<String>,
    pub gas_used: Option<String>,
    pub status: Option<bool>,
    pub contract_address: Option<Vec<u8>>,
    pub input: Vec<u8>,
}

#[derive(Debug, Clone, FromRow)]
pub struct TransferRow {
    pub block_number: i64,
    pub block_hash: Vec<u8>,
    pub log_index: i32,
    pub batch_index: i32,
    pub standard: String,
    pub tx_hash: Vec<u8>,
    pub token: Option<Vec<u8>>,
    pub from_address: Vec<u8>,
    pub to_address: Vec<u8>,
    pub amount: String,
    pub token_id: Option<String>,
}

impl TransferRow {
    pub fn key(&self) -> TransferKey {
        TransferKey {
            block_number: self.block_number,
            log_index: self.log_index,
            batch_index: self.batch_index,
            standard: self.standard.clone(),
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct LogRow {
    pub block_number: i64,
    pub block_hash: Vec<u8>,
    pub log_index: i32,
    pub tx_hash: Vec<u8>,
    pub tx_index: i32,
    pub address: Vec<u8>,
    pub topic0: Option<Vec<u8>>,
    pub topic1: Option<Vec<u8>>,
    pub topic2: Option<Vec<u8>>,
    pub topic3: Option<Vec<u8>>,
    pub data: Vec<u8>,
}

impl LogRow {
    pub fn key(&self) -> LogKey {
        LogKey { block_number: self.block_number, log_index: self.log_index }
    }
}

/// Position of a transfer in the keyset order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferKey {
    pub block_number: i64,
    pub log_index: i32,
    pub batch_index: i32,
    pub standard: String,
}

/// Position of a log in the keyset order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogKey {
    pub block_number: i64,
    pub log_index: i32,
}

#[derive(Debug, Clone, Default)]
pub struct TransferFilter {
    /// Matches either side of the transfer.
    pub address: Option<Vec<u8>>,
    pub token: Option<Vec<u8>>,
    pub from_block: Option<i64>,
    pub to_block: Option<i64>,
    /// Start after this row (exclusive).
    pub after: Option<TransferKey>,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub address: Option<Vec<u8>>,
    pub topics: [Option<Vec<u8>>; 4],
    pub from_block: Option<i64>,
    pub to_block: Option<i64>,
    pub after: Option<LogKey>,
    pub limit: u32,
}

/// One page of rows; `has_more` says whether a next page exists.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    fn from_overfetch(mut rows: Vec<T>, limit: u32) -> Self {
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        Self { items: rows, has_more }
    }
}

// Column lists are macros so queries stay `&'static str` (sqlx only takes audited strings).
macro_rules! chain_state_select {
    () => {
        "SELECT c.name, c.kind, c.chain_id, c.head_number, c.safe_number, \
     c.finalized_number, k.block_number AS cursor_number, k.block_hash AS cursor_hash \
     FROM chains c LEFT JOIN cursors k ON k.chain = c.name"
    };
}

macro_rules! transaction_columns {
    () => {
        "block_number, block_hash, tx_index, hash, from_address, to_address, \
     value::text AS value, nonce::text AS nonce, gas_limit::text AS gas_limit, gas_price::text AS gas_price, \
     gas_used::text AS gas_used, status, contract_address, input"
    };
}

impl Store {
    pub async fn chain_states(&self) -> Result<Vec<ChainState>> {
        let rows = sqlx::query_as::<_, ChainStateRow>(concat!(chain_state_select!(), " ORDER BY c.name"))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(ChainStateRow::into_state).collect()
    }

    pub async fn chain_state(&self, chain: &str) -> Result<Option<ChainState>> {
        let row = sqlx::query_as::<_, ChainStateRow>(concat!(chain_state_select!(), " WHERE c.name = $1"))
            .bind(chain)
            .fetch_optional(&self.pool)
            .await?;
        row.map(ChainStateRow::into_state).transpose()
    }

    pub async fn block_by_number(&self, chain: &str, number: i64) -> Result<Option<BlockRow>> {
        Ok(sqlx::query_as::<_, BlockRow>(
            "SELECT number, hash, parent_hash, timestamp, tx_count, log_count FROM blocks \
             WHERE chain = $1 AND number = $2",
        )
        .bind(chain)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn block_by_hash(&self, chain: &str, hash: &[u8]) -> Result<Option<BlockRow>> {
        Ok(sqlx::query_as::<_, BlockRow>(
            "SELECT number, hash, parent_hash, timestamp, tx_count, log_count FROM blocks \
             WHERE chain = $1 AND hash = $2",
        )
        .bind(chain)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn transaction(&self, chain: &str, hash: &[u8]) -> Result<Option<TransactionRow>> {
        Ok(sqlx::query_as::<_, TransactionRow>(concat!(
            "SELECT ",
            transaction_columns!(),
            " FROM transactions WHERE chain = $1 AND hash = $2 ORDER BY block_number DESC LIMIT 1"
        ))
        .bind(chain)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn transfers(&self, chain: &str, filter: &TransferFilter) -> Result<Page<TransferRow>> {
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT block_number, block_hash, log_index, batch_index, standard, tx_hash, token, from_address, \
             to_address, amount::text AS amount, token_id::text AS token_id FROM transfers WHERE chain = ",
        );
        query.push_bind(chain);
        if let Some(address) = &filter.address {
            query.push(" AND (from_address = ").push_bind(address.clone());
            query.push(" OR to_address = ").push_bind(address.clone()).push(")");
        }
        if let Some(token) = &filter.token {
            query.push(" AND token = ").push_bind(token.clone());
        }
        push_block_range(&mut query, filter.from_block, filter.to_block);
        if let Some(after) = &filter.after {
            query.push(" AND (block_number, log_index, batch_index, standard) > (");
            let mut tuple = query.separated(", ");
            tuple.push_bind(after.block_number);
            tuple.push_bind(after.log_index);
            tuple.push_bind(after.batch_index);
            tuple.push_bind(after.standard.clone());
            query.push(")");
        }
        query.push(" ORDER BY block_number, log_index, batch_index, standard LIMIT ");
        query.push_bind(i64::from(filter.limit) + 1);
        let rows = query.build_query_as::<TransferRow>().fetch_all(&self.pool).await?;
        Ok(Page::from_overfetch(rows, filter.limit))
    }

    pub async fn logs(&self, chain: &str, filter: &LogFilter) -> Result<Page<LogRow>> {
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT block_number, block_hash, log_index, tx_hash, tx_index, address, topic0, topic1, topic2, \
             topic3, data FROM logs WHERE chain = ",
        );
        query.push_bind(chain);
        if let Some(address) = &filter.address {
            query.push(" AND address = ").push_bind(address.clone());
        }
        for (i, topic) in filter.topics.iter().enumerate() {
            if let Some(topic) = topic {
                query.push(format_args!(" AND topic{i} = ")).push_bind(topic.clone());
            }
        }
        push_block_range(&mut query, filter.from_block, filter.to_block);
        if let Some(after) = filter.after {
            query.push(" AND (block_number, log_index) > (").push_bind(after.block_number);
            query.push(", ").push_bind(after.log_index).push(")");
        }
        query.push(" ORDER BY block_number, log_index LIMIT ");
        query.push_bind(i64::from(filter.limit) + 1);
        let rows = query.build_query_as::<LogRow>().fetch_all(&self.pool).await?;
        Ok(Page::from_overfetch(rows, filter.limit))
    }
}

fn push_block_range(query: &mut QueryBuilder<Postgres>, from: Option<i64>, to: Option<i64>) {
    if let Some(from) = from {
        query.push(" AND block_number >= ").push_bind(from);
    }
    if let Some(to) = to {
        query.push(" AND block_number <= ").push_bind(to);
    }
}
