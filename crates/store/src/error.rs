use chainmux_core::BlockPtr;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Another writer moved the cursor: this batch was computed against a stale view and must not be written.
    #[error("cursor of chain {chain} is at {actual:?}, expected {expected:?}; another writer is active")]
    CursorMoved { chain: String, expected: Option<BlockPtr>, actual: Option<BlockPtr> },
    /// The batch does not continue the cursor (gap, overlap or different parent).
    #[error("batch for chain {chain} does not continue the cursor: {reason}")]
    Discontinuous { chain: String, reason: String },
    #[error("chain {chain} is stored as {stored} but configured as {configured}")]
    ChainMismatch { chain: String, stored: String, configured: String },
    #[error("value of {0} does not fit the column")]
    OutOfRange(&'static str),
    /// This replica's leadership term of the chain ended (its lock session died, or another replica took over):
    /// nothing was written, and this replica must stop writing the chain.
    #[error("chain {chain}: leadership term {epoch} has ended; another replica writes this chain now")]
    Fenced { chain: String, epoch: i64 },
    /// `chainmux db partition` cannot do what was asked (see [`crate::Store::partition_chain`]); nothing changed.
    #[error("cannot partition chain {chain}: {reason}")]
    Partition { chain: String, reason: String },
    /// A read-only database (a replica) lacks migrations this binary needs; only the primary can apply them.
    #[error(
        "the database is read-only and lacks migrations {missing:?}: run `chainmux migrate` against the primary \
         (and wait for the replica to catch up)"
    )]
    SchemaBehind { missing: Vec<i64> },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}
