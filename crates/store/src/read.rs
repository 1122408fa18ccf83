//! Read queries behind the REST API. Filters are bound parameters; pages are keyset-paginated on the primary key
//! order, so a page boundary never skips or repeats a row while new blocks arrive.

use chainmux_core::{B256, BlockPtr, Heads};
use sqlx::{FromRow, Postgres, QueryBuilder};

use crate::{IndexerErrorState, Result, Store, StoreError};

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
    /// The indexer's current error, as the replica indexing the chain last recorded it.
    pub indexer_error: Option<IndexerErrorState>,
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
    indexer_error: Option<String>,
    indexer_error_at: Option<i64>,
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
        let indexer_error = self
            .indexer_error
            .map(|message| IndexerErrorState { message, since: self.indexer_error_at.unwrap_or_default() });
        Ok(ChainState {
            name: self.name,
            kind: self.kind,
            chain_id: self.chain_id,
            cursor,
            heads,
            indexer_error,
        })
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct BlockRow {
    pub number: i64,
    pub hash: Vec<u8>,
    pub parent_hash: Vec<u8>,
    /// The parent's number (slot); `None` for a chain's first block and EVM rows written before it was stored.
    pub parent_number: Option<i64>,
    /// Solana's block height; `None` on EVM.
    pub height: Option<i64>,
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
    pub fee: Option<String>,
    /// The chain's reason of failure, as JSON text (Solana).
    pub error: Option<String>,
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
    pub from_owner: Option<Vec<u8>>,
    pub to_owner: Option<Vec<u8>>,
    pub decimals: Option<i16>,
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

#[derive(Debug, Clone, FromRow)]
pub struct InstructionRow {
    pub block_number: i64,
    pub block_hash: Vec<u8>,
    pub tx_index: i32,
    pub position: i32,
    pub tx_hash: Vec<u8>,
    pub outer_index: i32,
    pub inner_index: Option<i32>,
    pub stack_height: i32,
    pub program: Vec<u8>,
    pub accounts: Vec<Vec<u8>>,
    pub data: Vec<u8>,
    pub logs: Vec<String>,
    /// Whether the instruction's transaction succeeded (`None` when unknown). Instructions of failed
    /// transactions are kept — they say what was attempted — but their effects were rolled back.
    pub tx_success: Option<bool>,
}

impl InstructionRow {
    pub fn key(&self) -> InstructionKey {
        InstructionKey { block_number: self.block_number, tx_index: self.tx_index, position: self.position }
    }
}

/// Position of an instruction in the keyset order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstructionKey {
    pub block_number: i64,
    pub tx_index: i32,
    pub position: i32,
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
    /// Matches either side of the transfer: the address itself, or the wallet owning it (SPL token accounts).
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

#[derive(Debug, Clone, Default)]
pub struct InstructionFilter {
    pub program: Option<Vec<u8>>,
    pub tx_hash: Option<Vec<u8>>,
    pub from_block: Option<i64>,
    pub to_block: Option<i64>,
    pub after: Option<InstructionKey>,
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
     c.finalized_number, k.block_number AS cursor_number, k.block_hash AS cursor_hash, c.indexer_error, \
     extract(epoch FROM c.indexer_error_at)::bigint AS indexer_error_at \
     FROM chains c LEFT JOIN cursors k ON k.chain = c.name"
    };
}

macro_rules! transaction_columns {
    () => {
        "block_number, block_hash, tx_index, hash, from_address, to_address, \
     value::text AS value, nonce::text AS nonce, gas_limit::text AS gas_limit, gas_price::text AS gas_price, \
     gas_used::text AS gas_used, status, contract_address, input, fee::text AS fee, error"
    };
}

macro_rules! block_columns {
    () => {
        "number, hash, parent_hash, parent_number, height, timestamp, tx_count, log_count"
    };
}

macro_rules! transfer_columns {
    () => {
        "block_number, block_hash, log_index, batch_index, standard, tx_hash, token, from_address, to_address, \
     amount::text AS amount, token_id::text AS token_id, from_owner, to_owner, decimals"
    };
}

/// The columns that can match [`TransferFilter::address`], each the second column of an index that continues with
/// the keyset order (owners: partial indexes of the rows that have one).
const TRANSFER_ADDRESS_COLUMNS: [&str; 4] = ["from_address", "to_address", "from_owner", "to_owner"];

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
        Ok(sqlx::query_as::<_, BlockRow>(concat!(
            "SELECT ",
            block_columns!(),
            " FROM blocks WHERE chain = $1 AND number = $2"
        ))
        .bind(chain)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn block_by_hash(&self, chain: &str, hash: &[u8]) -> Result<Option<BlockRow>> {
        Ok(sqlx::query_as::<_, BlockRow>(concat!(
            "SELECT ",
            block_columns!(),
            " FROM blocks WHERE chain = $1 AND hash = $2"
        ))
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

    /// Transfers in keyset order. With an address, one index range per column it can match, each read in keyset
    /// order up to the page size, merged by a `UNION` (which also drops a row matching on two sides): a page costs
    /// four short index scans however many transfers the address has, where an `OR` would fetch and sort them all.
    pub async fn transfers(&self, chain: &str, filter: &TransferFilter) -> Result<Page<TransferRow>> {
        let mut query = QueryBuilder::<Postgres>::new("");
        match &filter.address {
            None => push_transfer_branch(&mut query, chain, None, filter),
            Some(address) => {
                query.push("SELECT * FROM (");
                for (i, column) in TRANSFER_ADDRESS_COLUMNS.into_iter().enumerate() {
                    if i > 0 {
                        query.push(" UNION ");
                    }
                    query.push("(");
                    push_transfer_branch(&mut query, chain, Some((column, address)), filter);
                    query.push(")");
                }
                query.push(") matched ORDER BY block_number, log_index, batch_index, standard LIMIT ");
                query.push_bind(i64::from(filter.limit) + 1);
            }
        }
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
        push_block_range(&mut query, "block_number", filter.from_block, filter.to_block);
        if let Some(after) = filter.after {
            query.push(" AND (block_number, log_index) > (").push_bind(after.block_number);
            query.push(", ").push_bind(after.log_index).push(")");
        }
        query.push(" ORDER BY block_number, log_index LIMIT ");
        query.push_bind(i64::from(filter.limit) + 1);
        let rows = query.build_query_as::<LogRow>().fetch_all(&self.pool).await?;
        Ok(Page::from_overfetch(rows, filter.limit))
    }

    /// Instructions in keyset order (block, transaction, position).
    pub async fn instructions(
        &self,
        chain: &str,
        filter: &InstructionFilter,
    ) -> Result<Page<InstructionRow>> {
        // The transaction's outcome comes along by primary key (one index probe per returned row).
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT i.block_number, i.block_hash, i.tx_index, i.position, i.tx_hash, i.outer_index, i.inner_index, \
             i.stack_height, i.program, i.accounts, i.data, i.logs, t.status AS tx_success FROM instructions i \
             LEFT JOIN transactions t \
             ON t.chain = i.chain AND t.block_number = i.block_number AND t.tx_index = i.tx_index \
             WHERE i.chain = ",
        );
        query.push_bind(chain);
        if let Some(program) = &filter.program {
            query.push(" AND i.program = ").push_bind(program.clone());
        }
        if let Some(tx_hash) = &filter.tx_hash {
            query.push(" AND i.tx_hash = ").push_bind(tx_hash.clone());
        }
        push_block_range(&mut query, "i.block_number", filter.from_block, filter.to_block);
        if let Some(after) = filter.after {
            query.push(" AND (i.block_number, i.tx_index, i.position) > (").push_bind(after.block_number);
            query.push(", ").push_bind(after.tx_index);
            query.push(", ").push_bind(after.position).push(")");
        }
        query.push(" ORDER BY i.block_number, i.tx_index, i.position LIMIT ");
        query.push_bind(i64::from(filter.limit) + 1);
        let rows = query.build_query_as::<InstructionRow>().fetch_all(&self.pool).await?;
        Ok(Page::from_overfetch(rows, filter.limit))
    }
}

/// One `SELECT` of transfers in keyset order with the filter's conditions and limit; with `address`, restricted to
/// rows whose `column` equals it.
fn push_transfer_branch(
    query: &mut QueryBuilder<Postgres>,
    chain: &str,
    address: Option<(&'static str, &Vec<u8>)>,
    filter: &TransferFilter,
) {
    query.push(concat!("SELECT ", transfer_columns!(), " FROM transfers WHERE chain = "));
    query.push_bind(chain.to_owned());
    if let Some((column, address)) = address {
        query.push(format_args!(" AND {column} = ")).push_bind(address.clone());
    }
    if let Some(token) = &filter.token {
        query.push(" AND token = ").push_bind(token.clone());
    }
    push_block_range(query, "block_number", filter.from_block, filter.to_block);
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
}

/// `column` (a block number column, maybe qualified) within `from..=to`, where given.
fn push_block_range(
    query: &mut QueryBuilder<Postgres>,
    column: &'static str,
    from: Option<i64>,
    to: Option<i64>,
) {
    if let Some(from) = from {
        query.push(format_args!(" AND {column} >= ")).push_bind(from);
    }
    if let Some(to) = to {
        query.push(format_args!(" AND {column} <= ")).push_bind(to);
    }
}
