//! The `[[chains.contracts]]` entries of a chain as the store keeps them: which entries are indexed, with what
//! definition, and how far an entry added to an indexed chain has caught up on the blocks below the indexer's.
//!
//! An entry's rows (`events`, `contracts`) are only ever written or deleted together with its `contract_sources` row
//! or with the blocks they belong to, so a crash leaves an entry either caught up to its recorded block or not at all.

use std::ops::RangeInclusive;

use chainmux_core::{B256, Bytes, Log, NormalizedBlock};
use sqlx::{Connection, FromRow};

use crate::write::{CopyRows, Table, copy_table, insert_created_contracts, to_i64};
use crate::{Result, Store, StoreError};

/// A configured `[[chains.contracts]]` entry, in the store's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractSourceDef {
    pub name: String,
    /// Hash of everything that decides the entry's rows; a different one means a different entry.
    pub fingerprint: String,
    /// The configured addresses; empty for a factory entry.
    pub addresses: Vec<Bytes>,
    pub factory: Option<FactoryDef>,
    pub start_block: u64,
    /// The selected events as JSON (`contract_sources.events`), for the query API.
    pub events_json: String,
}

/// The factory of a factory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactoryDef {
    pub address: Bytes,
    /// The event's signature.
    pub event: String,
    pub parameter: String,
}

/// How far a stored entry is indexed.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ContractSourceState {
    pub name: String,
    pub start_block: i64,
    /// The first block the indexer decodes this entry in; the blocks below it are the entry's catch-up.
    pub live_from: i64,
    /// The highest block of the catch-up whose rows are written.
    pub caught_up_to: Option<i64>,
}

impl ContractSourceState {
    /// The blocks the entry still has to catch up on: from its start (or past its progress) to just below
    /// `live_from`; `None` once it has caught up.
    pub fn pending(&self) -> Option<RangeInclusive<u64>> {
        let next = self.caught_up_to.map_or(self.start_block, |done| done + 1).max(self.start_block);
        let last = self.live_from - 1;
        (next <= last && next >= 0).then_some(next as u64..=last as u64)
    }
}

/// What [`Store::sync_contract_sources`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSync {
    /// Every configured entry, in configured order.
    pub states: Vec<ContractSourceState>,
    /// Entries stored for the first time.
    pub added: Vec<String>,
    /// Entries whose definition changed: their rows were dropped and they are indexed anew.
    pub changed: Vec<String>,
    /// Entries no longer configured, with the number of event rows dropped with them.
    pub removed: Vec<(String, u64)>,
}

impl Store {
    /// Brings the stored entries of `chain` in line with the configured `defs`, in one transaction: a new entry is
    /// stored to be decoded by the indexer from `live_from` (the block it indexes next) on and caught up below it;
    /// an entry whose fingerprint changed loses its rows and starts over as new; an entry no longer configured is
    /// dropped with its rows. Entries left as they were keep their rows and progress: nothing of theirs is rewritten.
    pub async fn sync_contract_sources(
        &self,
        chain: &str,
        defs: &[ContractSourceDef],
        live_from: u64,
    ) -> Result<SourceSync> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        if let Some(epoch) = self.fence {
            crate::leader::check_fence(&mut tx, chain, epoch, crate::leader::TermWrite::Other).await?;
        }
        let stored: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, fingerprint FROM contract_sources WHERE chain = $1 ORDER BY name FOR UPDATE",
        )
        .bind(chain)
        .fetch_all(&mut *tx)
        .await?;
        let mut sync = SourceSync::default();
        let drop_rows = async |tx: &mut sqlx::PgConnection, name: &str| -> Result<u64> {
            let events = sqlx::query("DELETE FROM events WHERE chain = $1 AND contract = $2")
                .bind(chain)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            for delete in [
                "DELETE FROM contracts WHERE chain = $1 AND name = $2",
                "DELETE FROM contract_sources WHERE chain = $1 AND name = $2",
            ] {
                sqlx::query(delete).bind(chain).bind(name).execute(&mut *tx).await?;
            }
            Ok(events)
        };
        for (name, fingerprint) in &stored {
            match defs.iter().find(|d| &d.name == name) {
                None => {
                    let events = drop_rows(&mut *tx, name).await?;
                    sync.removed.push((name.clone(), events));
                }
                Some(def) if &def.fingerprint != fingerprint => {
                    drop_rows(&mut *tx, name).await?;
                    sync.changed.push(name.clone());
                }
                Some(_) => {}
            }
        }
        let live_from = to_i64(live_from, "block number")?;
        for def in defs {
            let known = stored.iter().any(|(name, fp)| name == &def.name && fp == &def.fingerprint);
            if !known {
                if !sync.changed.contains(&def.name) {
                    sync.added.push(def.name.clone());
                }
                insert_source(&mut tx, chain, def, live_from).await?;
            }
            let state: ContractSourceState = sqlx::query_as(
                "SELECT name, start_block, live_from, caught_up_to FROM contract_sources \
                 WHERE chain = $1 AND name = $2",
            )
            .bind(chain)
            .bind(&def.name)
            .fetch_one(&mut *tx)
            .await?;
            sync.states.push(state);
        }
        tx.commit().await?;
        Ok(sync)
    }

    /// The contracts the factories of `chain` created, as `(entry name, address, creation block)`, by block.
    pub async fn factory_children(&self, chain: &str) -> Result<Vec<(String, Bytes, u64)>> {
        let rows: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT name, address, block_number FROM contracts \
             WHERE chain = $1 AND block_number IS NOT NULL ORDER BY block_number, log_index, name",
        )
        .bind(chain)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(name, address, block)| {
                let block = u64::try_from(block)
                    .map_err(|_| StoreError::Corrupt(format!("negative block number {block}")))?;
                Ok((name, Bytes::from(address), block))
            })
            .collect()
    }

    /// The lowest block of `chain` that is stored, if any.
    pub async fn first_block(&self, chain: &str) -> Result<Option<u64>> {
        let first: Option<i64> = sqlx::query_scalar("SELECT min(number) FROM blocks WHERE chain = $1")
            .bind(chain)
            .fetch_one(&self.pool)
            .await?;
        Ok(first.and_then(|n| u64::try_from(n).ok()))
    }

    /// The stored logs of `chain` in `range` whose first topic is one of `topic0s` (every log when `None`),
    /// grouped by block, ascending, as blocks that carry nothing else: the input of an entry's catch-up.
    pub async fn stored_logs(
        &self,
        chain: &str,
        range: RangeInclusive<u64>,
        topic0s: Option<&[B256]>,
    ) -> Result<Vec<NormalizedBlock>> {
        #[derive(FromRow)]
        struct LogRow {
            block_number: i64,
            block_hash: Vec<u8>,
            log_index: i32,
            tx_hash: Vec<u8>,
            tx_index: i32,
            address: Vec<u8>,
            topic0: Option<Vec<u8>>,
            topic1: Option<Vec<u8>>,
            topic2: Option<Vec<u8>>,
            topic3: Option<Vec<u8>>,
            data: Vec<u8>,
        }
        let from = to_i64(*range.start(), "block number")?;
        let to = to_i64(*range.end(), "block number")?;
        macro_rules! select_logs {
            ($filter:literal) => {
                concat!(
                    "SELECT block_number, block_hash, log_index, tx_hash, tx_index, address, topic0, topic1, topic2, ",
                    "topic3, data FROM logs WHERE chain = $1 AND block_number BETWEEN $2 AND $3",
                    $filter,
                    " ORDER BY block_number, log_index"
                )
            };
        }
        let rows: Vec<LogRow> = match topic0s {
            Some(topics) => {
                let topics: Vec<&[u8]> = topics.iter().map(|t| t.as_slice()).collect();
                sqlx::query_as(select_logs!(" AND topic0 = ANY($4)"))
                    .bind(chain)
                    .bind(from)
                    .bind(to)
                    .bind(topics)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_as(select_logs!("")).bind(chain).bind(from).bind(to).fetch_all(&self.pool).await?
            }
        };
        let mut blocks: Vec<NormalizedBlock> = Vec::new();
        for row in rows {
            let ptr = crate::read::ptr_from(row.block_number, row.block_hash)?;
            if blocks.last().is_none_or(|b| b.ptr != ptr) {
                blocks.push(NormalizedBlock::logs_only(ptr, Vec::new()));
            }
            let topics = [row.topic0, row.topic1, row.topic2, row.topic3]
                .into_iter()
                .map_while(|t| t)
                .map(|t| {
                    B256::try_from(t.as_slice())
                        .map_err(|_| StoreError::Corrupt(format!("topic of {} bytes", t.len())))
                })
                .collect::<Result<Vec<_>>>()?;
            let corrupt = |what: &str| StoreError::Corrupt(format!("negative {what}"));
            let log = Log {
                tx_hash: row.tx_hash.into(),
                tx_index: u32::try_from(row.tx_index).map_err(|_| corrupt("tx_index"))?,
                log_index: u32::try_from(row.log_index).map_err(|_| corrupt("log_index"))?,
                address: row.address.into(),
                topics,
                data: row.data.into(),
            };
            if let Some(block) = blocks.last_mut() {
                block.logs.push(log);
            }
        }
        Ok(blocks)
    }

    /// Writes the catch-up rows of entry `name` (the decoded events and created contracts of `blocks`, which
    /// carry nothing else that is written) and records that the entry has caught up to block `to`, in one
    /// transaction. `blocks` must lie in the entry's pending range and at or below `to`.
    pub async fn write_catch_up(
        &self,
        chain: &str,
        name: &str,
        blocks: &[NormalizedBlock],
        to: u64,
    ) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        if let Some(epoch) = self.fence {
            crate::leader::check_fence(&mut tx, chain, epoch, crate::leader::TermWrite::Other).await?;
        }
        let moved = sqlx::query(
            "UPDATE contract_sources SET caught_up_to = $3, updated_at = now() \
             WHERE chain = $1 AND name = $2 AND $3 < live_from AND (caught_up_to IS NULL OR caught_up_to < $3)",
        )
        .bind(chain)
        .bind(name)
        .bind(to_i64(to, "block number")?)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(StoreError::Discontinuous {
                chain: chain.to_owned(),
                reason: format!("contract entry {name}: catch-up to block {to} is outside its pending range"),
            });
        }
        let mut rows = CopyRows::default();
        let events = copy_table(&mut tx, &mut rows, Table::Events, chain, blocks).await?;
        let contracts = insert_created_contracts(&mut tx, chain, blocks).await?;
        tx.commit().await?;
        metrics::counter!("chainmux_store_rows_written_total", "chain" => chain.to_owned(), "table" => "events")
            .increment(events);
        metrics::counter!("chainmux_store_rows_written_total", "chain" => chain.to_owned(), "table" => "contracts")
            .increment(contracts);
        Ok(events + contracts)
    }
}

async fn insert_source(
    tx: &mut sqlx::PgConnection,
    chain: &str,
    def: &ContractSourceDef,
    live_from: i64,
) -> Result<()> {
    let (kind, factory) = match &def.factory {
        Some(factory) => ("factory", Some(factory)),
        None => ("addresses", None),
    };
    sqlx::query(
        "INSERT INTO contract_sources (chain, name, fingerprint, kind, factory, factory_event, factory_parameter, \
         start_block, live_from, events) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
    )
    .bind(chain)
    .bind(&def.name)
    .bind(&def.fingerprint)
    .bind(kind)
    .bind(factory.map(|f| f.address.as_ref()))
    .bind(factory.map(|f| f.event.as_str()))
    .bind(factory.map(|f| f.parameter.as_str()))
    .bind(to_i64(def.start_block, "start_block")?)
    .bind(live_from)
    .bind(&def.events_json)
    .execute(&mut *tx)
    .await?;
    if !def.addresses.is_empty() {
        let addresses: Vec<&[u8]> = def.addresses.iter().map(|a| a.as_ref()).collect();
        sqlx::query(
            "INSERT INTO contracts (chain, name, address) SELECT $1, $2, * FROM UNNEST($3::bytea[]) \
             ON CONFLICT (chain, name, address) DO NOTHING",
        )
        .bind(chain)
        .bind(&def.name)
        .bind(addresses)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
