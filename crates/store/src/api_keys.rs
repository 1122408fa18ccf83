//! The gateway's API keys (`api_keys`): created, listed and revoked by `chainmux keys`, looked up by the gateway.
//!
//! Only a key's SHA-256 and a short non-secret prefix are stored; generating, parsing and hashing keys is the
//! gateway's business (`chainmux_gateway::ApiKey`), so this module only ever sees hashes.

use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::{Result, Store, StoreError};

/// Which constraint a conflicting insert ran into (see `migrations/0004_api_keys.sql`).
const PREFIX_CONSTRAINT: &str = "api_keys_prefix_key";
const NAME_INDEX: &str = "api_keys_active_name";

/// Per-key rate limits; `None` means "the `[gateway] default_key_*` value of the running config".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KeyLimits {
    /// REST requests per second.
    pub rps: Option<u32>,
    /// REST burst.
    pub burst: Option<u32>,
    /// `/rpc` requests per second.
    pub rpc_rps: Option<u32>,
    /// `/rpc` burst.
    pub rpc_burst: Option<u32>,
}

/// A key to store: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// Non-secret start of the key, e.g. `cmx_1a2b3c4d`; unique.
    pub prefix: String,
    /// SHA-256 of the key.
    pub hash: [u8; 32],
    /// Optional human name; unique among keys not revoked.
    pub name: Option<String>,
    pub limits: KeyLimits,
}

/// A stored key as `chainmux keys list` shows it. Timestamps are RFC 3339 in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub id: i64,
    pub prefix: String,
    pub name: Option<String>,
    pub limits: KeyLimits,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// What the gateway needs to know about a presented key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiKeyAuth {
    /// The key's row id: what its rate limits are keyed by (never the key or its hash).
    pub id: i64,
    pub revoked: bool,
    pub limits: KeyLimits,
}

/// Outcome of [`Store::create_api_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateApiKey {
    Created(ApiKeyRow),
    /// Another key has the same prefix (1 in 2³² per existing key): generate another key and retry.
    PrefixTaken,
    /// A key that is not revoked already has this name.
    NameTaken,
}

/// Outcome of [`Store::revoke_api_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeApiKey {
    /// The key is revoked now.
    Revoked(ApiKeyRow),
    /// Every key matching the selector was revoked before.
    AlreadyRevoked(ApiKeyRow),
    NotFound,
    /// The selector names several active keys (their prefixes); nothing was revoked.
    Ambiguous(Vec<String>),
}

/// The columns [`key_row`] reads; a macro so queries stay `&'static str` (sqlx only takes literal SQL).
macro_rules! columns {
    () => {
        "id, prefix, name, rps, burst, rpc_rps, rpc_burst, \
         to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created, \
         to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS revoked"
    };
}

fn limit_to_i32(value: Option<u32>) -> Result<Option<i32>> {
    value.map(|v| i32::try_from(v).map_err(|_| StoreError::OutOfRange("api key limit"))).transpose()
}

fn limit_from_i32(value: Option<i32>) -> Result<Option<u32>> {
    value.map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("api key limit {v}")))).transpose()
}

fn limits_from(row: &PgRow) -> Result<KeyLimits> {
    Ok(KeyLimits {
        rps: limit_from_i32(row.try_get("rps")?)?,
        burst: limit_from_i32(row.try_get("burst")?)?,
        rpc_rps: limit_from_i32(row.try_get("rpc_rps")?)?,
        rpc_burst: limit_from_i32(row.try_get("rpc_burst")?)?,
    })
}

fn key_row(row: &PgRow) -> Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: row.try_get("id")?,
        prefix: row.try_get("prefix")?,
        name: row.try_get("name")?,
        limits: limits_from(row)?,
        created_at: row.try_get("created")?,
        revoked_at: row.try_get("revoked")?,
    })
}

impl Store {
    /// Stores a new key. Conflicts on the prefix or the name are outcomes, not errors.
    pub async fn create_api_key(&self, key: &NewApiKey) -> Result<CreateApiKey> {
        let inserted = sqlx::query(concat!(
            "INSERT INTO api_keys (prefix, key_hash, name, rps, burst, rpc_rps, rpc_burst) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
            columns!()
        ))
        .bind(&key.prefix)
        .bind(key.hash.as_slice())
        .bind(&key.name)
        .bind(limit_to_i32(key.limits.rps)?)
        .bind(limit_to_i32(key.limits.burst)?)
        .bind(limit_to_i32(key.limits.rpc_rps)?)
        .bind(limit_to_i32(key.limits.rpc_burst)?)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => Ok(CreateApiKey::Created(key_row(&row)?)),
            Err(sqlx::Error::Database(err)) if err.constraint() == Some(PREFIX_CONSTRAINT) => {
                Ok(CreateApiKey::PrefixTaken)
            }
            Err(sqlx::Error::Database(err)) if err.constraint() == Some(NAME_INDEX) => {
                Ok(CreateApiKey::NameTaken)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        let rows = sqlx::query(concat!("SELECT ", columns!(), " FROM api_keys ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_row).collect()
    }

    /// Revokes the active key whose prefix or name is `selector`. Revoking is final; the gateway notices within
    /// its key cache's lifetime.
    pub async fn revoke_api_key(&self, selector: &str) -> Result<RevokeApiKey> {
        let sql = concat!("SELECT ", columns!(), " FROM api_keys WHERE prefix = $1 OR name = $1 ORDER BY id");
        let rows = sqlx::query(sql).bind(selector).fetch_all(&self.pool).await?;
        let rows = rows.iter().map(key_row).collect::<Result<Vec<_>>>()?;
        let active: Vec<&ApiKeyRow> = rows.iter().filter(|r| r.revoked_at.is_none()).collect();
        match active.as_slice() {
            [] => Ok(rows.into_iter().last().map_or(RevokeApiKey::NotFound, RevokeApiKey::AlreadyRevoked)),
            [one] => {
                let sql = concat!(
                    "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING ",
                    columns!()
                );
                let row = sqlx::query(sql).bind(one.id).fetch_optional(&self.pool).await?;
                match row {
                    Some(row) => Ok(RevokeApiKey::Revoked(key_row(&row)?)),
                    // Revoked by someone else between the two statements.
                    None => Ok(RevokeApiKey::AlreadyRevoked((*one).clone())),
                }
            }
            many => Ok(RevokeApiKey::Ambiguous(many.iter().map(|r| r.prefix.clone()).collect())),
        }
    }

    /// The key whose SHA-256 is `hash`, if any; revoked keys are returned too, so the gateway can tell them apart.
    pub async fn api_key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiKeyAuth>> {
        let row = sqlx::query(
            "SELECT id, revoked_at IS NOT NULL AS revoked, rps, burst, rpc_rps, rpc_burst \
             FROM api_keys WHERE key_hash = $1",
        )
        .bind(hash.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ApiKeyAuth {
                id: row.try_get("id")?,
                revoked: row.try_get("revoked")?,
                limits: limits_from(&row)?,
            })
        })
        .transpose()
    }
}
