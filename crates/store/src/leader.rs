//! Leadership per chain: which replica writes a chain's rows.
//!
//! Every replica that runs the indexer competes for one PostgreSQL session-level advisory lock per chain, held on a
//! connection of its own (not the pool's), so the lock lives exactly as long as that session: when the process dies
//! or its session is terminated, the server releases the lock and another replica takes it. The winner starts a
//! new *term* by bumping the chain's `epoch`; a [`Store`] made [`Store::fenced`] with that epoch checks it inside
//! every batch and rollback transaction (a `FOR KEY SHARE` row lock that a takeover's `FOR UPDATE` waits on), so a leader
//! that lost its lock without noticing cannot write a single row after its successor started.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};

use crate::write::to_i64;
use crate::{Result, Store, StoreError};

/// High 32 bits of every chainmux advisory lock key ("cmux"), so the keys do not collide with other users of
/// advisory locks in the same database.
const LOCK_CLASS: i64 = 0x636d_7578;

/// A replica's candidacy for one chain: a connection of its own on which it tries the chain's lock.
#[derive(Debug)]
pub struct LeaderElection {
    options: PgConnectOptions,
    store: Store,
    chain: String,
    replica: String,
    conn: Option<PgConnection>,
    /// The chain's lock key, once read.
    key: Option<i64>,
}

/// The current leader of a chain, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRow {
    pub chain: String,
    pub holder: Option<String>,
    pub epoch: i64,
    /// Unix seconds.
    pub acquired_at: Option<i64>,
    /// Unix seconds of the holder's last proof of life.
    pub renewed_at: Option<i64>,
}

/// A leadership term: while this lives (and [`LeaderTerm::check`] passes) this replica is the chain's only writer.
#[derive(Debug)]
pub struct LeaderTerm {
    conn: PgConnection,
    chain: String,
    replica: String,
    epoch: i64,
    key: i64,
}

impl LeaderElection {
    /// A candidacy of `replica` for `chain`; nothing is connected until [`Self::try_acquire`].
    pub fn new(store: &Store, chain: &str, replica: &str) -> Self {
        // The session's name shows in pg_stat_activity, so operators (and tests) can find a chain's lock holder.
        let options =
            (*store.pool.connect_options()).clone().application_name(&application_name(chain, replica));
        Self {
            options,
            store: store.clone(),
            chain: chain.to_owned(),
            replica: replica.to_owned(),
            conn: None,
            key: None,
        }
    }

    /// Tries once to take the chain's lock. `Ok(Some(term))`: this replica now leads, with a new epoch.
    /// `Ok(None)`: another session holds it. Errors are the database's; the candidacy reconnects on the next try.
    pub async fn try_acquire(&mut self) -> Result<Option<LeaderTerm>> {
        let key = self.lock_key().await?;
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => PgConnection::connect_with(&self.options).await?,
        };
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(key).fetch_one(&mut conn).await?;
        if !locked {
            self.conn = Some(conn);
            return Ok(None);
        }
        let epoch = match start_term(&mut conn, &self.chain, &self.replica).await {
            Ok(epoch) => epoch,
            Err(err) => {
                // Closing the session releases the lock too; an explicit unlock keeps it tidy when it is still up.
                let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(key).execute(&mut conn).await;
                return Err(err);
            }
        };
        Ok(Some(LeaderTerm { conn, chain: self.chain.clone(), replica: self.replica.clone(), epoch, key }))
    }

    async fn lock_key(&mut self) -> Result<i64> {
        if let Some(key) = self.key {
            return Ok(key);
        }
        sqlx::query("INSERT INTO chain_leaders (chain) VALUES ($1) ON CONFLICT (chain) DO NOTHING")
            .bind(&self.chain)
            .execute(&self.store.pool)
            .await?;
        let lock_id: i64 = sqlx::query_scalar("SELECT lock_id FROM chain_leaders WHERE chain = $1")
            .bind(&self.chain)
            .fetch_one(&self.store.pool)
            .await?;
        let key = (LOCK_CLASS << 32) | (lock_id & 0xffff_ffff);
        self.key = Some(key);
        Ok(key)
    }
}

/// Bumps the epoch and opens the term's record, in one transaction on the lock's session.
async fn start_term(conn: &mut PgConnection, chain: &str, replica: &str) -> Result<i64> {
    let mut tx = conn.begin().await?;
    // Waits for a fenced writer's batch in flight (it holds the row FOR KEY SHARE, which only FOR UPDATE conflicts
    // with), so the new term starts after it, and makes later batches of the old term wait and then see the bump.
    sqlx::query("SELECT 1 FROM chain_leaders WHERE chain = $1 FOR UPDATE")
        .bind(chain)
        .execute(&mut *tx)
        .await?;
    let epoch: i64 = sqlx::query_scalar(
        "UPDATE chain_leaders SET epoch = epoch + 1, holder = $2, acquired_at = now(), renewed_at = now() \
         WHERE chain = $1 RETURNING epoch",
    )
    .bind(chain)
    .bind(replica)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE leader_terms SET ended_at = coalesce(ended_at, now()) WHERE chain = $1 AND epoch < $2",
    )
    .bind(chain)
    .bind(epoch)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO leader_terms (chain, epoch, holder) VALUES ($1, $2, $3)")
        .bind(chain)
        .bind(epoch)
        .bind(replica)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(epoch)
}

impl LeaderTerm {
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Proves the lock's session alive and the term current, and records the proof (`renewed_at`). An error means
    /// this replica must stop writing: the session is gone (and with it the lock), or another term started.
    pub async fn check(&mut self) -> Result<()> {
        let renewed = sqlx::query(
            "UPDATE chain_leaders SET renewed_at = now() WHERE chain = $1 AND epoch = $2 AND holder = $3",
        )
        .bind(&self.chain)
        .bind(self.epoch)
        .bind(&self.replica)
        .execute(&mut self.conn)
        .await?;
        if renewed.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Fenced { chain: self.chain.clone(), epoch: self.epoch })
        }
    }

    /// Ends the term: records its end, releases the lock and closes the session, so a successor can start at once.
    pub async fn release(mut self) -> Result<()> {
        sqlx::query("UPDATE leader_terms SET ended_at = now() WHERE chain = $1 AND epoch = $2")
            .bind(&self.chain)
            .bind(self.epoch)
            .execute(&mut self.conn)
            .await?;
        sqlx::query("UPDATE chain_leaders SET holder = NULL WHERE chain = $1 AND epoch = $2")
            .bind(&self.chain)
            .bind(self.epoch)
            .execute(&mut self.conn)
            .await?;
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(self.key).execute(&mut self.conn).await?;
        self.conn.close().await?;
        Ok(())
    }
}

/// The `application_name` of a chain's lock session. Postgres keeps 63 bytes of it.
pub fn application_name(chain: &str, replica: &str) -> String {
    let mut name = format!("chainmux-leader {chain} {replica}");
    if name.len() > 63 {
        let mut end = 63;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

impl Store {
    /// This store, writing as the leader of the term `epoch`: every [`Store::write_batch`], [`Store::revert_to`],
    /// [`Store::sync_contract_sources`] and [`Store::write_catch_up`] fails with [`StoreError::Fenced`], writing
    /// nothing, once the chain's epoch is another.
    pub fn fenced(&self, epoch: i64) -> Store {
        Store { pool: self.pool.clone(), fence: Some(epoch) }
    }

    /// Every chain's recorded leader.
    pub async fn leaders(&self) -> Result<Vec<LeaderRow>> {
        let rows = sqlx::query(
            "SELECT chain, holder, epoch, extract(epoch FROM acquired_at)::bigint AS acquired_at, \
             extract(epoch FROM renewed_at)::bigint AS renewed_at FROM chain_leaders ORDER BY chain",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LeaderRow {
                    chain: row.try_get("chain")?,
                    holder: row.try_get("holder")?,
                    epoch: row.try_get("epoch")?,
                    acquired_at: row.try_get("acquired_at")?,
                    renewed_at: row.try_get("renewed_at")?,
                })
            })
            .collect()
    }
}

/// Inside a write transaction: fails with [`StoreError::Fenced`] unless `epoch` is still the chain's term, and
/// holds the leader row `FOR KEY SHARE` until commit, so a takeover (which locks it `FOR UPDATE`) waits for this
/// transaction. Not `FOR SHARE`: the leader's proof of life updates the row meanwhile and must not wait for batches. Records the written
/// range on the term.
pub(crate) async fn check_fence(
    tx: &mut Transaction<'_, Postgres>,
    chain: &str,
    epoch: i64,
    write: TermWrite,
) -> Result<()> {
    let current: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM chain_leaders WHERE chain = $1 FOR KEY SHARE")
            .bind(chain)
            .fetch_optional(&mut **tx)
            .await?;
    if current != Some(epoch) {
        return Err(StoreError::Fenced { chain: chain.to_owned(), epoch });
    }
    match write {
        TermWrite::Batch { first, last } => {
            sqlx::query(
                "UPDATE leader_terms SET batches = batches + 1, first_block = coalesce(first_block, $3), \
                 last_block = greatest(last_block, $4) WHERE chain = $1 AND epoch = $2",
            )
            .bind(chain)
            .bind(epoch)
            .bind(to_i64(first, "block number")?)
            .bind(to_i64(last, "block number")?)
            .execute(&mut **tx)
            .await?;
        }
        TermWrite::Revert => {
            sqlx::query("UPDATE leader_terms SET reverts = reverts + 1 WHERE chain = $1 AND epoch = $2")
                .bind(chain)
                .bind(epoch)
                .execute(&mut **tx)
                .await?;
        }
        TermWrite::Other => {}
    }
    Ok(())
}

/// What a fenced transaction writes, for the term's record.
pub(crate) enum TermWrite {
    /// A batch of blocks `first..=last`.
    Batch { first: u64, last: u64 },
    /// A rollback.
    Revert,
    /// Anything else of the chain's (contract entries and their catch-up).
    Other,
}
