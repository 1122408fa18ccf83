//! PostgreSQL storage of chainmux: the schema (embedded from `../../migrations`), batch writes that move the chain
//! cursor in the same transaction as the rows, and the read queries behind the gateway's REST API.
//!
//! Rows are streamed in with binary `COPY`, in one transaction with a cursor move that is conditional on where the
//! batch started: a replayed batch is refused, every row has a natural unique key so none is ever stored twice, and
//! a crash mid-batch leaves either the whole batch with its cursor, or neither.

mod api_keys;
mod chain_status;
mod contracts;
mod error;
mod feed;
mod leader;
mod partitions;
mod read;
mod read_events;
mod revert;
mod write;

pub use api_keys::{ApiKeyAuth, ApiKeyRow, CreateApiKey, KeyLimits, NewApiKey, RevokeApiKey};
pub use chain_status::IndexerErrorState;
pub use contracts::{ContractSourceDef, ContractSourceState, FactoryDef, SourceSync};
pub use error::{Result, StoreError};
pub use feed::{FEED_CHANNEL, FeedDelta, FeedListener};
pub use leader::{LeaderElection, LeaderRow, LeaderTerm, application_name as leader_application_name};
pub use partitions::{
    MAX_NEW_RANGES, PartitionBounds, PartitionChange, PartitionInfo, PartitionReport, RANGES_AHEAD,
    partition_name,
};
pub use read::{
    BlockRow, ChainState, InstructionFilter, InstructionKey, InstructionRow, LogFilter, LogKey, LogRow, Page,
    TransactionRow, TransferFilter, TransferKey, TransferRow,
};
pub use read_events::{
    ArgMatch, ContractFilter, ContractKey, ContractRow, ContractSourceRow, EventFilter, EventKey, EventRow,
};
pub use write::WriteStats;

use std::time::Duration;

use chainmux_core::{BlockPtr, ChainSpec, Heads};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// The schema, embedded from `../../migrations`.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// The leadership epoch every write of this handle must still hold ([`Store::fenced`]); `None` writes
    /// unconditionally (tests, tools, single-writer setups).
    fence: Option<i64>,
}

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(StoreError::Connect)?;
        Ok(Self { pool, fence: None })
    }

    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool, fence: None }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Sets the connection-pool gauges. Called when `/metrics` is scraped, so the values are exact at scrape time
    /// without a background task.
    pub fn publish_pool_gauges(&self) {
        let size = self.pool.size() as usize;
        let idle = self.pool.num_idle().min(size);
        metrics::gauge!("chainmux_db_pool_connections", "state" => "idle").set(idle as f64);
        metrics::gauge!("chainmux_db_pool_connections", "state" => "in_use").set((size - idle) as f64);
        metrics::gauge!("chainmux_db_pool_max_connections")
            .set(f64::from(self.pool.options().get_max_connections()));
    }

    /// Applies pending migrations. Safe to run concurrently from several processes (sqlx takes an advisory lock).
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Whether the database refuses writes: a streaming replica (hot standby), or a database whose transactions
    /// are read-only by default.
    pub async fn is_read_only(&self) -> Result<bool> {
        let read_only: bool = sqlx::query_scalar(
            "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(read_only)
    }

    /// For a read-only database (see [`Store::is_read_only`]), which cannot be migrated: checks that the primary
    /// applied every migration this binary knows, so its queries find the schema they expect.
    pub async fn check_migrated(&self) -> Result<()> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&self.pool)
            .await?;
        let missing: Vec<i64> =
            MIGRATOR.iter().map(|m| m.version).filter(|version| !applied.contains(version)).collect();
        if missing.is_empty() { Ok(()) } else { Err(StoreError::SchemaBehind { missing }) }
    }

    /// Whether the database answers, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Records the chain, or checks that a chain of that name stored earlier has the same kind and id: pointing a
    /// configured name at another network would mix two chains' rows.
    pub async fn register_chain(&self, spec: &ChainSpec) -> Result<()> {
        let chain_id = i64::try_from(spec.chain_id).map_err(|_| StoreError::OutOfRange("chain_id"))?;
        sqlx::query(
            "INSERT INTO chains (name, kind, chain_id) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&spec.name)
        .bind(spec.kind.as_str())
        .bind(chain_id)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT kind, chain_id FROM chains WHERE name = $1")
            .bind(&spec.name)
            .fetch_one(&self.pool)
            .await?;
        let (kind, stored_id): (String, i64) = (row.try_get("kind")?, row.try_get("chain_id")?);
        if kind != spec.kind.as_str() || stored_id != chain_id {
            return Err(StoreError::ChainMismatch {
                chain: spec.name.clone(),
                stored: format!("{kind} chain id {stored_id}"),
                configured: format!("{} chain id {}", spec.kind.as_str(), spec.chain_id),
            });
        }
        Ok(())
    }

    /// The last fully written block of `chain`, if any.
    pub async fn cursor(&self, chain: &str) -> Result<Option<BlockPtr>> {
        let row = sqlx::query("SELECT block_number, block_hash FROM cursors WHERE chain = $1")
            .bind(chain)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| read::ptr_from(row.try_get("block_number")?, row.try_get("block_hash")?)).transpose()
    }

    /// Stores the chain's tips as last seen, so readers anywhere can tell each row's finality.
    pub async fn set_heads(&self, chain: &str, heads: &Heads) -> Result<()> {
        let to_i64 = |n: u64| i64::try_from(n).map_err(|_| StoreError::OutOfRange("head"));
        sqlx::query(
            "UPDATE chains SET head_number = $2, safe_number = $3, finalized_number = $4, heads_updated_at = now() \
             WHERE name = $1",
        )
        .bind(chain)
        .bind(to_i64(heads.latest)?)
        .bind(heads.safe.map(to_i64).transpose()?)
        .bind(heads.finalized.map(to_i64).transpose()?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
