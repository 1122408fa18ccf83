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
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}
