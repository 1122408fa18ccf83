//! Partitions of the chain-data tables. Migration 0006 makes each of them `PARTITION BY LIST (chain)` with one
//! DEFAULT partition holding every chain; [`Store::partition_chain`] gives a chain partitions of its own, optionally
//! sub-partitioned `BY RANGE` of the block number, and keeps ranges ahead of the chain's head on later runs.
//!
//! Every change of one run happens in one transaction: a failed or interrupted run leaves the tables as they were.
//! Partition names are derived from the chain name (safe characters and a hash, so they are valid identifiers and
//! distinct for distinct chains); all SQL that must name them is built by PostgreSQL's `format('%I', '%L')`, and the
//! chain name is a bound parameter wherever it is a value.

use std::collections::BTreeSet;
use std::fmt;

use alloy::primitives::keccak256;
use sqlx::{AssertSqlSafe, PgConnection};

use crate::{Result, Store, StoreError};

/// Ranges created beyond the chain's highest known block on every run, so that until the next run new blocks still
/// land in range partitions rather than the chain's DEFAULT sub-partition.
pub const RANGES_AHEAD: u64 = 4;

/// Most range partitions one run may create per table. PostgreSQL plans get slower with thousands of partitions;
/// a block range that needs more is too small for the chain.
pub const MAX_NEW_RANGES: u64 = 512;

/// Characters of the chain name kept in partition names; the hash keeps truncated names distinct.
const NAME_CHARS: usize = 16;

/// The partitioned tables with their block column, in the order batch writes touch them: the run locks their
/// DEFAULT partitions in this order, as the writers do, so it cannot deadlock with a batch write.
const TABLES: [(&str, &str); 6] = [
    ("blocks", "number"),
    ("transactions", "block_number"),
    ("logs", "block_number"),
    ("transfers", "block_number"),
    ("instructions", "block_number"),
    ("events", "block_number"),
];

/// What one [`Store::partition_chain`] run did; empty `changes`: everything was already in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReport {
    pub chain: String,
    /// Block range of the chain's sub-partitions; `None`: one partition per table.
    pub block_range: Option<u64>,
    pub changes: Vec<PartitionChange>,
}

/// One partition created by a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionChange {
    pub table: &'static str,
    pub partition: String,
    pub bounds: PartitionBounds,
    /// Rows moved into it from a DEFAULT partition; `None` for range partitions created together with the chain's
    /// partition, whose rows are counted in the chain partition's change.
    pub rows_moved: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionBounds {
    /// The chain's partition of the table.
    Chain,
    /// A range of block numbers within the chain's partition, `from` inclusive, `to` exclusive.
    Range { from: u64, to: u64 },
    /// The DEFAULT sub-partition of the chain's partition: blocks beyond the created ranges.
    Default,
}

impl fmt::Display for PartitionChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: created {}", self.table, self.partition)?;
        match self.bounds {
            PartitionBounds::Chain => write!(f, " (chain partition)")?,
            PartitionBounds::Range { from, to } => write!(f, " (blocks {from}..{to})")?,
            PartitionBounds::Default => write!(f, " (default for blocks beyond the ranges)")?,
        }
        if let Some(rows) = self.rows_moved {
            write!(f, ", moved {rows} rows")?;
        }
        Ok(())
    }
}

/// A partition as the catalog has it, for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionInfo {
    /// The partitioned table it belongs to (`blocks`, `transfers`, …).
    pub table: String,
    pub partition: String,
    /// Its direct parent: `table`, or the chain partition for a range sub-partition.
    pub parent: String,
    /// 1 for a partition of the table, 2 for a sub-partition.
    pub level: i32,
    /// `FOR VALUES IN ('name')`, `FOR VALUES FROM ('0') TO ('1000')`, `DEFAULT`.
    pub bounds: String,
    /// The planner's row estimate (`pg_class.reltuples`); `None` before the table was first vacuumed or analyzed,
    /// and for partitions that are partitioned themselves. Exact counts would read every row.
    pub rows_estimate: Option<i64>,
    /// Size on disk with indexes and TOAST; 0 for partitions that are partitioned themselves.
    pub bytes: i64,
}

/// The name of `chain`'s partition of `table`: `<table>_c_<chain's safe characters>_<hash>`. Its range
/// sub-partitions append `_<first block>`, its DEFAULT sub-partition `_default`; all stay within PostgreSQL's
/// 63-byte identifier limit.
pub fn partition_name(table: &str, chain: &str) -> String {
    let safe: String = chain
        .chars()
        .take(NAME_CHARS)
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    let hash = keccak256(chain.as_bytes());
    let hash: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{table}_c_{safe}_{hash}")
}

fn range_name(base: &str, from: i64) -> String {
    format!("{base}_{from}")
}

fn default_name(base: &str) -> String {
    format!("{base}_default")
}

impl Store {
    /// Gives `chain` its own partition of every chain-data table, moving its rows out of the DEFAULT partition, and
    /// with `block_range` sub-partitions of that many blocks covering its rows and [`RANGES_AHEAD`] ranges beyond
    /// its head, plus a DEFAULT sub-partition so a write beyond the ranges never fails.
    ///
    /// Idempotent, and meant to be re-run (from cron): a later run creates the ranges that are now due and moves
    /// rows from the chain's DEFAULT sub-partition into them. `block_range` may be left out once set; a different
    /// value, or one for a chain partitioned without ranges, is refused ([`StoreError::Partition`]).
    pub async fn partition_chain(&self, chain: &str, block_range: Option<u64>) -> Result<PartitionReport> {
        let refuse = |reason: String| StoreError::Partition { chain: chain.to_owned(), reason };
        if block_range == Some(0) {
            return Err(refuse("the block range must be at least 1".into()));
        }
        let mut tx = self.pool.begin().await?;
        // Serialises runs (ATTACH takes this mode too) without blocking reads or writes; ONLY: not the partitions.
        sqlx::query(
            "LOCK TABLE ONLY blocks, transactions, logs, transfers, instructions, events \
             IN SHARE UPDATE EXCLUSIVE MODE",
        )
        .execute(&mut *tx)
        .await?;
        let stored: Option<Option<i64>> =
            sqlx::query_scalar("SELECT block_range FROM chain_partitions WHERE chain = $1")
                .bind(chain)
                .fetch_optional(&mut *tx)
                .await?;
        let range = match (block_range, stored) {
            (Some(asked), Some(Some(set))) if i64::try_from(asked).ok() != Some(set) => {
                return Err(refuse(format!(
                    "its partitions have ranges of {set} blocks; changing the range is not supported"
                )));
            }
            (Some(_), Some(None)) => {
                return Err(refuse(
                    "it already has partitions without block ranges; adding ranges later is not supported"
                        .into(),
                ));
            }
            (Some(asked), _) => {
                Some(i64::try_from(asked).map_err(|_| StoreError::OutOfRange("block range"))?)
            }
            (None, Some(set)) => set,
            (None, None) => None,
        };
        let tip = chain_tip(&mut tx, chain).await?;

        let mut bases = Vec::with_capacity(TABLES.len());
        for (table, _) in TABLES {
            let base = partition_name(table, chain);
            let kind = relkind(&mut tx, &base).await?;
            match (kind.as_deref(), range) {
                (None | Some("r"), None) | (None | Some("p"), Some(_)) => {}
                (Some("r"), Some(_)) => {
                    return Err(refuse(format!(
                        "{base} exists without block ranges; adding ranges later is not supported"
                    )));
                }
                (Some("p"), None) => {
                    return Err(refuse(format!("{base} has block ranges; give the block range")));
                }
                (Some(other), _) => {
                    return Err(refuse(format!("{base} exists and is not a table (relkind {other})")));
                }
            }
            bases.push((table, base, kind.is_some()));
        }

        // The DEFAULT partitions rows move out of, locked up front in the writers' order; ATTACH locks them
        // exclusively anyway, one table after the other, which could deadlock with a batch write.
        let mut sources = Vec::with_capacity(TABLES.len());
        for (table, base, exists) in &bases {
            let parent = if *exists { base.as_str() } else { table };
            let source = default_partition(&mut tx, parent).await?;
            if let Some(source) = &source {
                exec(&mut tx, "LOCK TABLE ONLY %I IN ACCESS EXCLUSIVE MODE", &[source]).await?;
            }
            sources.push(source);
        }

        // One set of ranges for all tables, from the lowest row still to place in any of them, so that every
        // table of the chain has the same partitions.
        let mut starts = Vec::new();
        if let Some(range) = range {
            let mut bounds = (None, None);
            for (((table, key), (_, _, exists)), source) in TABLES.into_iter().zip(&bases).zip(&sources) {
                let (low, high) = match (exists, source) {
                    (false, _) => {
                        let sql = statement(
                            &mut tx,
                            "SELECT min(%I), max(%I) FROM %I WHERE chain = $1",
                            &[key, key, table],
                        )
                        .await?;
                        sqlx::query_as(AssertSqlSafe(sql)).bind(chain).fetch_one(&mut *tx).await?
                    }
                    (true, Some(source)) => {
                        let sql = statement(&mut tx, "SELECT min(%I), max(%I) FROM %I", &[key, key, source])
                            .await?;
                        sqlx::query_as(AssertSqlSafe(sql)).fetch_one(&mut *tx).await?
                    }
                    (true, None) => (None, None),
                };
                bounds = (min_some(bounds.0, low), bounds.1.max(high));
            }
            starts = due_ranges(chain, range, bounds, tip)?;
        }

        let mut changes = Vec::new();
        for (((table, key), (_, base, exists)), source) in TABLES.into_iter().zip(&bases).zip(sources) {
            match (exists, range) {
                (false, None) => changes.push(create_chain_partition(&mut tx, table, base, chain).await?),
                (false, Some(range)) => changes
                    .extend(create_ranged_partition(&mut tx, table, key, base, chain, range, &starts).await?),
                (true, Some(range)) => {
                    changes.extend(extend_ranges(&mut tx, table, key, base, source, range, &starts).await?)
                }
                (true, None) => {}
            }
        }
        sqlx::query(
            "INSERT INTO chain_partitions (chain, block_range) VALUES ($1, $2) \
             ON CONFLICT (chain) DO UPDATE SET updated_at = now()",
        )
        .bind(chain)
        .bind(range)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if !changes.is_empty() {
            let rows_moved: u64 = changes.iter().filter_map(|c| c.rows_moved).sum();
            tracing::info!(chain, partitions = changes.len(), rows_moved, "chain partitions created");
        }
        Ok(PartitionReport { chain: chain.to_owned(), block_range: range.map(|r| r as u64), changes })
    }

    /// Every partition of the chain-data tables (the DEFAULT partitions from migration 0006 included), by table.
    pub async fn partitions(&self) -> Result<Vec<PartitionInfo>> {
        let tables: Vec<&str> = TABLES.iter().map(|(table, _)| *table).collect();
        let rows: Vec<(String, String, String, i32, String, f32, i64)> = sqlx::query_as(
            "SELECT t.name, c.relname::text, p.relname::text, tree.level, \
                    coalesce(pg_get_expr(c.relpartbound, c.oid), ''), c.reltuples, pg_total_relation_size(c.oid) \
             FROM unnest($1::text[]) WITH ORDINALITY AS t(name, ord) \
             CROSS JOIN LATERAL pg_partition_tree(t.name::regclass) AS tree \
             JOIN pg_class c ON c.oid = tree.relid \
             JOIN pg_class p ON p.oid = tree.parentrelid \
             WHERE tree.level > 0 \
             ORDER BY t.ord, CASE WHEN tree.level = 1 THEN c.relname ELSE p.relname END, tree.level, \
                      length(c.relname), c.relname",
        )
        .bind(&tables)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(table, partition, parent, level, bounds, tuples, bytes)| PartitionInfo {
                table,
                partition,
                parent,
                level,
                bounds,
                // -1: never counted. The estimate is a float; whole rows are what a listing shows.
                rows_estimate: (tuples >= 0.0).then_some(tuples as i64),
                bytes,
            })
            .collect())
    }
}

/// The highest block known for `chain`: the upstreams' head or the cursor, whichever is higher.
async fn chain_tip(conn: &mut PgConnection, chain: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT greatest((SELECT head_number FROM chains WHERE name = $1), \
                         (SELECT block_number FROM cursors WHERE chain = $1))",
    )
    .bind(chain)
    .fetch_one(conn)
    .await?)
}

/// `pg_class.relkind` of the table `name` in the search path: `r` table, `p` partitioned table.
async fn relkind(conn: &mut PgConnection, name: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT relkind::text FROM pg_class WHERE oid = to_regclass(format('%I', $1::text))",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?)
}

/// The DEFAULT partition of the partitioned table `parent`, if it has one.
async fn default_partition(conn: &mut PgConnection, parent: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT d.relname::text FROM pg_partitioned_table pt JOIN pg_class d ON d.oid = pt.partdefid \
         WHERE pt.partrelid = to_regclass(format('%I', $1::text))",
    )
    .bind(parent)
    .fetch_optional(conn)
    .await?)
}

/// The partitions of `parent` (direct children).
async fn children(conn: &mut PgConnection, parent: &str) -> Result<BTreeSet<String>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = to_regclass(format('%I', $1::text))",
    )
    .bind(parent)
    .fetch_all(conn)
    .await?;
    Ok(names.into_iter().collect())
}

/// `template` with its `%I`/`%L` placeholders filled by PostgreSQL's `format` from `args`.
async fn statement(conn: &mut PgConnection, template: &'static str, args: &[&str]) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT format($1, VARIADIC $2::text[])")
        .bind(template)
        .bind(args)
        .fetch_one(conn)
        .await?)
}

/// Runs `template` (see [`statement`]); returns the rows it affected.
async fn exec(conn: &mut PgConnection, template: &'static str, args: &[&str]) -> Result<u64> {
    let sql = statement(conn, template, args).await?;
    Ok(sqlx::query(AssertSqlSafe(sql)).execute(conn).await?.rows_affected())
}

/// The chain's rows of `table` go into the new table `base` (a plain table or one with range partitions already
/// attached), then `base` becomes the chain's partition. Inserting before `ATTACH` builds `base`'s indexes once,
/// after the copy, rather than row by row.
async fn move_chain_rows(conn: &mut PgConnection, table: &str, base: &str, chain: &str) -> Result<u64> {
    // Before ATTACH, the chain's rows can only be in the table's DEFAULT partition.
    let sql = statement(conn, "INSERT INTO %I SELECT * FROM %I WHERE chain = $1", &[base, table]).await?;
    let moved = sqlx::query(AssertSqlSafe(sql)).bind(chain).execute(&mut *conn).await?.rows_affected();
    let sql = statement(conn, "DELETE FROM %I WHERE chain = $1", &[table]).await?;
    sqlx::query(AssertSqlSafe(sql)).bind(chain).execute(&mut *conn).await?;
    exec(conn, "ALTER TABLE %I ATTACH PARTITION %I FOR VALUES IN (%L)", &[table, base, chain]).await?;
    Ok(moved)
}

async fn create_chain_partition(
    conn: &mut PgConnection,
    table: &'static str,
    base: &str,
    chain: &str,
) -> Result<PartitionChange> {
    exec(
        conn,
        "CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)",
        &[base, table],
    )
    .await?;
    let moved = move_chain_rows(conn, table, base, chain).await?;
    Ok(PartitionChange {
        table,
        partition: base.to_owned(),
        bounds: PartitionBounds::Chain,
        rows_moved: Some(moved),
    })
}

async fn create_ranged_partition(
    conn: &mut PgConnection,
    table: &'static str,
    key: &str,
    base: &str,
    chain: &str,
    range: i64,
    starts: &[i64],
) -> Result<Vec<PartitionChange>> {
    exec(
        conn,
        "CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE) \
         PARTITION BY RANGE (%I)",
        &[base, table, key],
    )
    .await?;
    let mut changes = vec![PartitionChange {
        table,
        partition: base.to_owned(),
        bounds: PartitionBounds::Chain,
        rows_moved: None,
    }];
    // Empty yet, so created in place: no DEFAULT sub-partition to check against.
    for &from in starts {
        let name = range_name(base, from);
        let to = from + range;
        exec(
            conn,
            "CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)",
            &[&name, base, &from.to_string(), &to.to_string()],
        )
        .await?;
        changes.push(range_change(table, name, from, to));
    }
    let default = default_name(base);
    exec(conn, "CREATE TABLE %I PARTITION OF %I DEFAULT", &[&default, base]).await?;
    changes.push(PartitionChange {
        table,
        partition: default,
        bounds: PartitionBounds::Default,
        rows_moved: None,
    });
    changes[0].rows_moved = Some(move_chain_rows(conn, table, base, chain).await?);
    Ok(changes)
}

/// A later run over a range-partitioned chain partition: creates the ranges of `starts` that do not exist yet, each
/// filled from the chain's DEFAULT sub-partition (`default`) before it is attached (attaching checks that the
/// DEFAULT holds none of its rows).
async fn extend_ranges(
    conn: &mut PgConnection,
    table: &'static str,
    key: &str,
    base: &str,
    default: Option<String>,
    range: i64,
    starts: &[i64],
) -> Result<Vec<PartitionChange>> {
    let mut changes = Vec::new();
    let default = match default {
        Some(default) => default,
        None => {
            // Dropped by hand: without it, a block beyond the ranges would fail its whole batch.
            let default = default_name(base);
            exec(conn, "CREATE TABLE %I PARTITION OF %I DEFAULT", &[&default, base]).await?;
            changes.push(PartitionChange {
                table,
                partition: default.clone(),
                bounds: PartitionBounds::Default,
                rows_moved: None,
            });
            default
        }
    };
    let existing = children(conn, base).await?;
    for &from in starts {
        let name = range_name(base, from);
        if existing.contains(&name) {
            continue;
        }
        let to = from + range;
        let (from_text, to_text) = (from.to_string(), to.to_string());
        exec(
            conn,
            "CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)",
            &[&name, base],
        )
        .await?;
        let sql = statement(
            conn,
            "INSERT INTO %I SELECT * FROM %I WHERE %I >= $1 AND %I < $2",
            &[&name, &default, key, key],
        )
        .await?;
        let moved =
            sqlx::query(AssertSqlSafe(sql)).bind(from).bind(to).execute(&mut *conn).await?.rows_affected();
        if moved > 0 {
            let sql =
                statement(conn, "DELETE FROM %I WHERE %I >= $1 AND %I < $2", &[&default, key, key]).await?;
            sqlx::query(AssertSqlSafe(sql)).bind(from).bind(to).execute(&mut *conn).await?;
        }
        exec(
            conn,
            "ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)",
            &[base, &name, &from_text, &to_text],
        )
        .await?;
        let mut change = range_change(table, name, from, to);
        change.rows_moved = Some(moved);
        changes.push(change);
    }
    Ok(changes)
}

fn range_change(table: &'static str, partition: String, from: i64, to: i64) -> PartitionChange {
    // Both are non-negative block numbers (checked by `due_ranges`).
    PartitionChange {
        table,
        partition,
        bounds: PartitionBounds::Range { from: from as u64, to: to as u64 },
        rows_moved: None,
    }
}

fn min_some(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// First blocks of the ranges that must exist: from the one holding the lowest stored row (`stored`: lowest and
/// highest block of the rows still to place) to [`RANGES_AHEAD`] past the one holding the tip or the highest row.
/// None when nothing is known of the chain yet: a later run creates them.
fn due_ranges(
    chain: &str,
    range: i64,
    stored: (Option<i64>, Option<i64>),
    tip: Option<i64>,
) -> Result<Vec<i64>> {
    let Some(top) = stored.1.max(tip) else { return Ok(Vec::new()) };
    let bottom = stored.0.unwrap_or(top).min(top);
    if bottom < 0 {
        return Err(StoreError::OutOfRange("block number"));
    }
    let first = bottom / range;
    let last = top / range + RANGES_AHEAD as i64;
    let count = last - first + 1;
    if count > MAX_NEW_RANGES as i64 {
        return Err(StoreError::Partition {
            chain: chain.to_owned(),
            reason: format!(
                "blocks {bottom}..={top} need {count} ranges of {range} blocks, more than {MAX_NEW_RANGES}; \
                 choose a larger block range"
            ),
        });
    }
    (first..=last)
        .map(|k| {
            k.checked_mul(range)
                .filter(|from| from.checked_add(range).is_some())
                .ok_or(StoreError::OutOfRange("block range"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_distinct_and_short() {
        let name = partition_name("transactions", "my-chain.v2");
        assert!(name.starts_with("transactions_c_my_chain_v2_"), "{name}");
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{name}");
        assert_ne!(name, partition_name("transactions", "my_chain_v2"));
        assert_ne!(name, partition_name("transactions", "My-chain.v2"));
        let long = partition_name("instructions", &"ü".repeat(100));
        assert!(range_name(&long, i64::MAX).len() <= 63, "{long}");
        assert_eq!(partition_name("logs", "x"), partition_name("logs", "x"));
    }

    #[test]
    fn due_ranges_cover_rows_and_reach_ahead() {
        assert_eq!(due_ranges("c", 100, (None, None), None).expect("nothing known"), Vec::<i64>::new());
        assert_eq!(
            due_ranges("c", 100, (Some(150), Some(420)), Some(430)).expect("ranges"),
            vec![100, 200, 300, 400, 500, 600, 700, 800]
        );
        assert_eq!(
            due_ranges("c", 100, (None, None), Some(0)).expect("tip only"),
            vec![0, 100, 200, 300, 400]
        );
        assert!(matches!(
            due_ranges("c", 1, (Some(0), Some(10_000)), None),
            Err(StoreError::Partition { .. })
        ));
    }
}
