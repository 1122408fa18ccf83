//! Read queries over the ABI-decoded contract events: the `events` rows with argument filters, the configured
//! `[[chains.contracts]]` entries with their progress, and the addresses they index (static and factory-created).
//!
//! Like the other reads, filters are bound parameters and pages are keyset-paginated, so a page boundary never
//! skips or repeats a row while new blocks arrive. `jsonb` travels as text: the workspace builds sqlx without its
//! JSON support, and the text form is what the argument filters are made of anyway.

use serde_json::Value;
use sqlx::{FromRow, Postgres, QueryBuilder};

use crate::{Page, Result, Store, StoreError};

/// One decoded event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub block_number: i64,
    pub block_hash: Vec<u8>,
    pub log_index: i32,
    /// Name of the `[[chains.contracts]]` entry that decoded it.
    pub contract: String,
    pub tx_hash: Vec<u8>,
    pub tx_index: i32,
    /// The emitting contract.
    pub address: Vec<u8>,
    pub name: String,
    pub signature: String,
    /// The decoded arguments: a JSON object keyed by parameter name.
    pub args: Value,
}

impl EventRow {
    /// The row's position in the keyset order, for the next page's cursor.
    pub fn key(&self) -> EventKey {
        EventKey {
            block_number: self.block_number,
            log_index: self.log_index,
            contract: self.contract.clone(),
        }
    }
}

#[derive(FromRow)]
struct EventRecord {
    block_number: i64,
    block_hash: Vec<u8>,
    log_index: i32,
    contract: String,
    tx_hash: Vec<u8>,
    tx_index: i32,
    address: Vec<u8>,
    name: String,
    signature: String,
    args: String,
}

impl EventRecord {
    fn into_row(self) -> Result<EventRow> {
        Ok(EventRow {
            args: parse_json(&self.args, "events.args")?,
            block_number: self.block_number,
            block_hash: self.block_hash,
            log_index: self.log_index,
            contract: self.contract,
            tx_hash: self.tx_hash,
            tx_index: self.tx_index,
            address: self.address,
            name: self.name,
            signature: self.signature,
        })
    }
}

/// Position of an event in the keyset order. Two entries may decode the same log, so the entry name breaks ties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    pub block_number: i64,
    pub log_index: i32,
    pub contract: String,
}

/// An argument filter: the row's `args[param]` equals one of `values` (JSON values in the stored rendering). More
/// than one value when the parameter has several ABI types among the selected events, each spelling the filter's
/// value in one of them.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgMatch {
    pub param: String,
    pub values: Vec<Value>,
}

/// Which events [`Store::events`] returns: every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// The entry that decoded the event.
    pub contract: Option<String>,
    /// The event's name.
    pub name: Option<String>,
    /// The event's canonical signature (`Transfer(address,address,uint256)`).
    pub signature: Option<String>,
    /// The emitting contract.
    pub address: Option<Vec<u8>>,
    /// Every one must match (AND); a filter with no values matches nothing.
    pub args: Vec<ArgMatch>,
    pub from_block: Option<i64>,
    pub to_block: Option<i64>,
    /// Start after this row (exclusive).
    pub after: Option<EventKey>,
    pub limit: u32,
}

/// A configured `[[chains.contracts]]` entry as stored, with its count of factory children.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractSourceRow {
    pub name: String,
    /// `addresses` or `factory`.
    pub kind: String,
    pub factory: Option<Vec<u8>>,
    /// The factory event's signature.
    pub factory_event: Option<String>,
    pub factory_parameter: Option<String>,
    pub start_block: i64,
    /// The first block the indexer decoded the entry in; below it the entry catches up on its own.
    pub live_from: i64,
    /// The highest block below `live_from` whose events are written; `None` before the first catch-up window.
    pub caught_up_to: Option<i64>,
    /// The selected events: `[{ "name", "signature", "anonymous", "params": [{ "name", "type", "indexed" }] }]`.
    pub events: Value,
    /// Contracts the entry's factory created so far.
    pub children: i64,
}

#[derive(FromRow)]
struct ContractSourceRecord {
    name: String,
    kind: String,
    factory: Option<Vec<u8>>,
    factory_event: Option<String>,
    factory_parameter: Option<String>,
    start_block: i64,
    live_from: i64,
    caught_up_to: Option<i64>,
    events: String,
    children: i64,
}

/// An indexed address of an entry: a configured one (no creation columns) or a factory child.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ContractRow {
    /// The entry's name.
    pub name: String,
    pub address: Vec<u8>,
    /// The factory that created it.
    pub factory: Option<Vec<u8>>,
    /// The block, transaction and log of the factory event that announced it.
    pub block_number: Option<i64>,
    pub block_hash: Option<Vec<u8>>,
    pub tx_hash: Option<Vec<u8>>,
    pub log_index: Option<i32>,
}

impl ContractRow {
    /// The row's position in the keyset order, for the next page's cursor.
    pub fn key(&self) -> ContractKey {
        ContractKey {
            name: self.name.clone(),
            block_number: self.block_number,
            address: self.address.clone(),
        }
    }
}

/// Position of an indexed address in the keyset order: entry name, creation block (configured addresses first),
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractKey {
    pub name: String,
    pub block_number: Option<i64>,
    pub address: Vec<u8>,
}

/// Which indexed addresses [`Store::indexed_contracts`] returns.
#[derive(Debug, Clone, Default)]
pub struct ContractFilter {
    /// The entry's name.
    pub name: Option<String>,
    /// Start after this row (exclusive).
    pub after: Option<ContractKey>,
    pub limit: u32,
}

/// The sort key of a configured address's missing creation block: below every block number, so configured
/// addresses come first (`NULLS FIRST`) and the keyset comparison needs no NULL handling.
const STATIC_BLOCK: i64 = -1;

fn parse_json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(format!("{what} is not JSON: {err}")))
}

impl Store {
    /// Decoded events in keyset order (block, log index, entry). Argument filters are `args @> {param: value}`
    /// containment tests, which the `events_args` GIN index answers.
    pub async fn events(&self, chain: &str, filter: &EventFilter) -> Result<Page<EventRow>> {
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT block_number, block_hash, log_index, contract, tx_hash, tx_index, address, name, signature, \
             args::text AS args FROM events WHERE chain = ",
        );
        query.push_bind(chain.to_owned());
        if let Some(contract) = &filter.contract {
            query.push(" AND contract = ").push_bind(contract.clone());
        }
        if let Some(name) = &filter.name {
            query.push(" AND name = ").push_bind(name.clone());
        }
        if let Some(signature) = &filter.signature {
            query.push(" AND signature = ").push_bind(signature.clone());
        }
        if let Some(address) = &filter.address {
            query.push(" AND address = ").push_bind(address.clone());
        }
        for arg in &filter.args {
            if arg.values.is_empty() {
                query.push(" AND false");
                continue;
            }
            query.push(" AND (");
            for (i, value) in arg.values.iter().enumerate() {
                if i > 0 {
                    query.push(" OR ");
                }
                let mut object = serde_json::Map::new();
                object.insert(arg.param.clone(), value.clone());
                query.push("args @> ").push_bind(Value::Object(object).to_string()).push("::jsonb");
            }
            query.push(")");
        }
        if let Some(from) = filter.from_block {
            query.push(" AND block_number >= ").push_bind(from);
        }
        if let Some(to) = filter.to_block {
            query.push(" AND block_number <= ").push_bind(to);
        }
        if let Some(after) = &filter.after {
            query.push(" AND (block_number, log_index, contract) > (");
            let mut tuple = query.separated(", ");
            tuple.push_bind(after.block_number);
            tuple.push_bind(after.log_index);
            tuple.push_bind(after.contract.clone());
            query.push(")");
        }
        query.push(" ORDER BY block_number, log_index, contract LIMIT ");
        query.push_bind(i64::from(filter.limit) + 1);
        let records = query.build_query_as::<EventRecord>().fetch_all(&self.pool).await?;
        let rows = records.into_iter().map(EventRecord::into_row).collect::<Result<Vec<_>>>()?;
        Ok(page(rows, filter.limit))
    }

    /// The stored `[[chains.contracts]]` entries of `chain`, by name, each with its count of factory children.
    pub async fn contract_sources(&self, chain: &str) -> Result<Vec<ContractSourceRow>> {
        let records: Vec<ContractSourceRecord> = sqlx::query_as(
            "SELECT s.name, s.kind, s.factory, s.factory_event, s.factory_parameter, s.start_block, s.live_from, \
             s.caught_up_to, s.events::text AS events, \
             (SELECT count(*) FROM contracts c \
              WHERE c.chain = s.chain AND c.name = s.name AND c.block_number IS NOT NULL) AS children \
             FROM contract_sources s WHERE s.chain = $1 ORDER BY s.name",
        )
        .bind(chain)
        .fetch_all(&self.pool)
        .await?;
        records
            .into_iter()
            .map(|r| {
                Ok(ContractSourceRow {
                    events: parse_json(&r.events, "contract_sources.events")?,
                    name: r.name,
                    kind: r.kind,
                    factory: r.factory,
                    factory_event: r.factory_event,
                    factory_parameter: r.factory_parameter,
                    start_block: r.start_block,
                    live_from: r.live_from,
                    caught_up_to: r.caught_up_to,
                    children: r.children,
                })
            })
            .collect()
    }

    /// The addresses whose events are decoded, in keyset order: entry name, creation block with configured
    /// addresses first, address.
    pub async fn indexed_contracts(&self, chain: &str, filter: &ContractFilter) -> Result<Page<ContractRow>> {
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT name, address, factory, block_number, block_hash, tx_hash, log_index FROM contracts \
             WHERE chain = ",
        );
        query.push_bind(chain.to_owned());
        if let Some(name) = &filter.name {
            query.push(" AND name = ").push_bind(name.clone());
        }
        if let Some(after) = &filter.after {
            query.push(" AND (name, COALESCE(block_number, ");
            query.push_bind(STATIC_BLOCK);
            query.push("), address) > (");
            let mut tuple = query.separated(", ");
            tuple.push_bind(after.name.clone());
            tuple.push_bind(after.block_number.unwrap_or(STATIC_BLOCK));
            tuple.push_bind(after.address.clone());
            query.push(")");
        }
        query.push(" ORDER BY name, block_number NULLS FIRST, address LIMIT ");
        query.push_bind(i64::from(filter.limit) + 1);
        let rows = query.build_query_as::<ContractRow>().fetch_all(&self.pool).await?;
        Ok(page(rows, filter.limit))
    }
}

/// A page of at most `limit` rows out of `limit + 1` fetched; the extra one only says that a next page exists.
fn page<T>(mut rows: Vec<T>, limit: u32) -> Page<T> {
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Page { items: rows, has_more }
}
